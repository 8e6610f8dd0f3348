import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing
import TroupeActors
import TroupeMembership
import TroupeProto
import TroupeWire

@testable import TroupeCluster

/// Records what a connection delivers, and answers calls only when told to.
final class RecordingInbound: ClusterInbound {
    let calls = Mutex<[(RemoteCallEnvelope, @Sendable (Result<Data?, TroupeError>) -> Void)]>([])

    func handle(
        call: RemoteCallEnvelope, deadline: NIODeadline, from peer: NodeIdentity,
        reply: @escaping @Sendable (Result<Data?, TroupeError>) -> Void
    ) {
        calls.withLock { $0.append((call, reply)) }
    }

    func handle(swim: ClusterSwim, from peer: NodeIdentity) {}
}

/// The handshake of node `a` (127.0.0.1:1) of `system`, as a peer opens a connection with it.
func clusterHandshake(system: String = "test") -> ClusterEnvelope.OneOf_Body {
    var handshake = ClusterHandshake()
    handshake.protocolVersion = ClusterProtocol.version
    handshake.system = system
    handshake.node.name = "a"
    handshake.node.address = "127.0.0.1:1"
    handshake.node.incarnation = 1
    return .handshake(handshake)
}

@Suite("Cluster connection handler on an embedded channel")
struct ConnectionHandlerTests {
    let myself = NodeIdentity(name: "b", address: "127.0.0.1:2", uid: 2)

    private func accepting() throws -> (EmbeddedChannel, ClusterConnection, RecordingInbound) {
        let channel = EmbeddedChannel()
        let inbound = RecordingInbound()
        let handler = ClusterChannelHandler(
            role: .accepting(system: "test", myself: myself), inbound: inbound, logger: Logger(label: "test"))
        let connection = ClusterConnection(channel: channel, handler: handler)
        handler.connection = connection
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        // The handler holds its connection weakly; in the transport the channel keeps it alive.
        channel.closeFuture.whenComplete { _ in withExtendedLifetime(connection) {} }
        return (channel, connection, inbound)
    }

    private func frame(_ id: UInt64, _ body: ClusterEnvelope.OneOf_Body) throws -> RawFrame {
        var envelope = ClusterEnvelope()
        envelope.body = body
        return .frame(id: id, body: ByteBuffer(bytes: try envelope.serializedBytes() as [UInt8]))
    }

    private func handshake(system: String = "test") -> ClusterEnvelope.OneOf_Body {
        clusterHandshake(system: system)
    }

    private func call() -> ClusterEnvelope.OneOf_Body {
        var call = ClusterRemoteCall()
        call.recipientNode = "b"
        call.recipientPath = "test/x"
        call.target = "test.t"
        call.timeoutMs = 5000
        return .call(call)
    }

    /// The envelopes the handler wrote, with their correlation ids.
    private func written(_ channel: EmbeddedChannel) throws -> [(UInt64, ClusterEnvelope)] {
        channel.embeddedEventLoop.run()  // the handler flushes once per loop tick
        var decoder = LengthPrefixedFrameDecoder()
        var result: [(UInt64, ClusterEnvelope)] = []
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            while case .frame(let id, let body)? = try decoder.decode(buffer: &buffer) {
                result.append((id, try ClusterEnvelope(serializedBytes: Array(body.readableBytesView))))
            }
        }
        return result
    }

    @Test func aCallBeforeTheHandshakeClosesTheConnectionUnserved() throws {
        let (channel, _, inbound) = try accepting()
        try channel.writeInbound(frame(5, call()))
        #expect(!channel.isActive)
        #expect(inbound.calls.withLock { $0.isEmpty })
    }

    @Test func aHandshakeOfAnotherSystemIsAnsweredWithARefusalAndTheConnectionCloses() throws {
        let (channel, _, _) = try accepting()
        try channel.writeInbound(frame(0, handshake(system: "other")))
        let answers = try written(channel)
        guard case .refused(let refused)? = answers.first?.1.body else {
            Issue.record("expected HandshakeRefused, got \(answers)")
            return
        }
        #expect(TroupeError(refused.failure).code == .failedPrecondition)
        #expect(!channel.isActive)
    }

    @Test func callsAreAnsweredOnTheirIdAndACancelledCallIsNotAnswered() throws {
        let (channel, _, inbound) = try accepting()
        try channel.writeInbound(frame(0, handshake()))
        guard case .accepted(let accepted)? = try written(channel).first?.1.body else {
            Issue.record("expected HandshakeAccepted")
            return
        }
        #expect(accepted.node.name == "b")

        try channel.writeInbound(frame(7, call()))
        try channel.writeInbound(frame(9, call()))
        try channel.writeInbound(frame(9, .cancel(ClusterCancelCall())))
        let replies = inbound.calls.withLock { $0.map(\.1) }
        #expect(replies.count == 2)
        replies[0](.success(Data("seven".utf8)))
        replies[1](.success(Data("nine".utf8)))
        let answers = try written(channel)
        #expect(answers.count == 1)
        #expect(answers.first?.0 == 7)
        guard case .reply(let reply)? = answers.first?.1.body, case .value(let value)? = reply.outcome else {
            Issue.record("expected a reply with a value, got \(answers)")
            return
        }
        #expect(value == Data("seven".utf8))
    }
}
