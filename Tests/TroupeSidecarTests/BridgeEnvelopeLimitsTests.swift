import Foundation
import Testing
import TroupeActors
import TroupeBridge
import TroupeNATS
import TroupeProto
import TroupeWire

/// How the bridge reads calls and broadcasts other systems publish on NATS (anyone with NATS
/// credentials can publish there).
@Suite("Limits on bridge envelopes")
struct BridgeEnvelopeLimitsTests {
    let configuration = NATSBridge.Configuration(
        system: "beta", node: "b1", maxCallBytes: 1024, drainTimeout: .seconds(1),
        metadataLimits: MetadataLimits(maxEntries: 2, maxBytes: 32))

    private func call(metadata: [String: String], padding: Int = 0) throws -> NATSMessage {
        var call = BridgeCall()
        call.version = NATSBridge.version
        call.callerSystem = "alpha"
        call.actor = "counter"
        call.action = "add"
        call.timeoutMs = 1000
        call.metadata = metadata
        call.payload.value = Data(repeating: 1, count: padding)
        return NATSMessage(subject: BridgeSubjects.invoke("beta", from: "alpha"), replyTo: "_INBOX.1", payload: try call.serializedBytes())
    }

    @Test func aCallWithTooMuchMetadataIsRefusedWithInvalidArgument() throws {
        let entries = #expect(throws: TroupeError.self) {
            try NATSBridge.invocation(
                in: try call(metadata: ["a": "1", "b": "2", "c": "3"]), configuration: configuration)
        }
        #expect(entries?.code == .invalidArgument)
        #expect(entries?.message.contains("max-metadata-entries") == true)
        let bytes = #expect(throws: TroupeError.self) {
            try NATSBridge.invocation(
                in: try call(metadata: ["k": String(repeating: "v", count: 40)]), configuration: configuration)
        }
        #expect(bytes?.code == .invalidArgument)
        #expect(bytes?.message.contains("max-metadata-bytes") == true)
        let invocation = try NATSBridge.invocation(in: try call(metadata: ["a": "1"]), configuration: configuration)
        #expect(invocation.metadata == ["a": "1"])
        #expect(invocation.caller?.system == "alpha")
    }

    @Test func anOversizedOrUnreadableCallIsRefusedWithItsCode() throws {
        let large = #expect(throws: TroupeError.self) {
            try NATSBridge.invocation(in: try call(metadata: [:], padding: 2000), configuration: configuration)
        }
        #expect(large?.code == .resourceExhausted)
        let garbage = #expect(throws: TroupeError.self) {
            try NATSBridge.invocation(
                in: NATSMessage(subject: BridgeSubjects.invoke("beta", from: "alpha"), payload: [0xFF, 0xFF, 0xFF]),
                configuration: configuration)
        }
        #expect(garbage?.code == .invalidArgument)
    }

    @Test func aBroadcastWithTooMuchMetadataIsDropped() throws {
        var broadcast = BridgeBroadcast()
        broadcast.version = NATSBridge.version
        broadcast.originSystem = "alpha"
        broadcast.channel = "news"
        broadcast.action = "publish"
        broadcast.metadata = ["a": "1"]
        let subject = BridgeSubjects.broadcast("news", from: "alpha")
        let accepted = NATSBridge.broadcast(
            in: NATSMessage(subject: subject, payload: try broadcast.serializedBytes()), configuration: configuration)
        #expect(accepted?.metadata == ["a": "1"])
        broadcast.metadata = ["a": "1", "b": "2", "c": "3"]
        let refused = NATSBridge.broadcast(
            in: NATSMessage(subject: subject, payload: try broadcast.serializedBytes()), configuration: configuration)
        #expect(refused == nil)
    }
}
