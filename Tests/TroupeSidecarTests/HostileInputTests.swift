import Foundation
import NIOCore
import NIOPosix
import Testing
import TroupeProto
import TroupeSidecar
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

private func failure(_ body: WireFrame.OneOf_Body?) -> TroupeError? {
    guard case .failure(let failure) = body else { return nil }
    return TroupeError(failure)
}

private func echo(metadata: [String: String]) -> WireFrame.OneOf_Body {
    var request = WireInvokeRequest()
    request.actor.name = "echo"
    request.action = "echo"
    request.payload.typeURL = "application/json"
    request.payload.value = Data("\"hi\"".utf8)
    request.metadata = metadata
    return .invoke(request)
}

/// A host-protocol peer that writes and never reads: what the sidecar sends it piles up.
private final class NonReadingSocket: Sendable {
    let channel: any Channel

    init(path: String) async throws {
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.autoRead, value: false)
            .connect(unixDomainSocketPath: path).get()
    }

    /// Writes `frames` in one write; false once the sidecar has closed the connection.
    func send(_ frames: [(UInt64, WireFrame.OneOf_Body)]) async -> Bool {
        var buffer = channel.allocator.buffer(capacity: 64 * frames.count)
        for (id, body) in frames { try? FrameEncoder().encode(data: OutboundFrame(id: id, body), out: &buffer) }
        do {
            try await channel.writeAndFlush(buffer)
            return true
        } catch {
            return false
        }
    }
}

@Suite("Limits on what one host connection may send", .serialized)
struct HostileInputTests {
    @Test func metadataBeyondEitherLimitIsRefusedWithInvalidArgumentAndTheConnectionStaysUsable() async throws {
        try await withSidecar(configure: {
            $0.maxMetadataEntries = 2
            $0.maxMetadataBytes = 32
        }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(role: .client))
            _ = try await raw.answer(to: 1)
            try await raw.send(3, echo(metadata: ["a": "1", "b": "2", "c": "3"]))
            let entries = try #require(failure(try await raw.answer(to: 3)))
            #expect(entries.code == .invalidArgument)
            #expect(entries.message.contains("max-metadata-entries"))
            #expect(entries.details["limit"] == "2" && entries.details["size"] == "3")
            try await raw.send(5, echo(metadata: ["key": String(repeating: "v", count: 30)]))
            let bytes = try #require(failure(try await raw.answer(to: 5)))
            #expect(bytes.code == .invalidArgument)
            #expect(bytes.message.contains("max-metadata-bytes"))
            #expect(bytes.details["limit"] == "32" && bytes.details["size"] == "33")
            var broadcast = WireBroadcastRequest()
            broadcast.channel = "news"
            broadcast.action = "echo"
            broadcast.metadata = ["a": "1", "b": "2", "c": "3"]
            try await raw.send(7, .broadcast(broadcast))
            #expect(failure(try await raw.answer(to: 7))?.code == .invalidArgument)
            // Within both limits the same connection is served.
            try await raw.send(9, echo(metadata: ["a": "1", "b": String(repeating: "v", count: 29)]))
            guard case .invoked(let response) = try await raw.answer(to: 9) else {
                Issue.record("metadata within the limits was not served")
                return
            }
            #expect(String(decoding: response.payload.value, as: UTF8.self) == "\"hi\"")
            try await raw.channel.close()
        }
    }

    @Test func aPeerThatAsksWithoutReadingIsDisconnectedAndOtherConnectionsAreServed() async throws {
        try await withSidecar(configure: {
            $0.maxFrameBytes = 16_384
            $0.maxConnectionBufferBytes = 65_536
        }) { sidecar in
            let flooder = try await NonReadingSocket(path: sidecar.configuration.socket)
            #expect(await flooder.send([(1, RawSocket.hello(role: .client))]))
            // Each DescribeSidecar request is 14 bytes and its answer several times that; the
            // answers fill the socket buffers and then the sidecar's, which must not grow past
            // max-connection-buffer-bytes. 3000 batches would be 42 MB of requests.
            var nextID: UInt64 = 3
            var closed = false
            for _ in 0..<3000 {
                let batch = (0..<1000).map { _ -> (UInt64, WireFrame.OneOf_Body) in
                    defer { nextID += 2 }
                    return (nextID, .describeSidecar(WireDescribeSidecarRequest()))
                }
                if await !flooder.send(batch) {
                    closed = true
                    break
                }
            }
            #expect(closed, "the sidecar kept a connection that reads none of its answers")
            // The sidecar itself is fine: another connection is served.
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(role: .client))
            _ = try await raw.answer(to: 1)
            try await raw.send(3, echo(metadata: [:]))
            guard case .invoked = try await raw.answer(to: 3) else {
                Issue.record("another connection was not served")
                return
            }
            try await raw.channel.close()
            try? await flooder.channel.close()
        }
    }

    @Test func anOversizedFrameIsRefusedFromItsHeaderAloneAndOtherConnectionsAreServed() async throws {
        try await withSidecar(configure: { $0.maxFrameBytes = 2048 }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(role: .client))
            _ = try await raw.answer(to: 1)
            // 1 GiB announced, no body byte sent: the refusal does not wait for (or buffer) the body.
            try await raw.sendRaw(length: 1 << 30, id: 3, body: [])
            let refusal = try #require(failure(try await raw.answer(to: 3)))
            #expect(refusal.code == .resourceExhausted)
            #expect(refusal.details["size"] == "\(1 << 30)")
            // While the body trickles in, another connection is served.
            let other = try await RawSocket.connect(sidecar.configuration.socket)
            try await other.send(1, RawSocket.hello(role: .client))
            _ = try await other.answer(to: 1)
            // 8 × 64 KiB of the body, 256 times the limit: skipped as it arrives, never buffered.
            for round in 0..<8 {
                try await raw.channel.writeAndFlush(ByteBuffer(repeating: 0x55, count: 65_536))
                try await other.send(UInt64(3 + 2 * round), echo(metadata: [:]))
                guard case .invoked = try await other.answer(to: UInt64(3 + 2 * round)) else {
                    Issue.record("the other connection was not served while a large frame trickled in")
                    return
                }
            }
            #expect(raw.channel.isActive)
            try await raw.channel.close()
            try await other.channel.close()
        }
    }

    @Test func aHelloTrickledSlowerThanTheHandshakeTimeoutIsClosed() async throws {
        try await withSidecar(host: false, configure: { $0.handshakeTimeoutMs = 300 }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            // The header of a 100-byte Hello, then a byte now and then: bytes keep arriving, but
            // no Hello is complete when the timeout passes.
            var closed = false
            do { try await raw.sendRaw(length: 100, id: 1, body: [0x0A]) } catch ChannelError.ioOnClosedChannel {
                // A loaded machine let the timeout pass before the header went out: closed already.
                closed = true
            }
            for _ in 0..<100 where !closed {
                if !raw.channel.isActive {
                    closed = true
                    break
                }
                try? await raw.channel.writeAndFlush(ByteBuffer(bytes: [0x00]))
                try await Task.sleep(for: .milliseconds(50))
            }
            if !closed { closed = await raw.closedBySidecar() }
            #expect(closed)
            // Nothing came back: reading a channel that is closed already counts as nothing.
            #expect(((try? await raw.receive(count: 1)) ?? []).isEmpty)
        }
    }
}
