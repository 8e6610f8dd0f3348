// libFuzzer target: bytes another sidecar (or anything that reaches `cluster-listen`) sends.
//
// The input goes, in chunks, through the pipeline `ClusterTransport` installs on each accepted
// connection, on an EmbeddedChannel: the length-prefixed framing with its size limit, the
// `ClusterEnvelope` decode, the handshake check, remote calls dispatched to the stable targets a
// real `ActorDirectory` serves, and SWIM messages read into the real failure detector. Afterwards
// time moves past the handshake timeout. A crash, a trap or a hang is a bug; refusals are not.

import FuzzSupport

runLibFuzzer { start, count in fuzzClusterEnvelopes(start, count) }
