import CNats
import Logging
import Metrics
import NIOCore
import Synchronization
import TroupeWire

/// The state libnats' callbacks reach: requests waiting for their reply, listeners of
/// connection events, whether the link is up, and whether the connection has closed.
///
/// Callbacks arrive on libnats' threads; every method here is safe from any thread and none blocks.
///
/// The link state and the server's payload limit are kept here, from the callbacks, because
/// libnats' own getters take the connection's lock, and its reconnect thread holds that lock
/// through each connect attempt: asking libnats while it reconnects to a server that accepts
/// and does not answer waits up to the connect timeout.
final class ConnectionCore: Sendable {
    typealias Completion = @Sendable (Result<NATSMessage, TroupeError>) -> Void

    private struct Pending {
        var completion: Completion
        /// For the message of its `deadlineExceeded`.
        var timeout: Duration
    }

    private struct State {
        var nextToken: UInt64 = 1
        var pending = PendingCalls<Pending>()
        /// When the one timer of all requests fires; nil while none is scheduled. It is moved
        /// only to an earlier deadline and never cancelled: most requests are answered in time,
        /// and cancelling a task from a libnats thread woke the timer's loop for every reply.
        var timerAt: NIODeadline?
        var listeners: [UInt64: AsyncStream<NATSConnectionEvent>.Continuation] = [:]
        var nextListener: UInt64 = 1
        var closed = false
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let logger: Logger
    let timerLoop: any EventLoop
    private let state = Mutex(State())
    private let linkUp = Atomic<Bool>(false)
    private let payloadLimit = Atomic<Int>(0)
    private let disconnects = Counter(label: "troupe_nats_disconnects_total")
    private let reconnects = Counter(label: "troupe_nats_reconnects_total")
    private let asyncErrors = Counter(label: "troupe_nats_async_errors_total")
    private let deferredPublishFailures = Counter(label: "troupe_nats_deferred_publish_failures_total")
    private let connectedGauge = Gauge(label: "troupe_nats_connected")

    init(logger: Logger, timerLoop: any EventLoop) {
        self.logger = logger
        self.timerLoop = timerLoop
    }

    // MARK: Requests

    /// Registers a request; its reply or failure reaches `completion` once, by `timeout` at the latest.
    func register(timeout: Duration, _ completion: @escaping Completion) -> UInt64 {
        let deadline = NIODeadline.now() + .nanoseconds(Int64(timeout.natsMilliseconds) * 1_000_000)
        let (token, arm) = state.withLock { state -> (UInt64, Bool) in
            let token = state.nextToken
            state.nextToken += 1
            state.pending.insert(token, deadline: deadline, Pending(completion: completion, timeout: timeout))
            guard state.timerAt.map({ deadline < $0 }) ?? true else { return (token, false) }
            state.timerAt = deadline
            return (token, true)
        }
        if arm { scheduleExpiry(at: deadline) }
        return token
    }

    private func scheduleExpiry(at deadline: NIODeadline) {
        timerLoop.scheduleTask(deadline: deadline) { [self] in expireRequests() }
    }

    /// Fails the requests whose deadline passed and schedules the timer for the earliest left.
    private func expireRequests() {
        let now = NIODeadline.now()
        let (due, next) = state.withLock { state -> ([(id: UInt64, value: Pending)], NIODeadline?) in
            let due = state.pending.expire(now: now)
            // A timer moved earlier leaves the later one scheduled; only the one due now clears.
            if let at = state.timerAt, at <= now { state.timerAt = nil }
            guard let next = state.pending.earliestDeadline, state.timerAt == nil else { return (due, nil) }
            state.timerAt = next
            return (due, next)
        }
        for (_, request) in due {
            request.completion(.failure(.deadlineExceeded("no reply over NATS within \(request.timeout)")))
        }
        if let next { scheduleExpiry(at: next) }
    }

    /// Completes request `token` if it is still waiting.
    func complete(_ token: UInt64, _ result: Result<NATSMessage, TroupeError>) {
        guard let pending = state.withLock({ $0.pending.remove(token) }) else { return }
        pending.completion(result)
    }

    /// Fails every request still waiting: their replies cannot arrive any more.
    private func failAllPending(_ error: TroupeError) {
        let pending = state.withLock { $0.pending.removeAll() }
        for request in pending {
            request.completion(.failure(error))
        }
    }

    var pendingCount: Int { state.withLock { $0.pending.count } }

    // MARK: Events

    func events() -> AsyncStream<NATSConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSConnectionEvent.self, bufferingPolicy: .bufferingNewest(64))
        let id = state.withLock { state -> UInt64? in
            guard !state.closed else { return nil }
            let id = state.nextListener
            state.nextListener += 1
            state.listeners[id] = continuation
            return id
        }
        guard let id else {
            continuation.yield(.closed)
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    private func emit(_ event: NATSConnectionEvent) {
        let listeners = state.withLock { Array($0.listeners.values) }
        for listener in listeners {
            listener.yield(event)
            if event == .closed { listener.finish() }
        }
    }

    /// True from the connect until libnats reports the link lost, and again once it is restored.
    var isUp: Bool { linkUp.load(ordering: .acquiring) }

    /// Runs `call`, a libnats call that takes the connection's lock: now while the link is up,
    /// on the blocking pool while it is down, when a reconnect attempt may hold the lock for up
    /// to the connect timeout.
    func callTakingTheLock(_ call: @escaping @Sendable () -> Void) {
        guard isUp else {
            BlockingCalls.pool.submit { _ in call() }
            return
        }
        call()
    }

    /// The largest payload the server of the current link accepts.
    var maxPayload: Int { payloadLimit.load(ordering: .relaxed) }

    func connected(maxPayload: Int) {
        payloadLimit.store(maxPayload, ordering: .relaxed)
        linkUp.store(true, ordering: .releasing)
        connectedGauge.record(1)
    }

    func disconnected() {
        linkUp.store(false, ordering: .releasing)
        disconnects.increment()
        connectedGauge.record(0)
        logger.warning("NATS connection lost; reconnecting")
        failAllPending(.unavailable("the NATS connection was lost before the reply arrived"))
        emit(.disconnected)
    }

    func reconnected(url: String, maxPayload: Int) {
        payloadLimit.store(maxPayload, ordering: .relaxed)
        linkUp.store(true, ordering: .releasing)
        reconnects.increment()
        connectedGauge.record(1)
        logger.notice("NATS connection restored", metadata: ["troupe.nats_server": "\(url)"])
        emit(.reconnected(url: url))
    }

    func closed() {
        linkUp.store(false, ordering: .releasing)
        connectedGauge.record(0)
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.closed = true
            defer { state.closeWaiters.removeAll() }
            return state.closeWaiters
        }
        logger.info("NATS connection closed")
        failAllPending(.unavailable("the NATS connection is closed"))
        emit(.closed)
        state.withLock { $0.listeners.removeAll() }
        for waiter in waiters { waiter.resume() }
    }

    func asyncError(_ status: natsStatus, subject: String?) {
        asyncErrors.increment()
        logger.warning(
            "NATS reported an error",
            metadata: [
                "troupe.nats_status": "\(String(cString: natsStatus_GetText(status)))",
                "troupe.nats_subject": "\(subject ?? "-")",
            ])
    }

    /// A publish made while reconnecting, handed to libnats later, failed: nobody waits for its answer.
    func deferredPublishFailed(_ status: natsStatus, subject: String) {
        deferredPublishFailures.increment()
        logger.warning(
            "a NATS publish made while reconnecting was not sent",
            metadata: [
                "troupe.nats_status": "\(String(cString: natsStatus_GetText(status)))",
                "troupe.nats_subject": "\(subject)",
            ])
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Returns once the connection has closed.
    func waitUntilClosed() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.closed { return true }
                state.closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}

// MARK: libnats callbacks (on libnats' threads)

let onDisconnected: natsConnectionHandler = { _, closure in
    connectionTargets.lookup(closure)?.disconnected()
}

let onReconnected: natsConnectionHandler = { connection, closure in
    guard let core = connectionTargets.lookup(closure) else { return }
    var buffer = [CChar](repeating: 0, count: 256)
    var url = "?"
    var maxPayload = core.maxPayload
    // On libnats' callback thread, after the reconnect: the lock is free.
    if let connection {
        if natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK {
            url = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        maxPayload = Int(natsConnection_GetMaxPayload(connection))
    }
    core.reconnected(url: url, maxPayload: maxPayload)
}

let onClosed: natsConnectionHandler = { _, closure in
    connectionTargets.lookup(closure)?.closed()
}

let onAsyncError: natsErrHandler = { _, subscription, status, closure in
    guard let core = connectionTargets.lookup(closure) else { return }
    var subject: String?
    if let subscription, let text = natsSubscription_GetSubject(subscription) { subject = String(cString: text) }
    core.asyncError(status, subject: subject)
}

/// Replies to requests: the last token of the subject names the request.
let onReply: natsMsgHandler = { _, _, message, closure in
    guard let message else { return }
    defer { natsMsg_Destroy(message) }
    guard let core = connectionTargets.lookup(closure) else { return }
    let subject = String(cString: natsMsg_GetSubject(message))
    guard let dot = subject.lastIndex(of: "."), let token = UInt64(subject[subject.index(after: dot)...]) else {
        return
    }
    if natsMsg_IsNoResponders(message) {
        core.complete(
            token,
            .failure(
                .unavailable(
                    "no subscriber answers on this subject (no responders)", details: ["reason": "no_responders"])))
    } else {
        core.complete(token, .success(NATSMessage(copying: message)))
    }
}

/// Messages of a subscription, handed to its Swift handler.
let onMessage: natsMsgHandler = { _, _, message, closure in
    guard let message else { return }
    defer { natsMsg_Destroy(message) }
    guard let target = subscriptionTargets.lookup(closure) else { return }
    target.handler(NATSMessage(copying: message))
}
