import CNats
public import Logging
public import NIOCore
import NIOPosix
import Synchronization
public import TroupeWire

/// One connection to NATS through the official C client, libnats.
///
/// It owns the libnats handles; no C pointer leaves this module. libnats reconnects by itself
/// (``NATSOptions/reconnectWait``, for ever by default), restores subscriptions, and buffers
/// publishes while disconnected. Requests do not wait out an outage: one made while the
/// connection is down fails at once with `unavailable`, and the ones in flight when it drops
/// fail with `unavailable` as soon as libnats reports the loss.
///
/// ```swift
/// let nats = try await NATSConnection.connect(NATSOptions(servers: ["nats://127.0.0.1:4222"]), logger: logger)
/// let sub = try await nats.subscribe(to: "greet", queue: "greeters") { message in
///     if let reply = message.replyTo { try? nats.publish(to: reply, payload: Array("hi".utf8)) }
/// }
/// let answer = try await nats.request("greet", payload: [], timeout: .seconds(1))
/// sub.unsubscribe()
/// await nats.drain(timeout: .seconds(5))
/// ```
public final class NATSConnection: Sendable {
    // libnats connections and subscriptions are thread-safe; the handles never change after connect.
    nonisolated(unsafe) private let handle: OpaquePointer
    nonisolated(unsafe) private let replySubscription: OpaquePointer
    let core: ConnectionCore
    private let coreID: UInt
    /// `_INBOX.<unique>.`: request n is answered on this prefix followed by n.
    private let inboxPrefix: String
    /// Publishes made while the link is down.
    private let deferred: DeferredPublishes

    private init(
        handle: OpaquePointer, replySubscription: OpaquePointer, core: ConnectionCore, coreID: UInt,
        inboxPrefix: String, reconnectBufferBytes: Int
    ) {
        self.handle = handle
        self.replySubscription = replySubscription
        self.core = core
        self.coreID = coreID
        self.inboxPrefix = inboxPrefix
        self.deferred = DeferredPublishes(limit: reconnectBufferBytes)
    }

    deinit {
        connectionTargets.remove(coreID)
        // Destroying an open connection closes it first, and closing joins libnats' threads: the
        // reconnect thread waits out its connect attempt (up to the connect timeout). The last
        // reference can go on an event loop or a cooperative thread, so that wait goes to the
        // blocking pool; a closed connection (after drain or close) is freed at once.
        guard core.isClosed else {
            // Thread-safe like every libnats handle; nothing else uses them after this deinit.
            nonisolated(unsafe) let (handle, replySubscription) = (handle, replySubscription)
            BlockingCalls.pool.submit { _ in
                natsSubscription_Destroy(replySubscription)
                natsConnection_Destroy(handle)
            }
            return
        }
        natsSubscription_Destroy(replySubscription)
        natsConnection_Destroy(handle)
    }

    /// Connects to the first reachable server of `options`.
    ///
    /// - Parameter timerLoop: the event loop that times requests out (any loop; the default is shared).
    /// - Throws: `invalidArgument` for contradictory options, `unavailable` when no server
    ///   answers, `unauthenticated` for refused credentials, `failedPrecondition` for unreadable
    ///   credential or certificate files.
    public static func connect(
        _ options: NATSOptions, logger: Logger, timerLoop: (any EventLoop)? = nil
    ) async throws(TroupeError) -> NATSConnection {
        try options.validate()
        var logger = logger
        logger[metadataKey: "troupe.nats_servers"] = "\(options.servers.joined(separator: ","))"
        let core = ConnectionCore(logger: logger, timerLoop: timerLoop ?? NIOSingletons.posixEventLoopGroup.any())
        let id = connectionTargets.add(core)
        do {
            // natsConnection_Connect blocks for up to the connect timeout per server: not on the
            // cooperative pool, and not on the pool the store uses (BlockingCalls).
            let connection = try await BlockingCalls.pool.runIfActive {
                try NATSConnection.connectBlocking(options, core: core, coreID: id)
            }
            logger.info("NATS connected")
            return connection
        } catch {
            connectionTargets.remove(id)
            throw TroupeError(wrapping: error)
        }
    }

    private static func connectBlocking(_ options: NATSOptions, core: ConnectionCore, coreID: UInt) throws(TroupeError)
        -> NATSConnection
    {
        var opts: OpaquePointer?
        try check(natsOptions_Create(&opts), "cannot create NATS options")
        guard let opts else { throw .internalError("natsOptions_Create returned no options") }
        defer { natsOptions_Destroy(opts) }
        try configure(opts, with: options, closure: closurePointer(coreID))

        var connection: OpaquePointer?
        try check(
            natsConnection_Connect(&connection, opts),
            "cannot connect to NATS at \(options.servers.joined(separator: ", "))")
        guard let connection else { throw .internalError("natsConnection_Connect returned no connection") }

        var inbox: UnsafeMutablePointer<CChar>?
        let inboxStatus = natsInbox_Create(&inbox)
        guard inboxStatus == NATS_OK, let inbox else {
            natsConnection_Destroy(connection)
            throw natsError(inboxStatus, "cannot create a NATS inbox")
        }
        let prefix = String(cString: inbox) + "."
        natsInbox_Destroy(inbox)

        var subscription: OpaquePointer?
        let subscribeStatus = natsConnection_Subscribe(
            &subscription, connection, prefix + "*", onReply, closurePointer(coreID))
        guard subscribeStatus == NATS_OK, let subscription else {
            natsConnection_Destroy(connection)
            throw natsError(subscribeStatus, "cannot subscribe to the reply inbox")
        }
        core.connected(maxPayload: Int(natsConnection_GetMaxPayload(connection)))
        // Lost already, before the callbacks had a state to change: say so (here, the lock may wait).
        if natsConnection_Status(connection) != NATS_CONN_STATUS_CONNECTED { core.disconnected() }
        return NATSConnection(
            handle: connection, replySubscription: subscription, core: core, coreID: coreID, inboxPrefix: prefix,
            reconnectBufferBytes: options.reconnectBufferBytes)
    }

    private static func configure(_ opts: OpaquePointer, with options: NATSOptions, closure: UnsafeMutableRawPointer?)
        throws(TroupeError)
    {
        let servers = options.servers
        let status = withCStrings(servers) { natsOptions_SetServers(opts, $0, Int32(servers.count)) }
        try check(status, "invalid NATS server list \(servers)")
        if let name = options.name { try check(natsOptions_SetName(opts, name), "invalid NATS connection name") }
        if let user = options.user, let password = options.password {
            try check(natsOptions_SetUserInfo(opts, user, password), "invalid NATS user")
        }
        if let token = options.token { try check(natsOptions_SetToken(opts, token), "invalid NATS token") }
        if let file = options.credentialsFile {
            try check(
                natsOptions_SetUserCredentialsFromFiles(opts, file, nil), "cannot use NATS credentials file \(file)")
        }
        if options.wantsTLS { try check(natsOptions_SetSecure(opts, true), "cannot turn NATS TLS on") }
        if let file = options.tlsCAFile {
            try check(natsOptions_LoadCATrustedCertificates(opts, file), "cannot load NATS TLS CA file \(file)")
        }
        if let certificate = options.tlsCertificateFile, let key = options.tlsKeyFile {
            try check(
                natsOptions_LoadCertificatesChain(opts, certificate, key),
                "cannot load NATS TLS client certificate \(certificate) with key \(key)")
        }
        try check(natsOptions_SetTimeout(opts, options.connectTimeout.natsMilliseconds), "invalid NATS connect timeout")
        try check(natsOptions_SetAllowReconnect(opts, true), "cannot allow NATS reconnects")
        try check(
            natsOptions_SetMaxReconnect(opts, Int32(clamping: options.maxReconnectAttempts)),
            "invalid NATS reconnect attempts")
        try check(
            natsOptions_SetReconnectWait(opts, options.reconnectWait.natsMilliseconds), "invalid NATS reconnect wait")
        try check(
            natsOptions_SetReconnectBufSize(opts, Int32(clamping: options.reconnectBufferBytes)),
            "invalid NATS reconnect buffer")
        try check(
            natsOptions_SetPingInterval(opts, options.pingInterval.natsMilliseconds), "invalid NATS ping interval")
        // Each publish goes out at once instead of waiting for libnats' flusher: request latency.
        try check(natsOptions_SetSendAsap(opts, true), "cannot set NATS send-asap")
        try check(natsOptions_SetDisconnectedCB(opts, onDisconnected, closure), "cannot set a NATS callback")
        try check(natsOptions_SetReconnectedCB(opts, onReconnected, closure), "cannot set a NATS callback")
        try check(natsOptions_SetClosedCB(opts, onClosed, closure), "cannot set a NATS callback")
        try check(natsOptions_SetErrorHandler(opts, onAsyncError, closure), "cannot set a NATS callback")
    }

    // MARK: Publishing and requests

    /// Publishes `payload` on `subject`. While disconnected the message is buffered (up to
    /// ``NATSOptions/reconnectBufferBytes``) and sent after the reconnect.
    ///
    /// It never waits for the network. While libnats reconnects, the message is handed to it
    /// from a thread of its own, after the ones published before it; a failure there (a full
    /// reconnect buffer, a connection closed meanwhile) is logged and counted in
    /// `troupe_nats_deferred_publish_failures_total`.
    ///
    /// - Throws: `resourceExhausted` above the server's max payload or a full reconnect buffer,
    ///   `invalidArgument` for a bad subject, `unavailable` once the connection is closed.
    public func publish(
        to subject: String, payload: [UInt8], headers: [String: String] = [:], replyTo: String? = nil
    ) throws(TroupeError) {
        let limit = maxPayload
        guard payload.count <= limit || limit <= 0 else {
            throw .resourceExhausted(
                "a \(payload.count)-byte message is larger than the NATS server accepts (\(limit) bytes)",
                details: ["max_payload": "\(limit)"])
        }
        guard core.isUp, !deferred.isBusy else {
            guard !core.isClosed else { throw .unavailable("the NATS connection is closed") }
            try deferred.enqueue(bytes: payload.count) { [self] in
                let status = send(subject, payload, headers, replyTo)
                if status != NATS_OK { core.deferredPublishFailed(status, subject: subject) }
            }
            return
        }
        try check(send(subject, payload, headers, replyTo), "cannot publish on NATS subject '\(subject)'")
    }

    private func send(_ subject: String, _ payload: [UInt8], _ headers: [String: String], _ replyTo: String?)
        -> natsStatus
    {
        let status: natsStatus
        if headers.isEmpty {
            status = payload.withUnsafeBytes { bytes in
                let count = Int32(clamping: bytes.count)
                // PublishRequest refuses a NULL reply subject.
                return if let replyTo {
                    natsConnection_PublishRequest(handle, subject, replyTo, bytes.baseAddress, count)
                } else {
                    natsConnection_Publish(handle, subject, bytes.baseAddress, count)
                }
            }
        } else {
            status = publishWithHeaders(subject, payload, headers, replyTo)
        }
        return status
    }

    private func publishWithHeaders(
        _ subject: String, _ payload: [UInt8], _ headers: [String: String], _ replyTo: String?
    )
        -> natsStatus
    {
        var message: OpaquePointer?
        let created = payload.withUnsafeBytes { bytes in
            natsMsg_Create(
                &message, subject, replyTo, bytes.baseAddress?.assumingMemoryBound(to: CChar.self),
                Int32(clamping: bytes.count))
        }
        guard created == NATS_OK, let message else { return created }
        defer { natsMsg_Destroy(message) }
        for (key, value) in headers {
            let status = natsMsgHeader_Set(message, key, value)
            guard status == NATS_OK else { return status }
        }
        return natsConnection_PublishMsg(handle, message)
    }

    /// Sends a request and hands its reply, or its failure, to `completion`, once, on a libnats
    /// or timer thread. Nothing here blocks.
    ///
    /// Failures: `unavailable` when nobody subscribes to `subject` (no responders), when the
    /// connection is down now or drops before the reply; `deadlineExceeded` after `timeout`;
    /// the ``publish(to:payload:headers:replyTo:)`` errors.
    public func request(
        _ subject: String, payload: [UInt8], headers: [String: String] = [:], timeout: Duration,
        completion: @escaping @Sendable (Result<NATSMessage, TroupeError>) -> Void
    ) {
        guard isConnected else {
            completion(.failure(.unavailable("not connected to NATS (reconnecting or closed)")))
            return
        }
        let token = core.register(timeout: timeout, completion)
        do {
            try publish(to: subject, payload: payload, headers: headers, replyTo: inboxPrefix + String(token))
        } catch {
            core.complete(token, .failure(error))
        }
    }

    /// Sends a request and waits for its reply. See ``request(_:payload:headers:timeout:completion:)``.
    public func request(_ subject: String, payload: [UInt8], headers: [String: String] = [:], timeout: Duration)
        async throws(TroupeError) -> NATSMessage
    {
        let result = await withCheckedContinuation { continuation in
            request(subject, payload: payload, headers: headers, timeout: timeout) {
                continuation.resume(returning: $0)
            }
        }
        return try result.get()
    }

    // MARK: Subscriptions

    /// Subscribes to `subject` (wildcards allowed). With a `queue` group, each message goes to one
    /// member of the group only.
    ///
    /// `handler` runs on the subscription's libnats thread, one message at a time, in order: it
    /// must not block. Hand longer work to a task or an event loop. Returns once the server has
    /// registered the interest, so a request sent afterwards, from any connection, finds it.
    public func subscribe(
        to subject: String, queue: String? = nil, handler: @escaping @Sendable (NATSMessage) -> Void
    ) async throws(TroupeError) -> NATSSubscription {
        let subscription: NATSSubscription
        do {
            // libnats takes the connection's lock, which a reconnect attempt holds.
            subscription = try await BlockingCalls.pool.runIfActive { [self] in
                try subscribeNow(to: subject, queue: queue, handler: handler)
            }
        } catch {
            throw TroupeError(wrapping: error)
        }
        try await flush()
        return subscription
    }

    /// Waits until the server has processed everything sent so far (one round trip).
    public func flush(timeout: Duration = .seconds(5)) async throws(TroupeError) {
        let status: natsStatus
        do {
            status = try await BlockingCalls.pool.runIfActive { [self] in
                natsConnection_FlushTimeout(handle, max(1, timeout.natsMilliseconds))
            }
        } catch {
            throw .unavailable("the thread pool that flushes NATS is shut down")
        }
        try check(status, "NATS flush failed")
    }

    private func subscribeNow(
        to subject: String, queue: String?, handler: @escaping @Sendable (NATSMessage) -> Void
    ) throws(TroupeError) -> NATSSubscription {
        let targetID = subscriptionTargets.add(SubscriptionTarget(handler))
        var subscription: OpaquePointer?
        let status: natsStatus
        if let queue {
            status = natsConnection_QueueSubscribe(
                &subscription, handle, subject, queue, onMessage, closurePointer(targetID))
        } else {
            status = natsConnection_Subscribe(&subscription, handle, subject, onMessage, closurePointer(targetID))
        }
        guard status == NATS_OK, let subscription else {
            subscriptionTargets.remove(targetID)
            throw natsError(status, "cannot subscribe to NATS subject '\(subject)'")
        }
        return NATSSubscription(
            handle: subscription, targetID: targetID, connection: self, subject: subject, queue: queue)
    }

    /// Subscribes to `subject` and delivers its messages as an `AsyncSequence`. At most
    /// `bufferLimit` undelivered messages are kept; beyond that the oldest are kept and new
    /// ones dropped (and counted by libnats as a slow consumer would be).
    public func messages(on subject: String, queue: String? = nil, bufferLimit: Int = 4096) async throws(TroupeError)
        -> NATSMessages
    {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSMessage.self, bufferingPolicy: .bufferingOldest(bufferLimit))
        let subscription = try await subscribe(to: subject, queue: queue) { continuation.yield($0) }
        return NATSMessages(stream: stream, subscription: subscription, finish: { continuation.finish() })
    }

    // MARK: State

    /// True while connected to a server (false while reconnecting, draining or closed).
    public var isConnected: Bool { core.isUp }

    /// Requests sent and not answered yet.
    public var pendingRequests: Int { core.pendingCount }

    /// The connection's state changes from now on. Each call returns a new, independent stream;
    /// it ends after ``NATSConnectionEvent/closed``.
    public func events() -> AsyncStream<NATSConnectionEvent> {
        core.events()
    }

    /// The largest payload the server accepts, in bytes.
    public var maxPayload: Int { core.maxPayload }

    /// Stops the subscriptions taking new messages, lets the ones delivered finish, flushes what
    /// was published, then closes. Returns once closed (at the latest after `timeout`).
    public func drain(timeout: Duration = .seconds(10)) async {
        // Not connected: nothing can be flushed; close instead.
        guard core.isUp else { return await close() }
        let status = try? await BlockingCalls.pool.runIfActive { [self] in
            natsConnection_DrainTimeout(handle, max(1, timeout.natsMilliseconds))
        }
        guard status == NATS_OK else { return await close() }
        await core.waitUntilClosed()
    }

    /// Closes now; requests still waiting fail with `unavailable`. Returns once closed.
    ///
    /// libnats' close joins its reader, flusher and reconnect threads, and a reconnect attempt
    /// in progress ends only at its connect timeout, so the wait runs on a thread of its own,
    /// not on the caller's.
    public func close() async {
        do {
            try await BlockingCalls.pool.runIfActive { [self] in natsConnection_Close(handle) }
        } catch {
            // The pool never shuts down; should it, close here rather than leave the connection open.
            natsConnection_Close(handle)
        }
        // libnats reports the close from its callback thread; from then on isClosed is true.
        await core.waitUntilClosed()
    }

    /// True once closed for good.
    public var isClosed: Bool { core.isClosed }
}

/// Calls `body` with a C array of C strings for `strings`.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for copy in copies { free(copy) } }
    var pointers = copies.map { UnsafePointer<CChar>($0) }
    return pointers.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
