// libFuzzer target: bytes a host or client sends to the sidecar's socket.
//
// The input goes, in chunks, through the sidecar's own host-connection pipeline on an
// EmbeddedChannel: the length-prefixed framing with its size limit (`LengthPrefixedFrameDecoder`,
// `FrameDecoder`), `PeerConnection`'s demultiplexing and the `HostSession` that checks the
// handshake, the secret, the limits and each request against a real `ActorDirectory`.
// Afterwards time moves past the handshake timeout and the connection closes. A crash, a trap
// or a hang is a bug; refusals are not.

import FuzzSupport

runLibFuzzer { start, count in fuzzHostFrames(start, count) }
