public import Logging
import Metrics
import NIOCore
public import ServiceLifecycle
import Synchronization
public import TroupeActors
public import TroupeNATS
package import TroupeProto
import TroupeStore
import TroupeTracing
public import TroupeWire

/// Calls between ActorSystems over NATS.
///
/// Outbound, it is the directory's ``SystemBridge``: a call to an actor of system `S` becomes a
/// NATS request on `troupe.v1.S.invoke.<this system>`. Inbound, it takes the calls published for
/// its own system (in the queue group of the system, so one sidecar of the system takes each), runs them
/// through the directory as normal invocations, and answers on the request's reply subject.
/// Every call gets an answer: a malformed or oversized one a typed failure, never silence.
///
/// The caller's system is read from the subject the call was published on, so NATS subject
/// permissions decide who may claim which name; an envelope naming another caller is refused.
public final class NATSBridge: SystemBridge, Service, Sendable {
    public struct Configuration: Sendable {
        /// This sidecar's system: the subject it serves and the caller identity it sends.
        public var system: String
        public var node: String
        /// A call message larger than this is refused with `resourceExhausted`.
        public var maxCallBytes: Int
        /// How long shutdown waits for calls taken from NATS to finish.
        public var drainTimeout: Duration
        /// What other systems may call and broadcast here; nil allows everything.
        public var policy: BridgePolicy?
        /// How much metadata a call or broadcast may carry; more is refused with `invalidArgument`.
        public var metadataLimits: MetadataLimits

        public init(
            system: String, node: String, maxCallBytes: Int, drainTimeout: Duration, policy: BridgePolicy? = nil,
            metadataLimits: MetadataLimits = MetadataLimits()
        ) {
            self.system = system
            self.node = node
            self.maxCallBytes = maxCallBytes
            self.drainTimeout = drainTimeout
            self.policy = policy
            self.metadataLimits = metadataLimits
        }
    }

    /// The bridge protocol version this sidecar speaks.
    public static let version: UInt32 = 1

    public let configuration: Configuration
    private let nats: NATSConnection
    private let directory: ActorDirectory
    private let logger: Logger
    private let subscriptions = Mutex<[NATSSubscription]>([])
    private let inFlight = Atomic<Int>(0)
    private let sent = Counter(label: "troupe_bridge_calls_sent_total")
    private let received = Counter(label: "troupe_bridge_calls_received_total")
    private let refused = Counter(label: "troupe_bridge_calls_refused_total")
    private let broadcastsSent = Counter(label: "troupe_bridge_broadcasts_sent_total")
    private let broadcastsReceived = Counter(label: "troupe_bridge_broadcasts_received_total")
    /// Denials by caller system. Any NATS client may claim any system, so past
    /// ``maxDeniedCallerLabels`` distinct callers the rest are counted as `other`.
    private let callsDenied = Mutex<[String: Counter]>([:])
    private let broadcastsDenied = Mutex<[String: Counter]>([:])

    public init(
        configuration: Configuration, connection: NATSConnection, directory: ActorDirectory, logger: Logger
    ) throws(TroupeError) {
        try BridgeSubjects.validate(system: configuration.system)
        self.configuration = configuration
        self.nats = connection
        self.directory = directory
        var logger = logger
        logger[metadataKey: "troupe.system"] = "\(configuration.system)"
        logger[metadataKey: "troupe.node"] = "\(configuration.node)"
        self.logger = logger
    }

    // MARK: Service

    /// Serves calls from other systems until graceful shutdown, then stops taking new ones, lets
    /// those taken finish (at most ``Configuration/drainTimeout``) and drains the connection.
    public func run() async throws {
        if subscriptions.withLock({ $0.isEmpty }) { try await startServing() }
        try? await gracefulShutdown()
        await stop()
    }

    /// Subscribes to this system's call subject and to broadcasts; returns once NATS has
    /// registered both. ``run()`` does it if it was not done before.
    public func startServing() async throws(TroupeError) {
        let subject = BridgeSubjects.invocations(of: configuration.system)
        let subscribed = try await nats.subscribe(
            to: subject, queue: BridgeSubjects.queueGroup(configuration.system)
        ) { [self] message in
            take(message)
        }
        let broadcasts = try await nats.subscribe(
            to: BridgeSubjects.allBroadcasts, queue: BridgeSubjects.queueGroup(configuration.system)
        ) { [self] message in
            takeBroadcast(message)
        }
        subscriptions.withLock { $0 = [subscribed, broadcasts] }
        logger.info(
            "bridge serving",
            metadata: [
                "troupe.nats_subject": "\(subject)",
                // Whether other systems are limited; the rules are in the configuration.
                "troupe.bridge_policy": "\(configuration.policy == nil ? "off: everything allowed" : "on")",
            ])
    }

    private func stop() async {
        for subscription in subscriptions.withLock({ $0 }) {
            await subscription.drain(timeout: configuration.drainTimeout)
        }
        let deadline = ContinuousClock.now + configuration.drainTimeout
        while inFlight.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        await nats.drain(timeout: configuration.drainTimeout)
        logger.info("bridge stopped")
    }

    // MARK: Outbound

    public func forward(_ invocation: Invocation, reply: Reply) {
        let target = invocation.actor.system
        do { try BridgeSubjects.validate(system: target) } catch {
            reply.complete(.failure(error))
            return
        }
        let remaining = invocation.deadline - .now()
        guard remaining.nanoseconds > 0 else {
            reply.complete(.failure(.deadlineExceeded("the call's deadline passed before it was sent to '\(target)'")))
            return
        }
        var metadata = invocation.metadata
        let span = directory.tracing?.startSpan(
            TroupeSpan.bridgeCall, kind: .client, metadata: &metadata, actorID: invocation.actor.name,
            action: invocation.action)
        span?.attributes[TroupeSpanAttribute.peer] = target
        var call = BridgeCall()
        call.version = Self.version
        // The identity the callee sees: this sidecar's system, whatever the host claimed.
        call.callerSystem = configuration.system
        call.callerNode = configuration.node
        call.callerActor = invocation.caller?.name ?? ""
        call.actor = invocation.actor.name
        call.action = invocation.action
        call.payload = invocation.payload
        call.metadata = metadata
        call.timeoutMs = UInt32(clamping: max(1, remaining.nanoseconds / 1_000_000))
        call.spawnFrom = invocation.spawnFrom
        call.chain = invocation.chain
        let bytes: [UInt8]
        do { bytes = try call.serializedBytes() } catch {
            let error = TroupeError.internalError("cannot encode a bridge call: \(error)")
            span?.end(reporting: error)
            reply.complete(.failure(error))
            return
        }
        sent.increment()
        nats.request(
            BridgeSubjects.invoke(target, from: configuration.system), payload: bytes, timeout: .nanoseconds(remaining.nanoseconds)
        ) { result in
            let outcome = Self.outcome(of: result, from: target)
            span?.end(reporting: outcome)
            reply.complete(outcome)
        }
    }

    /// Reads the answer of system `target` to a call.
    package static func outcome(of result: Result<NATSMessage, TroupeError>, from target: String) -> Result<
        WirePayload, TroupeError
    > {
        switch result {
        case .success(let message):
            guard let answer = try? BridgeResult(serializedBytes: message.payload) else {
                return .failure(.internalError("system '\(target)' answered with an undecodable result"))
            }
            switch answer.outcome {
            case .reply(let payload): return .success(payload)
            case .failure(let failure): return .failure(TroupeError(failure))
            case nil: return .failure(.internalError("system '\(target)' answered with an empty result"))
            }
        case .failure(let error) where error.details["reason"] == "no_responders":
            return .failure(
                .unavailable(
                    "no sidecar of system '\(target)' is connected to NATS (no responders)",
                    details: ["system": target]))
        case .failure(let error):
            return .failure(error)
        }
    }

    public func publish(_ broadcast: Broadcast) throws(TroupeError) {
        try BridgeSubjects.validate(channel: broadcast.channel)
        var message = BridgeBroadcast()
        message.version = Self.version
        // Like calls, a broadcast leaves under this sidecar's system, whatever the host claimed.
        message.originSystem = configuration.system
        message.channel = broadcast.channel
        message.action = broadcast.action
        message.payload = broadcast.payload
        message.metadata = broadcast.metadata
        message.senderActor = broadcast.sender?.name ?? ""
        let bytes: [UInt8]
        do { bytes = try message.serializedBytes() } catch {
            throw .internalError("cannot encode a bridge broadcast: \(error)")
        }
        try nats.publish(to: BridgeSubjects.broadcast(broadcast.channel, from: configuration.system), payload: bytes)
        broadcastsSent.increment()
    }

    // MARK: Inbound (on the subscription's libnats thread; nothing here blocks: the directory only
    // queues a call and wakes the actor's loop)

    /// Hands a broadcast of another system to this system's listeners. Broadcasts have no reply
    /// subject, so a bad one is only counted and logged. Its origin is the one in the subject,
    /// and the envelope must agree with the subject.
    private func takeBroadcast(_ message: NATSMessage) {
        guard let broadcast = Self.broadcast(in: message, configuration: configuration) else {
            refused.increment()
            logger.warning(
                "bridge broadcast refused",
                metadata: ["troupe.nats_subject": "\(message.subject)", "troupe.bytes": "\(message.payload.count)"])
            return
        }
        // This system's own listeners were served by the sidecar that published it.
        guard broadcast.originSystem != configuration.system else { return }
        if let policy = configuration.policy,
            !policy.allowsBroadcast(from: broadcast.originSystem, channel: broadcast.channel)
        {
            Self.count(broadcast.originSystem, in: broadcastsDenied, "troupe_bridge_broadcasts_denied_total")
            logger.warning(
                "bridge broadcast denied by the policy",
                metadata: [
                    "troupe.caller_system": "\(broadcast.originSystem)", "troupe.channel": "\(broadcast.channel)",
                ])
            return
        }
        broadcastsReceived.increment()
        _ = directory.broadcast(broadcast)
    }

    /// The broadcast a message from NATS carries, or nil when it is too large, unreadable, of
    /// another version, incomplete, carries too much metadata, or names another origin or
    /// channel than its subject.
    package static func broadcast(in message: NATSMessage, configuration: Configuration) -> Broadcast? {
        guard message.payload.count <= configuration.maxCallBytes,
            let route = BridgeSubjects.origin(ofBroadcast: message.subject),
            let broadcast = try? BridgeBroadcast(serializedBytes: message.payload),
            broadcast.version == Self.version, !broadcast.action.isEmpty,
            broadcast.originSystem == route.origin, broadcast.channel == route.channel,
            (try? configuration.metadataLimits.check(broadcast.metadata)) != nil
        else { return nil }
        return Broadcast(
            channel: broadcast.channel, action: broadcast.action, payload: broadcast.payload,
            metadata: broadcast.metadata, originSystem: broadcast.originSystem,
            sender: broadcast.senderActor.isEmpty
                ? nil : ActorKey(system: broadcast.originSystem, name: broadcast.senderActor))
    }

    private func take(_ message: NATSMessage) {
        guard let replyTo = message.replyTo else {
            refused.increment()
            logger.warning(
                "bridge call without a reply subject dropped", metadata: ["troupe.bytes": "\(message.payload.count)"])
            return
        }
        received.increment()
        var invocation: Invocation
        do { invocation = try Self.invocation(in: message, configuration: configuration) } catch let error where error.code == .permissionDenied {
            let claimed = BridgeSubjects.caller(ofCall: message.subject, to: configuration.system) ?? ""
            Self.count(claimed, in: callsDenied, "troupe_bridge_calls_denied_total")
            logger.warning(
                "bridge call refused: the envelope names another caller than the subject",
                metadata: ["troupe.caller_system": "\(claimed)", "troupe.error": "\(error)"])
            answer(replyTo, .failure(error))
            return
        } catch {
            refused.increment()
            logger.warning("bridge call refused", metadata: ["troupe.error": "\(error)"])
            answer(replyTo, .failure(error))
            return
        }
        if let denial = authorize(invocation) {
            let caller = invocation.caller?.system ?? ""
            Self.count(caller, in: callsDenied, "troupe_bridge_calls_denied_total")
            logger.warning(
                "bridge call denied by the policy",
                metadata: TraceLogMetadata.metadata(of: invocation.metadata).merging([
                    "troupe.caller_system": "\(caller)", "troupe.actor_id": "\(invocation.actor)",
                    "troupe.action": "\(invocation.action)",
                ]) { $1 })
            answer(replyTo, .failure(denial))
            return
        }
        let span = directory.tracing?.startSpan(
            TroupeSpan.bridgeServe, kind: .server, metadata: &invocation.metadata, actorID: invocation.actor.name,
            action: invocation.action)
        span?.attributes[TroupeSpanAttribute.peer] = invocation.caller?.system ?? ""
        inFlight.add(1, ordering: .relaxed)
        let reply = Reply { [self] result in
            span?.end(reporting: result)
            inFlight.subtract(1, ordering: .relaxed)
            answer(replyTo, result)
        }
        // Queued right here, on the subscription's thread: calls keep the order they arrived in,
        // and the actor's own loop is the only one woken on the way to the host (a hop through
        // another loop first cost a second wake-up per call). No timer of its own: the calling
        // sidecar fails the call at its deadline and drops a late answer, and the activation
        // refuses a call whose deadline passed in the mailbox; a timer armed here from the
        // libnats thread woke the loop once more per call.
        directory.invoke(invocation, reply: reply)
    }

    /// Why the policy denies `invocation`, or nil when there is no policy or it allows the call.
    /// The caller is the system named in the call's subject, which NATS permissions can pin to
    /// the credentials of the connection that published it (docs/security.md).
    private func authorize(_ invocation: Invocation) -> TroupeError? {
        guard let policy = configuration.policy else { return nil }
        let caller = invocation.caller?.system ?? ""
        guard let type = directory.typeOfCall(to: invocation.actor, spawnFrom: invocation.spawnFrom) else {
            return TroupeError(
                .permissionDenied,
                "system '\(caller)' may not call '\(invocation.actor.name)' of '\(configuration.system)': its actor type "
                    + "is not known before the call runs (call unnamed actors with spawn_from naming their type)",
                details: ["caller_system": caller, "actor": invocation.actor.name])
        }
        guard policy.allowsCall(from: caller, type: type, action: invocation.action) else {
            return TroupeError(
                .permissionDenied,
                "system '\(caller)' may not call \(type)/\(invocation.action) of system '\(configuration.system)'",
                details: ["caller_system": caller, "actor_type": type, "action": invocation.action])
        }
        return nil
    }

    static let maxDeniedCallerLabels = 64

    /// Increments the counter `label{caller_system}`, made once per caller.
    private static func count(
        _ caller: String, in counters: borrowing Mutex<[String: Counter]>, _ label: String
    ) {
        counters.withLock { counters in
            if let counter = counters[caller] { return counter }
            let caller = counters.count < maxDeniedCallerLabels ? caller : "other"
            if let counter = counters[caller] { return counter }
            let counter = Counter(label: label, dimensions: [("caller_system", caller)])
            counters[caller] = counter
            return counter
        }.increment()
    }

    /// The invocation a call message from NATS asks for, in this system.
    ///
    /// - Throws: `resourceExhausted` for a message over `maxCallBytes`; `invalidArgument` for one
    ///   that is not a complete `Call` or carries too much metadata; `failedPrecondition` for
    ///   another protocol version.
    package static func invocation(in message: NATSMessage, configuration: Configuration) throws(TroupeError)
        -> Invocation
    {
        guard message.payload.count <= configuration.maxCallBytes else {
            throw .resourceExhausted(
                "a \(message.payload.count)-byte bridge call is larger than this sidecar takes (\(configuration.maxCallBytes) bytes)",
                details: ["max_bytes": "\(configuration.maxCallBytes)"])
        }
        let call: BridgeCall
        do { call = try BridgeCall(serializedBytes: message.payload) } catch {
            throw .invalidArgument("the bridge call is not a troupe.bridge.v1.Call message")
        }
        guard call.version == Self.version else {
            throw .failedPrecondition(
                "bridge protocol version \(call.version) is not supported; this sidecar speaks \(Self.version)",
                details: ["supported": "\(Self.version)"])
        }
        guard !call.callerSystem.isEmpty else { throw .invalidArgument("the bridge call names no caller system") }
        guard let subjectCaller = BridgeSubjects.caller(ofCall: message.subject, to: configuration.system) else {
            throw .invalidArgument(
                "a bridge call must be published on troupe.v1.\(configuration.system).invoke.<caller system>",
                details: ["subject": message.subject])
        }
        guard subjectCaller == call.callerSystem else {
            throw TroupeError(
                .permissionDenied,
                "the bridge call claims caller system '\(call.callerSystem)' but was published on the subject of "
                    + "'\(subjectCaller)'",
                details: ["caller_system": subjectCaller, "claimed_caller_system": call.callerSystem])
        }
        guard !call.actor.isEmpty, !call.action.isEmpty else {
            throw .invalidArgument("the bridge call needs an actor and an action")
        }
        guard call.timeoutMs > 0 else { throw .invalidArgument("the bridge call carries no deadline (timeout_ms 0)") }
        try configuration.metadataLimits.check(call.metadata)
        var caller = WireActorId()
        caller.system = call.callerSystem
        caller.name = call.callerActor
        var invocation = Invocation(
            actor: ActorKey(system: configuration.system, name: call.actor), action: call.action, payload: call.payload,
            metadata: call.metadata, caller: caller, deadline: .now() + .milliseconds(Int64(call.timeoutMs)),
            spawnFrom: call.spawnFrom)
        invocation.chain = call.chain
        return invocation
    }

    private func answer(_ replyTo: String, _ result: Result<WirePayload, TroupeError>) {
        var answer = BridgeResult()
        switch result {
        case .success(let payload): answer.reply = payload
        case .failure(let error): answer.failure = error.wire
        }
        do {
            try nats.publish(to: replyTo, payload: try answer.serializedBytes())
        } catch let error as TroupeError where error.code == .resourceExhausted {
            // The reply is too large for NATS: the caller still gets an answer.
            var failure = BridgeResult()
            failure.failure =
                TroupeError.resourceExhausted("the reply is larger than NATS carries: \(error.message)").wire
            try? nats.publish(to: replyTo, payload: try failure.serializedBytes())
        } catch {
            logger.warning("bridge answer not sent", metadata: ["troupe.error": "\(error)"])
        }
    }
}
