// libFuzzer target: NATS payloads of the bridge between ActorSystems.
//
// Anything with NATS credentials can publish on the bridge subjects. The input is read the way
// `NATSBridge` reads what it takes from NATS: as a `Call` (with the size limit, the version, the
// required fields, the deadline and the metadata limits, then the policy's decision), as a
// `Broadcast` (the same, plus the subject check) and as the `Result` another system answered a
// call with. A crash, a trap or a hang is a bug; refusals are not.

import FuzzSupport

runLibFuzzer { start, count in fuzzBridgeEnvelopes(start, count) }
