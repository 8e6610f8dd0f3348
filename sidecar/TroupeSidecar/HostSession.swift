import Logging
import Metrics
import NIOCore
import Synchronization
import TroupeActors
import TroupeBridge
import TroupeCluster
import TroupeProto
import TroupeStore
import TroupeTracing
import TroupeWire

/// One host (or client) connection as the sidecar sees it: it answers the peer's requests and,
/// for a host, carries invocations of the actors it registered.
final class HostSession: PeerRequestHandler, ActorHost {
    private struct State {
        var hello: WireHello?
        var registered = false
        var leaving = false
        /// The peer's requests that have not been answered yet.
        var inFlight: Set<UInt64> = []
        /// The invocations of this connection whose reply is not complete yet, by request id,
        /// with their deadlines: ``deadlines`` fails each with `deadlineExceeded` at its deadline.
        /// A cancelled request stays here until then, as its call may still be running.
        var calls: [UInt64: PendingCall] = [:]
    }

    private struct PendingCall {
        var reply: Reply
        var deadline: NIODeadline
    }

    private let configuration: SidecarConfiguration
    private let directory: ActorDirectory
    private let membership: ClusterMembership?
    private var view: SidecarView { SidecarView(configuration: configuration, directory: directory, membership: membership) }
    private let jobs: AsyncStream<@Sendable () async -> Void>.Continuation
    private let logger: Logger
    private let state = Mutex(State())
    private let connectionBox = Mutex<PeerConnection?>(nil)
    /// One timer for the deadlines of all of this connection's calls, on its event loop.
    private let deadlines: NIOLoopBoundBox<DeadlineTimer>
    /// The secret this connection's Hello must carry: set on the TCP listener when `host-secret`
    /// is, nil on the Unix socket (its directory's permissions are the boundary).
    private let requiredSecret: SharedSecret?
    /// Set in the handshake when the host asked for invocation batches; used on the loop only.
    private let batcher: NIOLoopBoundBox<InvocationBatcher?>

    /// Handshakes refused for a missing or wrong secret.
    private static let missingSecret = Counter(
        label: "troupe_host_unauthenticated_total", dimensions: [("reason", "missing_secret")])
    private static let wrongSecret = Counter(
        label: "troupe_host_unauthenticated_total", dimensions: [("reason", "wrong_secret")])
    /// Connections closed because more than `max-connection-buffer-bytes` waited to be sent.
    private static let stoppedReading = Counter(label: "troupe_host_connections_overrun_total")

    init(
        configuration: SidecarConfiguration, directory: ActorDirectory, membership: ClusterMembership?,
        requiredSecret: SharedSecret?, eventLoop: any EventLoop,
        jobs: AsyncStream<@Sendable () async -> Void>.Continuation, logger: Logger
    ) {
        self.requiredSecret = requiredSecret
        self.membership = membership
        self.eventLoop = eventLoop
        self.deadlines = NIOLoopBoundBox(DeadlineTimer(), eventLoop: eventLoop)
        self.batcher = .makeEmptyBox(valueType: InvocationBatcher.self, eventLoop: eventLoop)
        self.configuration = configuration
        self.directory = directory
        self.jobs = jobs
        self.logger = logger
    }

    var hostName: String { state.withLock { $0.hello?.name } ?? "unnamed host" }
    var connection: PeerConnection? { connectionBox.withLock { $0 } }

    /// Binds the session to its connection and closes it if no Hello arrives in time.
    func attach(_ connection: PeerConnection) {
        connectionBox.withLock { $0 = connection }
        let timeout = TimeAmount.milliseconds(Int64(configuration.handshakeTimeoutMs))
        connection.eventLoop.scheduleTask(in: timeout) { [self] in
            if state.withLock({ $0.hello == nil }) {
                logger.warning("no Hello within the handshake timeout; closing")
                connection.close()
            }
        }
    }

    // MARK: ActorHost

    /// Fixed when the session is created: the loop of its channel.
    let eventLoop: any EventLoop

    func invoke(_ invocation: WireActorInvocation, timeout: TimeAmount) -> EventLoopFuture<WireActorInvocationResult> {
        guard let connection else {
            return eventLoop.makeFailedFuture(TroupeError.unavailable("the actor host is not connected"))
        }
        // Firings come many at a time from the timer heap: they wait for the end of the tick.
        if !invocation.timer.isEmpty, eventLoop.inEventLoop, let batcher = batcher.value,
            let batched = batcher.add(invocation, timeout: timeout)
        {
            return batched
        }
        return connection.request(.actorInvocation(invocation), timeout: timeout).flatMapThrowing { answer in
            guard case .actorResult(let result) = answer else {
                throw TroupeError.internalError("the host answered an ActorInvocation with \(answer.kindName)")
            }
            return result
        }
    }

    // MARK: PeerRequestHandler

    func handle(request: WireFrame.OneOf_Body, id: UInt64, on connection: PeerConnection) {
        // One lock per request: read the handshake and admit the request together.
        let (greeting, admitted) = state.withLock { state -> (WireHello?, Bool) in
            guard let hello = state.hello else { return (nil, false) }
            guard state.inFlight.count < configuration.maxConcurrentRequests else { return (hello, false) }
            state.inFlight.insert(id)
            return (hello, true)
        }
        guard let hello = greeting else {
            handshake(request, id: id, on: connection)
            return
        }
        guard admitted else {
            connection.fail(
                id,
                with: .resourceExhausted(
                    "more than \(configuration.maxConcurrentRequests) requests outstanding on this connection"))
            return
        }
        switch request {
        case .invoke(let invoke):
            startInvoke(invoke, id: id, on: connection)
        case .register(let register):
            guard hello.role == .host else {
                answer(id, .failure(TroupeError(.permissionDenied, "a client connection cannot register actors").wire))
                return
            }
            do {
                let names = try directory.register(register.actors, host: self)
                state.withLock { $0.registered = true }
                var response = WireRegisterResponse()
                response.actors = names
                logger.info(
                    "actors registered", metadata: ["troupe.host": "\(hello.name)", "troupe.actor_types": "\(names)"])
                answer(id, .registered(response))
            } catch {
                answer(id, .failure(error.wire))
            }
        case .spawn(let spawn):
            let system = spawn.system.isEmpty ? configuration.system : spawn.system
            guard system == configuration.system else {
                answer(
                    id,
                    .failure(
                        TroupeError.unavailable(
                            "spawning in system '\(system)' is not bridged; invoke with spawn_from there instead",
                            details: ["system": system]
                        ).wire))
                return
            }
            jobs.yield { [self] in
                do {
                    var response = WireSpawnResponse()
                    response.created = try await directory.spawn(names: spawn.names, actorType: spawn.actorType)
                    answer(id, .spawned(response))
                } catch {
                    answer(id, .failure(TroupeError(wrapping: error).wire))
                }
            }
        case .broadcast(let request):
            do {
                try BridgeSubjects.validate(channel: request.channel)
                try configuration.metadataLimits.check(request.metadata)
            } catch {
                answer(id, .failure(error.wire))
                return
            }
            guard !request.action.isEmpty else {
                answer(id, .failure(TroupeError.invalidArgument("broadcast needs an action").wire))
                return
            }
            let (listeners, bridged) = directory.broadcast(
                Broadcast(
                    channel: request.channel, action: request.action, payload: request.payload,
                    metadata: request.metadata, originSystem: configuration.system))
            var response = WireBroadcastResponse()
            response.localListeners = UInt32(clamping: listeners)
            response.bridged = bridged
            answer(id, .broadcasted(response))
        case .listActors(let list):
            let limit = list.limit == 0 ? 1000 : Int(list.limit)
            guard membership != nil else {
                answer(id, .actors(view.localActors(ofType: list.actorType, tags: list.tags, limit: limit)))
                return
            }
            // In a cluster the other members are asked, which takes a while: off the event loop.
            jobs.yield { [self] in
                answer(id, .actors(await view.actors(ofType: list.actorType, tags: list.tags, limit: limit)))
            }
        case .describeSidecar:
            var response = WireDescribeSidecarResponse()
            response.system = configuration.system
            response.node = configuration.node
            response.sidecarVersion = SidecarInfo.version
            response.protocolVersion = HostProtocol.version
            response.registered = directory.registeredTypes
            response.activeActors = UInt64(directory.activeCount)
            response.store = directory.store.description
            response.pools = directory.pools
            answer(id, .sidecar(response))
        case .listMembers:
            answer(id, .members(view.members()))
        case .hello:
            answer(id, .failure(TroupeError.failedPrecondition("Hello was already received on this connection").wire))
        default:
            answer(
                id,
                .failure(
                    TroupeError.invalidArgument("a \(request.kindName) frame is not a request the sidecar serves").wire)
            )
        }
    }

    private func startInvoke(_ request: WireInvokeRequest, id: UInt64, on connection: PeerConnection) {
        guard !request.actor.name.isEmpty, !request.action.isEmpty else {
            answer(id, .failure(TroupeError.invalidArgument("invoke needs an actor name and an action").wire))
            return
        }
        do { try configuration.metadataLimits.check(request.metadata) } catch {
            answer(id, .failure(error.wire))
            return
        }
        let key = ActorKey(
            system: request.actor.system.isEmpty ? configuration.system : request.actor.system,
            name: request.actor.name)
        if request.delayMs > 0 {
            guard key.system == configuration.system else {
                answer(
                    id,
                    .failure(
                        TroupeError.invalidArgument(
                            "a delayed call must target this sidecar's system '\(configuration.system)'",
                            details: ["system": key.system]
                        ).wire))
                return
            }
            jobs.yield { [self] in
                do {
                    var response = WireInvokeResponse()
                    response.scheduled = try await directory.scheduleDelayed(request, to: key)
                    answer(id, .invoked(response))
                } catch {
                    answer(id, .failure(TroupeError(wrapping: error).wire))
                }
            }
            return
        }
        let timeoutMs = request.timeoutMs == 0 ? configuration.defaultTimeoutMs : request.timeoutMs
        let deadline = NIODeadline.now() + .milliseconds(Int64(timeoutMs))
        var invocation = Invocation(
            actor: key,
            action: request.action,
            payload: request.payload,
            metadata: request.metadata,
            caller: request.hasCaller ? request.caller : nil,
            deadline: deadline,
            spawnFrom: request.spawnFrom)
        invocation.chain = request.chain
        let span = directory.tracing?.startSpan(
            TroupeSpan.invoke, kind: .server, metadata: &invocation.metadata, actorID: invocation.actor.name,
            action: invocation.action)
        let (traced, action) = (invocation.metadata, invocation.action)
        let reply = Reply { [self] result in
            span?.end(reporting: result)
            switch result {
            case .success(let payload):
                var response = WireInvokeResponse()
                response.payload = payload
                answer(id, .invoked(response))
            case .failure(let error):
                logger.debug("call failed", metadata: Self.failureMetadata(key, action, error, traced))
                answer(id, .failure(error.wire))
            }
        }
        track(reply, of: id, until: deadline)
        if request.fireAndForget {
            // The caller hears about acceptance; the outcome is only logged and counted.
            directory.send(invocation, acceptance: reply, on: connection.eventLoop)
        } else {
            directory.invoke(invocation, reply: reply)
        }
    }

    /// What a failed call is logged with: its trace, so the line is found from the trace.
    private static func failureMetadata(
        _ key: ActorKey, _ action: String, _ error: TroupeError, _ metadata: [String: String]
    ) -> Logger.Metadata {
        var logged = TraceLogMetadata.metadata(of: metadata)
        logged["troupe.actor_id"] = "\(key)"
        logged["troupe.action"] = "\(action)"
        logged["troupe.status"] = "\(error.code)"
        logged["troupe.error"] = "\(error.message)"
        return logged
    }

    /// Arms the connection's deadline timer for the reply of request `id`. Call on the loop.
    private func track(_ reply: Reply, of id: UInt64, until deadline: NIODeadline) {
        state.withLock { $0.calls[id] = PendingCall(reply: reply, deadline: deadline) }
        armDeadlines(for: deadline)
    }

    private func armDeadlines(for deadline: NIODeadline) {
        deadlines.value.arm(for: deadline, on: eventLoop) { [self] in expireCalls() }
    }

    /// Fails the calls whose deadline passed and arms the timer for the earliest one left.
    private func expireCalls() {
        deadlines.value.fired()
        let now = NIODeadline.now()
        let (due, next) = state.withLock { state -> ([Reply], NIODeadline?) in
            var due: [Reply] = []
            var next: NIODeadline?
            for call in state.calls.values {
                if call.deadline <= now {
                    due.append(call.reply)
                } else if next.map({ call.deadline < $0 }) ?? true {
                    next = call.deadline
                }
            }
            return (due, next)
        }
        // Each completion answers through `answer`, which takes the call out of `calls`.
        for reply in due {
            reply.complete(.failure(.deadlineExceeded("the call's deadline passed before the actor answered")))
        }
        if let next { armDeadlines(for: next) }
    }

    /// Sends the answer to request `id` unless the peer cancelled it.
    private func answer(_ id: UInt64, _ body: WireFrame.OneOf_Body) {
        let (live, closeNow) = state.withLock { state -> (Bool, Bool) in
            state.calls.removeValue(forKey: id)
            let live = state.inFlight.remove(id) != nil
            return (live, state.leaving && state.inFlight.isEmpty)
        }
        guard let connection else { return }
        if live { connection.respond(to: id, with: body) }
        if closeNow { connection.close() }
    }

    private func handshake(_ request: WireFrame.OneOf_Body, id: UInt64, on connection: PeerConnection) {
        guard case .hello(let hello) = request else {
            connection.fail(id, with: .failedPrecondition("the first frame must be Hello, not \(request.kindName)"))
            connection.close()
            return
        }
        // First, so a peer without the secret learns nothing about this sidecar, not even its
        // protocol version or system.
        if let requiredSecret {
            guard !hello.secret.isEmpty else {
                refuseUnauthenticated(
                    id, on: connection, "this listener requires the host secret in Hello (the sidecar's host-secret)",
                    counter: Self.missingSecret)
                return
            }
            guard requiredSecret.matches(hello.secret) else {
                refuseUnauthenticated(id, on: connection, "the secret in Hello is wrong", counter: Self.wrongSecret)
                return
            }
        }
        guard hello.protocolVersion == HostProtocol.version else {
            logger.warning(
                "handshake refused: protocol version", metadata: ["troupe.peer_version": "\(hello.protocolVersion)"])
            connection.fail(
                id,
                with: .failedPrecondition(
                    "protocol version \(hello.protocolVersion) is not supported; this sidecar speaks version \(HostProtocol.version)",
                    details: ["supported": "\(HostProtocol.version)"]))
            connection.close()
            return
        }
        // A client may leave the system empty to mean "whichever system this sidecar serves".
        guard hello.system == configuration.system || (hello.system.isEmpty && hello.role == .client) else {
            logger.warning("handshake refused: system", metadata: ["troupe.peer_system": "\(hello.system)"])
            connection.fail(
                id,
                with: .failedPrecondition(
                    "this sidecar serves system '\(configuration.system)', not '\(hello.system)'"))
            connection.close()
            return
        }
        guard hello.role == .host || hello.role == .client else {
            connection.fail(id, with: .invalidArgument("Hello must name a role: host or client"))
            connection.close()
            return
        }
        state.withLock { $0.hello = hello }
        let limit = hello.maxFrameBytes == 0 ? HostProtocol.defaultMaxFrameBytes : hello.maxFrameBytes
        connection.peerMaxFrameBytes = min(limit, configuration.maxFrameBytes)
        var welcome = WireWelcome()
        welcome.protocolVersion = HostProtocol.version
        welcome.system = configuration.system
        welcome.node = configuration.node
        welcome.sidecarVersion = SidecarInfo.version
        welcome.maxFrameBytes = min(limit, configuration.maxFrameBytes)
        welcome.heartbeatIntervalMs = configuration.heartbeatIntervalMs
        welcome.maxConcurrentRequests = configuration.maxConcurrentRequests
        if hello.role == .host, hello.acceptsInvocationBatches {
            batcher.value = InvocationBatcher(connection: connection, maxBatch: InvocationBatcher.defaultMaxBatch)
            welcome.maxInvocationBatch = UInt32(InvocationBatcher.defaultMaxBatch)
        }
        connection.respond(to: id, with: .welcome(welcome))
        connection.startHeartbeat(interval: .milliseconds(Int64(configuration.heartbeatIntervalMs)))
        logger.info(
            "peer connected",
            metadata: [
                "troupe.peer": "\(hello.name)", "troupe.role": "\(hello.role)",
                "troupe.sdk": "\(hello.sdkName) \(hello.sdkVersion)",
            ])
    }

    /// Answers the Hello with `unauthenticated` and closes: the peer never gets to register or
    /// invoke. The secret it sent is not logged.
    private func refuseUnauthenticated(
        _ id: UInt64, on connection: PeerConnection, _ message: String, counter: Counter
    ) {
        counter.increment()
        logger.warning("handshake refused: unauthenticated", metadata: ["troupe.reason": "\(message)"])
        connection.fail(id, with: TroupeError(.unauthenticated, message))
        connection.close()
    }

    func peerCancelled(id: UInt64, on connection: PeerConnection) {
        // The caller gave up: its answer will not be sent. The call itself stops at its deadline.
        state.withLock { _ = $0.inFlight.remove(id) }
    }

    func peerSaidGoodbye(_ goodbye: WireGoodbye, on connection: PeerConnection) {
        let (registered, idle) = state.withLock { state -> (Bool, Bool) in
            state.leaving = true
            return (state.registered, state.inFlight.isEmpty)
        }
        logger.info(
            "peer said goodbye", metadata: ["troupe.peer": "\(hostName)", "troupe.reason": "\(goodbye.reason)"])
        if registered { directory.hostDisconnected(self) }
        if idle { connection.close() }
    }

    func peerViolatedProtocol(_ error: TroupeError, on connection: PeerConnection) {
        if state.withLock({ $0.hello == nil }) {
            // Before the handshake nothing can be trusted, not even the framing.
            connection.close()
        }
    }

    func peerStoppedReading(bufferedBytes: Int, on connection: PeerConnection) {
        Self.stoppedReading.increment()
    }

    func connectionClosed(_ connection: PeerConnection) {
        // Nobody waits for these calls any more; each still ends by its deadline when it starts or runs.
        deadlines.value.stop()
        let registered = state.withLock { state -> Bool in
            state.inFlight.removeAll()
            state.calls.removeAll()
            return state.registered
        }
        if registered { directory.hostDisconnected(self) }
        connectionBox.withLock { $0 = nil }
        logger.debug("peer disconnected", metadata: ["troupe.peer": "\(hostName)"])
    }

    /// Tells the peer the sidecar is going away.
    func sayGoodbye(reason: String, drainTimeoutMs: UInt32) {
        var goodbye = WireGoodbye()
        goodbye.reason = reason
        goodbye.drainTimeoutMs = drainTimeoutMs
        connection?.sendConnectionFrame(.goodbye(goodbye))
    }
}

extension WireFrame.OneOf_Body {
    /// The frame's field name, for messages to people.
    var kindName: String {
        switch self {
        case .hello: "hello"
        case .welcome: "welcome"
        case .ping: "ping"
        case .pong: "pong"
        case .goodbye: "goodbye"
        case .failure: "failure"
        case .cancel: "cancel"
        case .register: "register"
        case .registered: "registered"
        case .invoke: "invoke"
        case .invoked: "invoked"
        case .spawn: "spawn"
        case .spawned: "spawned"
        case .listActors: "list_actors"
        case .actors: "actors"
        case .describeSidecar: "describe_sidecar"
        case .sidecar: "sidecar"
        case .broadcast: "broadcast"
        case .broadcasted: "broadcasted"
        case .actorInvocation: "actor_invocation"
        case .actorResult: "actor_result"
        case .actorInvocationBatch: "actor_invocation_batch"
        case .actorBatchResult: "actor_batch_result"
        case .listMembers: "list_members"
        case .members: "members"
        }
    }
}

/// Facts about this build.
public enum SidecarInfo {
    public static let version = "0.1.0"
}
