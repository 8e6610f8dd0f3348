import FuzzSupport
import TroupeActors
import TroupeBridge
import TroupeNATS
import TroupeWire

let configuration = NATSBridge.Configuration(
    system: "fuzz", node: "fuzz-node", maxCallBytes: 4096, drainTimeout: .seconds(1),
    policy: try! BridgePolicy(calls: "alpha:counter/add,echo/*; *:public/*", broadcasts: "alpha:news; *:prices"),
    metadataLimits: MetadataLimits(maxEntries: 4, maxBytes: 256))

// Also libFuzzer's own entry point, for when the linker picks libFuzzer's main over this target's.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBridgeEnvelopes(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let payload = [UInt8](UnsafeRawBufferPointer(fuzzInput: start, count: count))
    // The seeds' callers and origins (alpha, beta), and subjects a hostile client could use.
    for subject in ["troupe.v1.fuzz.invoke.alpha", "troupe.v1.fuzz.invoke.beta", "troupe.v1.fuzz.invoke"] {
        let call = NATSMessage(subject: subject, replyTo: "_INBOX.fuzz", payload: payload)
        if let invocation = try? NATSBridge.invocation(in: call, configuration: configuration) {
            _ = configuration.policy?.allowsCall(
                from: invocation.caller?.system ?? "", type: invocation.actor.name, action: invocation.action)
        }
    }
    for subject in ["troupe.v1.broadcast.alpha.news", "troupe.v1.broadcast.news", "troupe.v1.broadcast.>"] {
        if let broadcast = NATSBridge.broadcast(
            in: NATSMessage(subject: subject, payload: payload), configuration: configuration)
        {
            _ = configuration.policy?.allowsBroadcast(from: broadcast.originSystem, channel: broadcast.channel)
        }
    }
    _ = NATSBridge.outcome(of: .success(NATSMessage(subject: "_INBOX.fuzz", payload: payload)), from: "alpha")
    return 0
}
