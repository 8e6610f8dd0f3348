public import Foundation
import Logging
public import NIOCore
import SwiftProtobuf
import Synchronization
public import TroupeActors
public import TroupeMembership
public import TroupeProto
public import TroupeWire

/// Receives what peers send over cluster connections.
///
/// Called on the connection's event loop, in the order the envelopes arrived.
public protocol ClusterInbound: Sendable {
    /// A call from `peer`; answer through `reply` exactly once, from any thread.
    func handle(
        call: RemoteCallEnvelope, deadline: NIODeadline, from peer: NodeIdentity,
        reply: @escaping @Sendable (Result<Data?, TroupeError>) -> Void)
    /// A failure-detector message from `peer`.
    func handle(swim: ClusterSwim, from peer: NodeIdentity)
}

/// One TCP connection between two sidecars, after (or during) its handshake.
///
/// Calls are multiplexed by call id. Their deadlines are kept by one timer on the connection's
/// event loop (``PendingCalls``). When the connection closes, every call waiting on it fails with
/// `unavailable` at once. Thread-safe.
public final class ClusterConnection: Sendable, CustomStringConvertible {
    public let channel: any Channel
    private let handler: NIOLoopBound<ClusterChannelHandler>
    private let peerBox = Mutex<NodeIdentity?>(nil)

    init(channel: any Channel, handler: ClusterChannelHandler) {
        self.channel = channel
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
    }

    /// The node at the other end, once the handshake is done.
    public var peer: NodeIdentity? { peerBox.withLock { $0 } }
    func setPeer(_ node: NodeIdentity) { peerBox.withLock { $0 = node } }

    public var isActive: Bool { channel.isActive }
    public var eventLoop: any EventLoop { channel.eventLoop }
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }
    public var description: String { "ClusterConnection(\(peer.map { "\($0)" } ?? "?"))" }

    /// Sends a call now (or, off the loop, as the loop's next task, in order) and completes with
    /// its encoded result, or fails with a ``TroupeError`` by `deadline`.
    public func start(_ call: RemoteCallEnvelope, deadline: NIODeadline) -> EventLoopFuture<Data?> {
        if channel.eventLoop.inEventLoop { return handler.value.start(call, deadline: deadline) }
        return channel.eventLoop.flatSubmit { self.handler.value.start(call, deadline: deadline) }
    }

    /// Starts `call` if this connection leads to node `name`; fails with `unavailable` if the
    /// address now belongs to another node.
    func start(_ call: RemoteCallEnvelope, deadline: NIODeadline, expecting name: String) -> EventLoopFuture<Data?> {
        guard peer?.name == name else {
            return channel.eventLoop.makeFailedFuture(
                TroupeError.unavailable(
                    "\(peer.map { "\($0.address) is node \($0.name)" } ?? "the peer is unknown"), not \(name)",
                    details: ["node": name]))
        }
        return start(call, deadline: deadline)
    }

    /// Sends a failure-detector message; nothing answers it on this connection.
    public func send(swim: ClusterSwim) {
        var swimEnvelope = ClusterEnvelope()
        swimEnvelope.swim = swim
        let envelope = swimEnvelope
        execute { $0.write(id: 0, envelope) }
    }

    /// Fails every waiting call with `error` and closes the connection.
    public func close(failingCallsWith error: TroupeError = .unavailable("the cluster connection was closed")) {
        execute { $0.close(failing: error) }
    }

    func answer(_ id: UInt64, _ result: Result<Data?, TroupeError>) {
        execute { $0.answer(id, result) }
    }

    private func execute(_ body: @escaping @Sendable (ClusterChannelHandler) -> Void) {
        if channel.eventLoop.inEventLoop {
            body(handler.value)
        } else {
            channel.eventLoop.execute { body(self.handler.value) }
        }
    }
}

/// The event-loop side of a ``ClusterConnection``: handshake, demultiplexing, deadlines.
final class ClusterChannelHandler: ChannelInboundHandler {
    typealias InboundIn = RawFrame
    typealias OutboundOut = ByteBuffer

    enum Role {
        /// This side connected: it sends `handshake` and waits for the answer.
        case connecting(ClusterHandshake, EventLoopPromise<NodeIdentity>)
        /// This side accepted: the first envelope must be the peer's handshake.
        case accepting(system: String, myself: NodeIdentity)
    }

    private let role: Role
    private let inbound: any ClusterInbound
    private var logger: Logger
    weak var connection: ClusterConnection?
    private var context: ChannelHandlerContext?
    private var peer: NodeIdentity?
    private var pending = PendingCalls<EventLoopPromise<Data?>>()
    /// Fires at the earliest deadline in `pending`, or later when that one was answered.
    private var deadlines = DeadlineTimer()
    private var nextID: UInt64 = 1
    /// The peer's calls not answered yet; a cancelled one is removed and its answer dropped.
    private var live: Set<UInt64> = []
    private var flushScheduled = false
    private var closed = false

    /// Completed when the handshake ends, either way; nil afterwards.
    private var handshakePromise: EventLoopPromise<NodeIdentity>?

    /// The most bytes that may wait to be sent to a peer that does not read; nil: no limit.
    private let maxBufferedBytes: Int?

    init(role: Role, inbound: any ClusterInbound, maxBufferedBytes: Int? = nil, logger: Logger) {
        self.role = role
        if case .connecting(_, let promise) = role { handshakePromise = promise }
        self.inbound = inbound
        self.maxBufferedBytes = maxBufferedBytes
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if case .connecting(let handshake, _) = role, context.channel.isActive {
            sendHandshake(handshake)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        if case .connecting(let handshake, _) = role { sendHandshake(handshake) }
        context.fireChannelActive()
    }

    private var handshakeSent = false

    private func sendHandshake(_ handshake: ClusterHandshake) {
        guard !handshakeSent else { return }
        handshakeSent = true
        var envelope = ClusterEnvelope()
        envelope.handshake = handshake
        write(id: 0, envelope)
    }

    // MARK: Calls of this side

    func start(_ call: RemoteCallEnvelope, deadline: NIODeadline) -> EventLoopFuture<Data?> {
        guard let context, !closed, peer != nil else {
            return (context?.eventLoop ?? connectionLoop).makeFailedFuture(
                TroupeError.unavailable("the connection to node \(call.recipient.node) is closed"))
        }
        let id = nextID
        nextID += 1
        let promise = context.eventLoop.makePromise(of: Data?.self)
        var wire = ClusterRemoteCall()
        wire.recipientNode = call.recipient.node
        wire.recipientPath = call.recipient.path
        wire.target = call.target
        wire.genericSubstitutions = call.genericSubstitutions
        wire.arguments = call.arguments
        wire.hops = call.hops
        wire.timeoutMs = UInt64(max(1, (deadline - .now()).nanoseconds / 1_000_000))
        var envelope = ClusterEnvelope()
        envelope.call = wire
        pending.insert(id, deadline: deadline, promise)
        armDeadlines(for: deadline, on: context.eventLoop)
        write(id: id, envelope)
        return promise.futureResult
    }

    private var connectionLoop: any EventLoop { connection?.eventLoop ?? DeadlineLoop.any }

    /// Makes sure the connection's one timer fires by `deadline`. It stays armed when the calls
    /// are answered: at one call in flight, cancelling and scheduling it again for every call
    /// cost more than the few spurious firings a period (see ``DeadlineTimer``).
    private func armDeadlines(for deadline: NIODeadline, on loop: any EventLoop) {
        deadlines.arm(for: deadline, on: loop) { [self] in expireCalls() }
    }

    private func expireCalls() {
        deadlines.fired()
        guard let context else { return }
        for (id, promise) in pending.expire(now: .now()) {
            promise.fail(TroupeError.deadlineExceeded("no answer from node \(peerName) in time"))
            write(id: id, cancelEnvelope)
        }
        if let next = pending.earliestDeadline { armDeadlines(for: next, on: context.eventLoop) }
    }

    private var cancelEnvelope: ClusterEnvelope {
        var envelope = ClusterEnvelope()
        envelope.cancel = ClusterCancelCall()
        return envelope
    }

    private var peerName: String { peer?.name ?? "?" }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .oversized(let id, let length):
            let error = TroupeError.resourceExhausted(
                "a cluster envelope of \(length) bytes exceeds the limit", details: ["size": "\(length)"])
            logger.warning("oversized cluster envelope skipped", metadata: ["troupe.size": "\(length)"])
            refuseUnreadable(id, error)
        case .frame(let id, let body):
            let envelope: ClusterEnvelope
            do {
                envelope = try ClusterEnvelope(serializedBytes: FrameBuffer(body: body))
            } catch {
                refuseUnreadable(id, .invalidArgument("a cluster envelope could not be read: \(error)"))
                return
            }
            guard let body = envelope.body else {
                refuseUnreadable(id, .invalidArgument("a cluster envelope has no body"))
                return
            }
            read(id, body)
        }
    }

    /// An envelope that could not be read: a call is answered, an answer fails its call; before
    /// the handshake nothing is trusted and the connection closes.
    private func refuseUnreadable(_ id: UInt64, _ error: TroupeError) {
        guard peer != nil else {
            close(failing: error)
            return
        }
        if let promise = pending.remove(id) {
            promise.fail(error)
        } else if id != 0 {
            answer(id, .failure(error), force: true)
        }
    }

    private func read(_ id: UInt64, _ body: ClusterEnvelope.OneOf_Body) {
        guard let peer else {
            handshake(body)
            return
        }
        switch body {
        case .call(let call):
            live.insert(id)
            let timeout = call.timeoutMs == 0 ? 30_000 : min(call.timeoutMs, 3_600_000)
            let envelope = RemoteCallEnvelope(
                recipient: TroupeActorID(node: call.recipientNode, path: call.recipientPath), target: call.target,
                genericSubstitutions: call.genericSubstitutions, arguments: call.arguments, hops: call.hops)
            let connection = self.connection
            inbound.handle(call: envelope, deadline: .now() + .milliseconds(Int64(timeout)), from: peer) { result in
                connection?.answer(id, result)
            }
        case .reply(let reply):
            guard let promise = pending.remove(id) else { return }  // late: timed out or cancelled
            switch reply.outcome {
            case .value(let data): promise.succeed(data)
            case .void: promise.succeed(nil)
            case .failure(let failure): promise.fail(TroupeError(failure))
            case nil: promise.fail(TroupeError.internalError("node \(peer.name) sent an empty reply"))
            }
        case .cancel:
            live.remove(id)
        case .swim(let swim):
            inbound.handle(swim: swim, from: peer)
        case .handshake, .accepted, .refused:
            logger.warning("a second handshake on a cluster connection; closing")
            close(failing: .unavailable("node \(peer.name) broke the cluster protocol"))
        }
    }

    private func handshake(_ body: ClusterEnvelope.OneOf_Body) {
        switch (role, body) {
        case (.accepting(let system, let myself), .handshake(let handshake)):
            if let refusal = ClusterProtocol.refusal(of: handshake, system: system) {
                logger.warning(
                    "cluster handshake refused",
                    metadata: [
                        "troupe.peer": "\(handshake.node.name)", "troupe.peer_system": "\(handshake.system)",
                        "troupe.peer_version": "\(handshake.protocolVersion)", "troupe.reason": "\(refusal.message)",
                    ])
                var refused = ClusterHandshakeRefused()
                refused.failure = refusal.wire
                var envelope = ClusterEnvelope()
                envelope.refused = refused
                write(id: 0, envelope)
                close(failing: refusal)
                return
            }
            established(handshake.node.identity)
            var accepted = ClusterHandshakeAccepted()
            accepted.protocolVersion = ClusterProtocol.version
            accepted.node = ClusterNode(myself)
            var envelope = ClusterEnvelope()
            envelope.accepted = accepted
            write(id: 0, envelope)
        case (.connecting, .accepted(let accepted)):
            established(accepted.node.identity)
            handshakePromise?.succeed(accepted.node.identity)
            handshakePromise = nil
        case (.connecting, .refused(let refused)):
            let error = TroupeError(refused.failure)
            logger.warning("cluster handshake refused by the peer", metadata: ["troupe.reason": "\(error.message)"])
            close(failing: error)
        default:
            close(failing: .unavailable("the peer did not start with a cluster handshake"))
        }
    }

    private func established(_ node: NodeIdentity) {
        peer = node
        connection?.setPeer(node)
        logger[metadataKey: "troupe.peer"] = "\(node)"
    }

    // MARK: Writing

    func answer(_ id: UInt64, _ result: Result<Data?, TroupeError>, force: Bool = false) {
        guard live.remove(id) != nil || force else { return }  // cancelled by the caller
        var reply = ClusterRemoteReply()
        switch result {
        case .success(let data?): reply.value = data
        case .success(nil): reply.void = true
        case .failure(let error): reply.failure = error.wire
        }
        var envelope = ClusterEnvelope()
        envelope.reply = reply
        write(id: id, envelope)
    }

    /// Writes an envelope and flushes once per event-loop tick.
    func write(id: UInt64, _ envelope: ClusterEnvelope) {
        guard let context, !closed else { return }
        var body: FrameBuffer
        do { body = try envelope.serializedBytes() } catch {
            logger.error("cannot encode a cluster envelope", metadata: ["troupe.error": "\(error)"])
            return
        }
        context.write(wrapOutboundOut(body.framed(id: id)), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            guard let context = self.context else { return }
            context.flush()
            // Above the high-water mark only: a peer that calls without reading the replies
            // must not grow this node's memory without bound.
            if !context.channel.isWritable, let maxBufferedBytes,
                let buffered = context.channel.bufferedBytes(beyond: maxBufferedBytes)
            {
                logger.warning(
                    "the peer does not read its replies; closing",
                    metadata: [
                        "troupe.buffered_bytes": "\(buffered)", "troupe.max_buffered_bytes": "\(maxBufferedBytes)",
                    ])
                close(failing: .unavailable("the connection to node \(peerName) was closed: it did not read"))
            }
        }
    }

    func close(failing error: TroupeError) {
        failAll(error)
        guard let context, !closed else { return }
        context.flush()
        context.close(promise: nil)
    }

    private func failAll(_ error: TroupeError) {
        deadlines.stop()
        for promise in pending.removeAll() { promise.fail(error) }
        handshakePromise?.fail(error)
        handshakePromise = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.unavailable("the connection to node \(peerName) closed before the answer arrived"))
        closed = true
        live.removeAll()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("cluster connection error", metadata: ["troupe.error": "\(error)"])
        if let refusal = error as? TroupeError {
            // A refusal before the handshake (TLS): the dialling side's calls fail with its reason.
            close(failing: refusal)
        } else {
            context.close(promise: nil)
        }
    }
}

/// The loop for futures that belong to no connection.
enum DeadlineLoop {
    static var any: any EventLoop { NIOSingletons.posixEventLoopGroup.any() }
}
