public import Logging
public import NIOCore
import Synchronization
public import TroupeProto

/// Receives what the peer asks of this side of a ``PeerConnection``.
///
/// Every method is called on the connection's event loop, in the order the frames arrived, so an
/// implementation can keep per-connection order without locks of its own. Each request must be
/// answered exactly once, with ``PeerConnection/respond(to:with:)`` or ``PeerConnection/fail(_:with:)``.
public protocol PeerRequestHandler: Sendable {
    /// A new request of the peer with correlation id `id`.
    func handle(request: WireFrame.OneOf_Body, id: UInt64, on connection: PeerConnection)
    /// The peer gave up waiting for request `id`.
    func peerCancelled(id: UInt64, on connection: PeerConnection)
    /// The peer will start no new requests.
    func peerSaidGoodbye(_ goodbye: WireGoodbye, on connection: PeerConnection)
    /// The peer sent a frame that could not be read or was too large. It has been answered already;
    /// the handler may decide to close the connection.
    func peerViolatedProtocol(_ error: TroupeError, on connection: PeerConnection)
    /// The connection is closed. Every outstanding request of this side has been failed with `unavailable`.
    func connectionClosed(_ connection: PeerConnection)
    /// More than the connection's `maxBufferedBytes` waited to be sent because the peer does not
    /// read; the connection is being closed.
    func peerStoppedReading(bufferedBytes: Int, on connection: PeerConnection)
}

extension PeerRequestHandler {
    public func peerCancelled(id: UInt64, on connection: PeerConnection) {}
    public func peerSaidGoodbye(_ goodbye: WireGoodbye, on connection: PeerConnection) {}
    public func peerViolatedProtocol(_ error: TroupeError, on connection: PeerConnection) {}
    public func connectionClosed(_ connection: PeerConnection) {}
    public func peerStoppedReading(bufferedBytes: Int, on connection: PeerConnection) {}
}

/// One multiplexed host-protocol connection, seen from either end.
///
/// Both sides may have many requests outstanding at once; answers are matched to requests by
/// correlation id. Each request carries a timeout: when it passes, the request fails with
/// `deadlineExceeded` and a `Cancel` frame tells the peer; one timer per connection enforces them
/// all (``DeadlineTimer``). When the connection closes, every outstanding request fails with
/// `unavailable` at once instead of waiting out its timeout.
///
/// `PeerConnection` is thread-safe; its methods may be called from any thread or task.
public final class PeerConnection: Sendable, CustomStringConvertible {
    public let channel: any Channel
    public let side: ConnectionSide
    public let logger: Logger
    private let handler: NIOLoopBound<FrameConnectionHandler>
    private let nextID: Atomic<UInt64>
    private let peerLimit: Atomic<UInt32>

    /// Sets up the pipeline of a fresh channel. Call on the channel's event loop.
    ///
    /// - Parameters:
    ///   - maxFrameBytes: the largest frame body read from the peer; larger ones are skipped
    ///     unread and answered with `resourceExhausted`.
    ///   - maxBufferedBytes: the most bytes that may wait to be sent, for a peer that sends but
    ///     does not read; past it the connection is closed. nil: no limit.
    public static func install(
        on channel: any Channel,
        side: ConnectionSide,
        maxFrameBytes: UInt32 = HostProtocol.defaultMaxFrameBytes,
        maxBufferedBytes: Int? = nil,
        delegate: (any PeerRequestHandler)?,
        logger: Logger
    ) throws -> PeerConnection {
        let handler = FrameConnectionHandler(side: side, maxBufferedBytes: maxBufferedBytes, logger: logger)
        let connection = PeerConnection(channel: channel, side: side, handler: handler, logger: logger)
        handler.connection = connection
        handler.delegate = delegate
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(
                FrameDecoder(maxFrameBytes: maxFrameBytes),
                maximumBufferSize: LengthPrefixedFrameDecoder.maximumBufferedBytes(maxFrameBytes: maxFrameBytes)))
        try channel.pipeline.syncOperations.addHandler(handler)
        return connection
    }

    private init(channel: any Channel, side: ConnectionSide, handler: FrameConnectionHandler, logger: Logger) {
        self.channel = channel
        self.side = side
        self.logger = logger
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.nextID = Atomic(side == .initiator ? 1 : 2)
        self.peerLimit = Atomic(HostProtocol.defaultMaxFrameBytes)
    }

    public var eventLoop: any EventLoop { channel.eventLoop }
    public var description: String { "PeerConnection(\(channel.remoteAddress.map { "\($0)" } ?? "?"))" }

    /// The largest frame body the peer accepts, as learned in the handshake.
    public var peerMaxFrameBytes: UInt32 {
        get { peerLimit.load(ordering: .relaxed) }
        set { peerLimit.store(newValue, ordering: .relaxed) }
    }

    /// Allocates the correlation id of a new request of this side.
    public func makeRequestID() -> UInt64 {
        nextID.wrappingAdd(2, ordering: .relaxed).oldValue
    }

    /// Sends a request and returns its answer. A `failure` answer fails the future with the
    /// ``TroupeError`` it carries.
    public func request(
        _ body: WireFrame.OneOf_Body,
        id: UInt64? = nil,
        timeout: TimeAmount
    ) -> EventLoopFuture<WireFrame.OneOf_Body> {
        let id = id ?? makeRequestID()
        let frame = OutboundFrame(id: id, body)
        let promise = channel.eventLoop.makePromise(of: WireFrame.OneOf_Body.self)
        if channel.eventLoop.inEventLoop {
            handler.value.start(frame, timeout: timeout, promise: promise)
        } else {
            channel.eventLoop.execute { self.handler.value.start(frame, timeout: timeout, promise: promise) }
        }
        return promise.futureResult
    }

    /// Sends a request whose body, a serialized `troupe.host.v1.Frame`, is already encoded: for a
    /// frame built from many parts (``FrameBuffer/invocationBatch(_:)``), where swift-protobuf would
    /// size every nested message again at each level above it. A body larger than the peer accepts
    /// fails the request with `resourceExhausted` without sending it.
    public func request(encoded body: FrameBuffer, timeout: TimeAmount) -> EventLoopFuture<WireFrame.OneOf_Body> {
        let id = makeRequestID()
        let promise = channel.eventLoop.makePromise(of: WireFrame.OneOf_Body.self)
        if channel.eventLoop.inEventLoop {
            handler.value.start(id: id, encoded: body, timeout: timeout, promise: promise)
        } else {
            channel.eventLoop.execute {
                self.handler.value.start(id: id, encoded: body, timeout: timeout, promise: promise)
            }
        }
        return promise.futureResult
    }

    /// Sends a request and waits for its answer. Cancelling the task cancels the request, and the
    /// peer is told.
    public func call(_ body: WireFrame.OneOf_Body, timeout: TimeAmount) async throws -> WireFrame.OneOf_Body {
        let id = makeRequestID()
        let future = request(body, id: id, timeout: timeout)
        return try await withTaskCancellationHandler {
            try await future.get()
        } onCancel: {
            self.cancel(id: id)
        }
    }

    /// Gives up on request `id` of this side: it fails with `cancelled` and the peer is told.
    public func cancel(id: UInt64) {
        channel.eventLoop.execute { self.handler.value.cancel(id: id) }
    }

    /// Answers the peer's request `id`. An answer larger than the peer accepts is replaced by a
    /// `resourceExhausted` failure, so the peer is never left waiting.
    public func respond(to id: UInt64, with body: WireFrame.OneOf_Body) {
        write(OutboundFrame(id: id, body))
    }

    /// Answers the peer's request `id` with a failure.
    public func fail(_ id: UInt64, with error: TroupeError) {
        write(OutboundFrame(id: id, .failure(error.wire)))
    }

    /// Sends a frame that belongs to no request (Goodbye).
    public func sendConnectionFrame(_ body: WireFrame.OneOf_Body) {
        write(OutboundFrame(id: HostProtocol.connectionFrameID, body))
    }

    /// Number of this side's requests still waiting for an answer.
    public func outstandingRequests() -> EventLoopFuture<Int> {
        channel.eventLoop.submit { self.handler.value.pending.count }
    }

    /// Starts sending pings every `interval` (initiator) and closes the connection when the peer
    /// stayed silent for three intervals (both sides).
    public func startHeartbeat(interval: TimeAmount) {
        channel.eventLoop.execute { self.handler.value.startHeartbeat(interval: interval) }
    }

    /// Closes the connection after the frames already sent have left. Outstanding requests fail
    /// with `unavailable`.
    public func close() {
        // Through the loop, so it comes after writes queued before it, and flushes them first.
        if channel.eventLoop.inEventLoop {
            handler.value.flushAndClose()
        } else {
            channel.eventLoop.execute { self.handler.value.flushAndClose() }
        }
    }

    /// Resolves when the connection is closed.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    private func write(_ frame: OutboundFrame) {
        var frame = frame
        var body: FrameBuffer
        do {
            body = try frame.frame.serializedBytes()
        } catch {
            // Serializing a message we built ourselves cannot fail for valid UTF-8 strings; answer anyway.
            frame = OutboundFrame(
                id: frame.id, .failure(TroupeError.internalError("could not encode answer: \(error)").wire))
            body = (try? frame.frame.serializedBytes()) ?? FrameBuffer(repeating: 0, count: 0)
        }
        send(body, id: frame.id)
    }

    /// Sends an encoded frame body: checked against the peer's limit, framed, written.
    private func send(_ body: FrameBuffer, id: UInt64) {
        var body = body
        let limit = peerMaxFrameBytes
        if body.count > Int(limit), id != HostProtocol.connectionFrameID {
            let failure = TroupeError.resourceExhausted(
                "frame of \(body.count) bytes exceeds the peer's limit of \(limit) bytes",
                details: ["limit": "\(limit)", "size": "\(body.count)"])
            if side.owns(id) {
                // Our own request is too large: fail it locally, the peer never sees it.
                channel.eventLoop.execute { self.handler.value.failPending(id: id, with: failure) }
                return
            }
            write(OutboundFrame(id: id, .failure(failure.wire)))
            return
        }
        let buffer = body.framed(id: id)
        if channel.eventLoop.inEventLoop {
            handler.value.send(buffer)
        } else {
            let frameBytes = buffer
            channel.eventLoop.execute { self.handler.value.send(frameBytes) }
        }
    }

    fileprivate func writeFromLoop(_ frame: OutboundFrame) { write(frame) }
    fileprivate func sendFromLoop(_ body: FrameBuffer, id: UInt64) { send(body, id: id) }
}

/// The event-loop side of a ``PeerConnection``: demultiplexes answers, timeouts, heartbeats.
final class FrameConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = InboundFrame
    typealias OutboundOut = ByteBuffer

    struct Pending {
        var promise: EventLoopPromise<WireFrame.OneOf_Body>
        /// For the message of its `deadlineExceeded`.
        var timeout: TimeAmount
    }

    let side: ConnectionSide
    let logger: Logger
    /// See ``PeerConnection/install(on:side:maxFrameBytes:maxBufferedBytes:delegate:logger:)``.
    let maxBufferedBytes: Int?
    var connection: PeerConnection?
    var delegate: (any PeerRequestHandler)?
    var pending = PendingCalls<Pending>()
    /// Fires at the earliest deadline in `pending`.
    private var deadlines = DeadlineTimer()
    private var context: ChannelHandlerContext?
    private var lastRead = NIODeadline.now()
    private var heartbeat: Scheduled<Void>?
    private var heartbeatInterval: TimeAmount?
    private var beats: UInt64 = 0
    private var closed = false
    private var flushScheduled = false

    init(side: ConnectionSide, maxBufferedBytes: Int?, logger: Logger) {
        self.side = side
        self.maxBufferedBytes = maxBufferedBytes
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func start(_ frame: OutboundFrame, timeout: TimeAmount, promise: EventLoopPromise<WireFrame.OneOf_Body>) {
        register(frame.id, timeout: timeout, promise: promise)?.writeFromLoop(frame)
    }

    func start(
        id: UInt64, encoded body: FrameBuffer, timeout: TimeAmount, promise: EventLoopPromise<WireFrame.OneOf_Body>
    ) {
        register(id, timeout: timeout, promise: promise)?.sendFromLoop(body, id: id)
    }

    /// Makes request `id` wait for its answer; nil (and the promise failed) on a closed connection.
    private func register(
        _ id: UInt64, timeout: TimeAmount, promise: EventLoopPromise<WireFrame.OneOf_Body>
    ) -> PeerConnection? {
        guard let context, !closed, let connection else {
            promise.fail(TroupeError.unavailable("connection is closed"))
            return nil
        }
        let deadline = NIODeadline.now() + timeout
        pending.insert(id, deadline: deadline, Pending(promise: promise, timeout: timeout))
        armDeadlines(for: deadline, on: context.eventLoop)
        return connection
    }

    private func armDeadlines(for deadline: NIODeadline, on loop: any EventLoop) {
        deadlines.arm(for: deadline, on: loop) { [self] in expireRequests() }
    }

    /// Fails the requests whose deadline passed, tells the peer, and arms the timer for the rest.
    private func expireRequests() {
        deadlines.fired()
        guard let context, !closed, let connection else { return }
        for (id, entry) in pending.expire(now: .now()) {
            entry.promise.fail(TroupeError.deadlineExceeded("no answer within \(entry.timeout.milliseconds) ms"))
            connection.sendConnectionCancel(id)
        }
        if let next = pending.earliestDeadline { armDeadlines(for: next, on: context.eventLoop) }
    }

    func cancel(id: UInt64) {
        guard pending.contains(id) else { return }
        failPending(id: id, with: .cancelled("the caller cancelled the request"))
        connection?.sendConnectionCancel(id)
    }

    func failPending(id: UInt64, with error: TroupeError) {
        guard let entry = pending.remove(id) else { return }
        entry.promise.fail(error)
    }

    private func complete(id: UInt64, with body: WireFrame.OneOf_Body) {
        guard let entry = pending.remove(id) else {
            // The answer to a request that already timed out or was cancelled.
            logger.debug("late answer dropped", metadata: ["troupe.correlation_id": "\(id)"])
            return
        }
        if case .failure(let failure) = body {
            entry.promise.fail(TroupeError(failure))
        } else {
            entry.promise.succeed(body)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        guard let connection else { return }
        switch unwrapInboundIn(data) {
        case .frame(let id, let frame):
            guard let body = frame.body else { return }
            if side.owns(id) {
                complete(id: id, with: body)
            } else if id == HostProtocol.connectionFrameID {
                switch body {
                case .ping(let ping):
                    var pong = WirePong()
                    pong.nonce = ping.nonce
                    connection.sendConnectionFrame(.pong(pong))
                case .pong:
                    break
                case .goodbye(let goodbye):
                    delegate?.peerSaidGoodbye(goodbye, on: connection)
                default:
                    let error = TroupeError.invalidArgument("correlation id 0 is only for ping, pong and goodbye")
                    logger.warning("protocol violation", metadata: ["troupe.error": "\(error)"])
                    delegate?.peerViolatedProtocol(error, on: connection)
                }
            } else if case .cancel = body {
                delegate?.peerCancelled(id: id, on: connection)
            } else if let delegate {
                delegate.handle(request: body, id: id, on: connection)
            } else {
                connection.fail(id, with: TroupeError(.unimplemented, "this peer serves no requests"))
            }
        case .oversized(let id, let length):
            let error = TroupeError.resourceExhausted(
                "frame of \(length) bytes exceeds this peer's limit", details: ["size": "\(length)"])
            logger.warning(
                "oversized frame skipped", metadata: ["troupe.correlation_id": "\(id)", "troupe.size": "\(length)"])
            if side.owns(id) {
                failPending(id: id, with: error)
            } else if id != HostProtocol.connectionFrameID {
                connection.fail(id, with: error)
            }
            delegate?.peerViolatedProtocol(error, on: connection)
        case .malformed(let id, let reason):
            logger.warning(
                "malformed frame", metadata: ["troupe.correlation_id": "\(id)", "troupe.reason": "\(reason)"])
            if side.owns(id) {
                failPending(id: id, with: .internalError("the peer's answer could not be read: \(reason)"))
                delegate?.peerViolatedProtocol(.invalidArgument(reason), on: connection)
            } else {
                if id != HostProtocol.connectionFrameID { connection.fail(id, with: .invalidArgument(reason)) }
                delegate?.peerViolatedProtocol(.invalidArgument(reason), on: connection)
            }
        }
    }

    func startHeartbeat(interval: TimeAmount) {
        guard context != nil, !closed, heartbeatInterval == nil else { return }
        heartbeatInterval = interval
        scheduleBeat()
    }

    private func scheduleBeat() {
        guard let context, let interval = heartbeatInterval, !closed else { return }
        heartbeat = context.eventLoop.assumeIsolated().scheduleTask(in: interval) { [self] in
            guard let connection, !closed else { return }
            if NIODeadline.now() - lastRead > interval * 3 {
                logger.warning("peer silent for three heartbeat intervals; closing")
                connection.close()
                return
            }
            if side == .initiator {
                beats &+= 1
                var ping = WirePing()
                ping.nonce = beats
                connection.sendConnectionFrame(.ping(ping))
            }
            scheduleBeat()
        }
    }

    /// Writes a frame and flushes once per event-loop tick, so frames produced together (answers
    /// to a batch of requests read at once, actions finishing together) leave in one system call.
    func send(_ buffer: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            guard let context = self.context else { return }
            context.flush()
            if !context.channel.isWritable { checkBufferedBytes(context: context) }
        }
    }

    /// Closes the connection when more than ``maxBufferedBytes`` wait to be sent: a peer that
    /// keeps asking without reading the answers would otherwise grow this side's memory without
    /// bound. Checked only while the channel is above its high-water mark, so the common case
    /// costs nothing.
    private func checkBufferedBytes(context: ChannelHandlerContext) {
        guard !closed, let maxBufferedBytes, let buffered = context.channel.bufferedBytes(beyond: maxBufferedBytes)
        else { return }
        closed = true
        logger.warning(
            "the peer does not read what it asked for; closing",
            metadata: ["troupe.buffered_bytes": "\(buffered)", "troupe.max_buffered_bytes": "\(maxBufferedBytes)"])
        if let connection { delegate?.peerStoppedReading(bufferedBytes: buffered, on: connection) }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable { checkBufferedBytes(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func flushAndClose() {
        guard let context else { return }
        context.flush()
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        heartbeat?.cancel()
        heartbeat = nil
        deadlines.stop()
        for entry in pending.removeAll() {
            entry.promise.fail(TroupeError.unavailable("the connection closed before the answer arrived"))
        }
        if let connection {
            delegate?.connectionClosed(connection)
        }
        delegate = nil
        connection = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["troupe.error": "\(error)"])
        context.close(promise: nil)
    }
}

extension PeerConnection {
    fileprivate func sendConnectionCancel(_ id: UInt64) {
        writeFromLoop(OutboundFrame(id: id, .cancel(WireCancel())))
    }
}

extension Channel {
    /// The bytes waiting to be sent on this channel if they are more than `limit`, else nil.
    /// Call on the channel's event loop.
    public func bufferedBytes(beyond limit: Int) -> Int? {
        guard let buffered = try? syncOptions?.getOption(.bufferedWritableBytes), buffered > limit else { return nil }
        return buffered
    }
}

extension TimeAmount {
    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
