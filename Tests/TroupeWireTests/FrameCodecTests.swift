import Foundation
import NIOCore
import Testing
import TroupeProto

@testable import TroupeWire

private func encoded(_ frames: [OutboundFrame]) throws -> ByteBuffer {
    var buffer = ByteBuffer()
    for frame in frames { try FrameEncoder().encode(data: frame, out: &buffer) }
    return buffer
}

private func decodeAll(_ buffer: inout ByteBuffer, _ decoder: inout FrameDecoder) throws -> [InboundFrame] {
    var out: [InboundFrame] = []
    while let frame = try decoder.decode(buffer: &buffer) { out.append(frame) }
    return out
}

private func invokeFrame(_ id: UInt64, payloadBytes: Int = 3) -> OutboundFrame {
    var invoke = WireInvokeRequest()
    invoke.actor.name = "seat-map"
    invoke.action = "reserve"
    invoke.payload.typeURL = "application/json"
    invoke.payload.value = Data(repeating: 0x41, count: payloadBytes)
    invoke.metadata = ["trace": "abc"]
    return OutboundFrame(id: id, .invoke(invoke))
}

@Suite("Frame codec")
struct FrameCodecTests {
    @Test func framesRoundTripWithTheirCorrelationIDs() throws {
        var buffer = try encoded([invokeFrame(7), OutboundFrame(id: 0, .ping(WirePing.with { $0.nonce = 42 }))])
        var decoder = FrameDecoder()
        let frames = try decodeAll(&buffer, &decoder)
        #expect(frames.count == 2)
        guard case .frame(let id, let frame) = frames[0], case .invoke(let invoke) = frame.body else {
            Issue.record("first frame is not the invoke: \(frames)")
            return
        }
        #expect(id == 7)
        #expect(invoke.actor.name == "seat-map")
        #expect(invoke.metadata["trace"] == "abc")
        guard case .frame(0, let ping) = frames[1], case .ping(let body) = ping.body else {
            Issue.record("second frame is not the ping")
            return
        }
        #expect(body.nonce == 42)
        #expect(buffer.readableBytes == 0)
    }

    @Test func headerIsLengthThenCorrelationIDBigEndian() throws {
        let buffer = try encoded([OutboundFrame(id: 0x0102_0304_0506_0708, .cancel(WireCancel()))])
        let bytes = Array(buffer.readableBytesView)
        // Frame{cancel = 7: empty message} encodes as tag 0x3a, length 0.
        #expect(bytes == [0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0x3A, 0x00])
    }

    @Test func partialInputWaitsForTheWholeFrame() throws {
        let whole = try encoded([invokeFrame(3), invokeFrame(5)])
        var decoder = FrameDecoder()
        var buffer = ByteBuffer()
        var frames: [InboundFrame] = []
        for byte in whole.readableBytesView {
            buffer.writeInteger(byte)
            frames += try decodeAll(&buffer, &decoder)
            if buffer.readableBytes > 0 && frames.isEmpty {
                #expect(frames.isEmpty)
            }
        }
        #expect(frames.count == 2)
        let ids = frames.compactMap { if case .frame(let id, _) = $0 { id } else { nil } }
        #expect(ids == [3, 5])
    }

    @Test func oversizedFrameIsSkippedAndTheNextOneStillDecodes() throws {
        var decoder = FrameDecoder(maxFrameBytes: 64)
        let big = try encoded([invokeFrame(9, payloadBytes: 500)])
        let next = try encoded([invokeFrame(11)])
        // Feed the big frame in small pieces: its body must never be needed in full.
        var buffer = ByteBuffer()
        var frames: [InboundFrame] = []
        var rest = big
        while let chunk = rest.readSlice(length: min(50, rest.readableBytes)), chunk.readableBytes > 0 {
            var chunk = chunk
            buffer.writeBuffer(&chunk)
            frames += try decodeAll(&buffer, &decoder)
            #expect(buffer.readableBytes < 64 + HostProtocol.headerSize)
        }
        var tail = next
        buffer.writeBuffer(&tail)
        frames += try decodeAll(&buffer, &decoder)
        #expect(frames.count == 2)
        guard case .oversized(9, let length) = frames[0] else {
            Issue.record("expected oversized, got \(frames[0])")
            return
        }
        #expect(length > 64)
        guard case .frame(11, _) = frames[1] else {
            Issue.record("the frame after the oversized one did not decode: \(frames[1])")
            return
        }
    }

    @Test func garbageBodyIsReportedAsMalformedAndFramingContinues() throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(4))
        buffer.writeInteger(UInt64(13))
        buffer.writeBytes([0xFF, 0xFF, 0xFF, 0xFF])
        var good = try encoded([invokeFrame(15)])
        buffer.writeBuffer(&good)
        var decoder = FrameDecoder()
        let frames = try decodeAll(&buffer, &decoder)
        #expect(frames.count == 2)
        guard case .malformed(13, _) = frames[0], case .frame(15, _) = frames[1] else {
            Issue.record("unexpected frames \(frames)")
            return
        }
    }

    @Test func emptyBodyIsMalformed() throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(UInt64(1))
        var decoder = FrameDecoder()
        let frames = try decodeAll(&buffer, &decoder)
        guard case .malformed(1, let reason) = frames.first else {
            Issue.record("expected malformed, got \(frames)")
            return
        }
        #expect(reason.contains("no body"))
    }

    @Test func correlationIDsSplitBetweenTheSides() {
        #expect(ConnectionSide.initiator.owns(1))
        #expect(!ConnectionSide.initiator.owns(2))
        #expect(ConnectionSide.acceptor.owns(2))
        #expect(!ConnectionSide.acceptor.owns(0))
        #expect(!ConnectionSide.initiator.owns(0))
    }
}

@Suite("Typed errors and endpoints")
struct ErrorAndEndpointTests {
    @Test func aBodyWithoutRoomForTheHeaderIsFramedToo() throws {
        let bytes: [UInt8] = try invokeFrame(9).frame.serializedBytes()
        var body = FrameBuffer(body: ByteBuffer(bytes: bytes))
        var buffer = body.framed(id: 9)
        var decoder = FrameDecoder()
        let frames = try decodeAll(&buffer, &decoder)
        guard case .frame(9, let frame)? = frames.first, case .invoke(let invoke) = frame.body else {
            Issue.record("not the invoke: \(frames)")
            return
        }
        #expect(invoke.action == "reserve")
        #expect(frames.count == 1)
    }

    @Test func errorsSurviveTheWire() {
        for code in TroupeError.Code.allCases {
            let error = TroupeError(code, "boom", details: ["actor": "a"])
            #expect(TroupeError(error.wire) == error)
        }
    }

    @Test func okOrUnknownCodeOnTheWireNeverReadsAsSuccess() {
        var failure = WireFailure()
        failure.code = .ok
        #expect(TroupeError(failure).code == .unknown)
        failure.code = .UNRECOGNIZED(99)
        #expect(TroupeError(failure).code == .unknown)
    }

    @Test func endpointsParse() throws {
        #expect(try Endpoint(parsing: "/tmp/x.sock") == .unix(path: "/tmp/x.sock"))
        #expect(try Endpoint(parsing: "unix:/tmp/x.sock") == .unix(path: "/tmp/x.sock"))
        #expect(try Endpoint(parsing: "tcp://127.0.0.1:7600") == .tcp(host: "127.0.0.1", port: 7600))
        #expect(try Endpoint(parsing: "tcp://[::1]:7600") == .tcp(host: "::1", port: 7600))
        for bad in ["", "tcp://host", "tcp://:80", "http://x", "tcp://h:99999", "unix:"] {
            #expect(throws: TroupeError.self) { try Endpoint(parsing: bad) }
        }
    }
}
