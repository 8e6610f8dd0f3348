import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeCluster
import TroupeMembership
import TroupeProto
import TroupeTestSupport
import TroupeWire

/// A bare TCP connection to a node's cluster port that records the envelopes it receives.
private final class RawClusterPeer: Sendable {
    let channel: any Channel
    private let collector: Collector

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = RawFrame
        let envelopes = Mutex<[(UInt64, ClusterEnvelope.OneOf_Body?)]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .frame(let id, let body) = unwrapInboundIn(data) else { return }
            let envelope = try? ClusterEnvelope(serializedBytes: Array(body.readableBytesView))
            envelopes.withLock { $0.append((id, envelope?.body)) }
        }
    }

    /// - Parameter reading: false leaves what the node sends unread in the socket.
    init(port: Int, reading: Bool = true) async throws {
        let collector = Collector()
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.autoRead, value: reading)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        self.collector = collector
    }

    func send(_ id: UInt64, _ body: ClusterEnvelope.OneOf_Body) async throws {
        try await send([(id, body)])
    }

    /// Sends `envelopes` in one write.
    func send(_ envelopes: [(UInt64, ClusterEnvelope.OneOf_Body)]) async throws {
        var buffer = channel.allocator.buffer(capacity: 64 * envelopes.count)
        for (id, body) in envelopes {
            var envelope = ClusterEnvelope()
            envelope.body = body
            LengthPrefixedFrameDecoder.write(id: id, body: try envelope.serializedBytes() as [UInt8], into: &buffer)
        }
        try await channel.writeAndFlush(buffer)
    }

    func sendHeader(length: UInt32, id: UInt64) async throws {
        var buffer = channel.allocator.buffer(capacity: 12)
        buffer.writeInteger(length)
        buffer.writeInteger(id)
        try await channel.writeAndFlush(buffer)
    }

    /// The envelope with correlation id `id` (the handshake answer has id 0), waiting at most 10 s.
    func envelope(_ id: UInt64) async throws -> ClusterEnvelope.OneOf_Body? {
        for _ in 0..<500 {
            if let found = envelopes.first(where: { $0.0 == id }) { return found.1 }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    var envelopes: [(UInt64, ClusterEnvelope.OneOf_Body?)] { collector.envelopes.withLock { $0 } }

    /// True once the node closed the connection, waiting at most 10 s.
    func closedByNode() async -> Bool {
        for _ in 0..<500 {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

@Suite("Limits on what a peer may send to the cluster port", .serialized)
struct ClusterLimitsTests {
    @Test func aSilentConnectionIsClosedAfterTheHandshakeTimeout() async throws {
        try await withNodes(["b"], handshakeTimeout: .milliseconds(200)) { nodes in
            let peer = try await RawClusterPeer(port: try #require(nodes[0].transport.boundPort))
            #expect(await peer.closedByNode())
            #expect(peer.envelopes.isEmpty)
        }
    }

    @Test func aHandshakeTrickledSlowerThanTheTimeoutIsClosed() async throws {
        try await withNodes(["b"], handshakeTimeout: .milliseconds(300)) { nodes in
            let peer = try await RawClusterPeer(port: try #require(nodes[0].transport.boundPort))
            do { try await peer.sendHeader(length: 100, id: 0) } catch {
                // On a loaded machine the timeout can run out before the header is sent: closed already.
                #expect(!peer.channel.isActive, "the header could not be sent: \(error)")
                return
            }
            var closed = false
            for _ in 0..<100 {
                if !peer.channel.isActive {
                    closed = true
                    break
                }
                try? await peer.channel.writeAndFlush(ByteBuffer(bytes: [0x00]))
                try await Task.sleep(for: .milliseconds(50))
            }
            if !closed { closed = await peer.closedByNode() }
            #expect(closed)
        }
    }

    @Test func anOversizedEnvelopeBeforeTheHandshakeClosesTheConnection() async throws {
        try await withNodes(["b"], maxFrameBytes: 4096) { nodes in
            let peer = try await RawClusterPeer(port: try #require(nodes[0].transport.boundPort))
            try await peer.sendHeader(length: 1 << 30, id: 0)
            #expect(await peer.closedByNode())
        }
    }

    @Test func aPeerThatCallsWithoutReadingTheRepliesIsDisconnected() async throws {
        try await withNodes(["b"], maxBufferedBytes: 65_536) { nodes in
            // Each call is a few dozen bytes, each reply 4 KiB.
            nodes[0].system.serve(stableTarget: "test.large") { _, _, reply in
                reply(.success(Data(repeating: 7, count: 4096)))
            }
            let peer = try await RawClusterPeer(port: try #require(nodes[0].transport.boundPort), reading: false)
            try await peer.send(0, clusterHandshake())
            var call = ClusterRemoteCall()
            call.recipientNode = "b"
            call.recipientPath = "test/x"
            call.target = "test.large"
            call.timeoutMs = 10_000
            var nextID: UInt64 = 1
            var closed = false
            for _ in 0..<2000 {
                let batch = (0..<200).map { _ -> (UInt64, ClusterEnvelope.OneOf_Body) in
                    defer { nextID += 1 }
                    return (nextID, .call(call))
                }
                do { try await peer.send(batch) } catch {
                    closed = true
                    break
                }
            }
            #expect(closed, "the node kept a connection that reads none of its replies")
        }
    }

    @Test func anOversizedCallAfterTheHandshakeIsRefusedAndTheConnectionServesTheNext() async throws {
        try await withNodes(["b"], maxFrameBytes: 4096) { nodes in
            nodes[0].system.serve(stableTarget: "test.echo") { call, _, reply in
                reply(.success(call.arguments.first))
            }
            let peer = try await RawClusterPeer(port: try #require(nodes[0].transport.boundPort))
            try await peer.send(0, clusterHandshake())
            guard case .accepted = try await peer.envelope(0) else {
                Issue.record("the handshake was not accepted")
                return
            }
            // Twice the limit announced: refused from the header alone, before any body byte.
            try await peer.sendHeader(length: 8192, id: 1)
            guard case .reply(let refusal) = try await peer.envelope(1), case .failure(let failure) = refusal.outcome
            else {
                Issue.record("the oversized call was not answered")
                return
            }
            #expect(TroupeError(failure).code == .resourceExhausted)
            #expect(peer.channel.isActive)
            var call = ClusterRemoteCall()
            call.recipientNode = "b"
            call.recipientPath = "test/x"
            call.target = "test.echo"
            call.arguments = [Data("ok".utf8)]
            call.timeoutMs = 10_000
            // The body still follows and is skipped; the call after it is read and served.
            try await peer.channel.writeAndFlush(ByteBuffer(repeating: 0, count: 8192))
            try await peer.send(3, .call(call))
            guard case .reply(let reply) = try await peer.envelope(3), case .value(let value) = reply.outcome else {
                Issue.record("the call after the skipped one was not served")
                return
            }
            #expect(value == Data("ok".utf8))
        }
    }
}
