import Foundation
import NIOCore
import Testing
import TroupeProto

@testable import TroupeWire

@Suite("Invocation batch encoding")
struct InvocationBatchEncodingTests {
    private func invocation(_ index: Int, payloadBytes: Int) -> WireActorInvocation {
        var invocation = WireActorInvocation()
        invocation.actor.system = "bench"
        invocation.actor.name = "ticker-\(index)"
        invocation.actorType = "ticker"
        invocation.action = "tick"
        invocation.timer = "tick"
        invocation.timeoutMs = 30_000
        invocation.payload.typeURL = "application/json"
        invocation.payload.value = Data(repeating: UInt8(index & 0xff), count: payloadBytes)
        invocation.metadata = ["traceparent": "00-\(index)-01", "tenant": "t\(index)"]
        invocation.chain.path = [invocation.actor]
        return invocation
    }

    @Test(arguments: [0, 1, 2, 200])
    func theHandMadeBatchFrameIsByteForByteWhatSwiftProtobufMakes(count: Int) throws {
        // Payloads across the one- and two-byte length varints, and a batch longer than 16 KiB.
        let invocations = (0..<count).map { invocation($0, payloadBytes: $0 % 3 == 0 ? 0 : 40 * $0) }
        var frame = WireFrame()
        frame.actorInvocationBatch.invocations = invocations
        let expected: [UInt8] = try frame.serializedBytes()
        let made = try FrameBuffer.invocationBatch(invocations)
        #expect(Array(made.body.readableBytesView) == expected)
        // And it reads back as the same batch.
        let decoded = try WireFrame(serializedBytes: made)
        #expect(decoded.actorInvocationBatch.invocations == invocations)
    }
}
