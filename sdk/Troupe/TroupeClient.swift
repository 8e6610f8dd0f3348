public import Logging
public import NIOCore
import NIOPosix
public import Tracing
import TroupeProto
import TroupeTracing

/// Invokes actors through a sidecar.
///
/// A client either owns its connection (``connect(system:to:name:logger:)``, for application code
/// that hosts no actors) or shares the connection of a ``TroupeHost`` (``TroupeHost/client``,
/// and ``ActorContext/client`` inside actions).
///
/// ```swift
/// let client = try await TroupeClient.connect(system: "tickets", to: .unix(path: "/tmp/troupe/troupe.sock"))
/// let seat: Int = try await client.invoke("concert-1", action: "reserve", Reserve(buyer: "ann"))
/// await client.close()
/// ```
public final class TroupeClient: Sendable {
    /// The ActorSystem calls go to unless they name another.
    public let system: String
    let connection: PeerConnection
    private let ownsConnection: Bool
    /// Whose calls these are, when the client belongs to an actor.
    let caller: String?
    /// The call chain of the action the client belongs to, which its calls continue.
    let chain: WireCallChain?
    /// Starts each call's `troupe.client.invoke` span and writes its trace headers.
    let tracer: any Tracer

    init(
        system: String, connection: PeerConnection, ownsConnection: Bool, caller: String? = nil,
        chain: WireCallChain? = nil, executor: (any TaskExecutor)? = nil, tracer: any Tracer
    ) {
        self.system = system
        self.connection = connection
        self.ownsConnection = ownsConnection
        self.caller = caller
        self.executor = executor ?? EventLoopTaskExecutor(connection.eventLoop)
        self.chain = chain
        self.tracer = tracer
    }

    /// The executor of this client's connection: its event loop.
    ///
    /// A task that prefers it writes each call and takes its answer on the thread that owns the
    /// socket, so a call costs no thread switches inside the caller's process (two fewer
    /// wake-ups per call than from the global pool). For latency-sensitive callers that do
    /// little work between calls; long computations there delay every call of the connection.
    ///
    /// ```swift
    /// try await withTaskExecutorPreference(client.executor) {
    ///     for order in orders {
    ///         let _: Receipt = try await client.invoke("till", action: "ring", order)
    ///     }
    /// }
    /// ```
    public let executor: any TaskExecutor

    /// Connects to a sidecar as a client (it may invoke, not host actors).
    ///
    /// - Parameters:
    ///   - secret: the sidecar's `host-secret`, required on its TCP listener when it has
    ///     one (a Unix socket ignores it).
    ///   - tracer: starts a `troupe.client.invoke` span for each call, the parent of the
    ///     sidecar's spans; by default the tracer bootstrapped in `InstrumentationSystem`.
    ///   - eventLoopGroup: where the connection runs; by default NIO's shared group. A group
    ///     of its own keeps this client's I/O off the threads other connections use.
    /// - Throws: `unavailable` if no sidecar listens there; `failedPrecondition` if the sidecar
    ///   serves another system or speaks another protocol version; `unauthenticated` if the
    ///   listener requires a secret and `secret` is missing or wrong.
    public static func connect(
        system: String,
        to endpoint: Endpoint = .unix(path: "/tmp/troupe/troupe.sock"),
        name: String = "swift-client",
        secret: String? = nil,
        logger: Logger = Logger(label: "troupe.client"),
        tracer: (any Tracer)? = nil,
        eventLoopGroup: (any EventLoopGroup)? = nil
    ) async throws -> TroupeClient {
        let (connection, _) = try await PeerConnection.connect(
            to: endpoint, hello: .make(system: system, role: .client, name: name, secret: secret), delegate: nil,
            group: eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton, logger: logger)
        return TroupeClient(
            system: system, connection: connection, ownsConnection: true, tracer: tracer ?? InstrumentationSystem.tracer
        )
    }

    /// Invokes `action` on actor `actor` and decodes the reply as `Output`.
    ///
    /// ```swift
    /// // Idempotent: safe to run again if a node died with the call in flight.
    /// let seats: [Int] = try await client.invoke("hall-1", action: "free-seats", retry: .idempotent)
    /// ```
    ///
    /// - Parameters:
    ///   - system: another ActorSystem; nil for the client's own.
    ///   - spawnFrom: if the actor does not exist, spawn it from this unnamed actor type first.
    ///   - timeout: the call's deadline; the sidecar answers `deadlineExceeded` after it. With
    ///     retries it bounds all attempts together.
    ///   - retry: retries of a call answered `unavailable`; only for idempotent actions.
    /// - Throws: ``TroupeError`` with the call's status.
    public func invoke<Input: Sendable, Output: Sendable>(
        _ actor: String,
        action: String,
        _ input: Input,
        as output: Output.Type = Output.self,
        system: String? = nil,
        spawnFrom: String? = nil,
        metadata: [String: String] = [:],
        timeout: Duration = .seconds(30),
        retry: RetryPolicy = .none
    ) async throws -> Output {
        guard retry.maxAttempts > 1 else {
            return try await invokeOnce(
                actor, action: action, input, as: output, system: system, spawnFrom: spawnFrom, metadata: metadata,
                timeout: timeout)
        }
        let deadline = ContinuousClock.now + timeout
        var backoff = retry.initialBackoff
        for attempt in 1... {
            do {
                return try await invokeOnce(
                    actor, action: action, input, as: output, system: system, spawnFrom: spawnFrom,
                    metadata: metadata, timeout: deadline - ContinuousClock.now)
            } catch let error as TroupeError where error.code == .unavailable {
                // Jitter, so callers that failed together do not come back together.
                let pause = backoff * Double.random(in: 0.5...1)
                guard attempt < retry.maxAttempts, ContinuousClock.now + pause < deadline else { throw error }
                try await Task.sleep(for: pause)
                backoff = min(backoff * 2, retry.maxBackoff)
            }
        }
        fatalError("unreachable: the loop returns or throws")
    }

    private func invokeOnce<Input: Sendable, Output: Sendable>(
        _ actor: String, action: String, _ input: Input, as output: Output.Type, system: String?,
        spawnFrom: String?, metadata: [String: String], timeout: Duration
    ) async throws -> Output {
        let request = try makeRequest(actor, action, input, system, spawnFrom, metadata, timeout)
        let response = try await send(request, timeout: timeout)
        return try PayloadCoding.decode(Output.self, from: response.payload)
    }

    private func makeRequest<Input: Sendable>(
        _ actor: String, _ action: String, _ input: Input, _ system: String?, _ spawnFrom: String?,
        _ metadata: [String: String], _ timeout: Duration
    ) throws -> WireInvokeRequest {
        var request = WireInvokeRequest()
        request.actor.system = system ?? self.system
        request.actor.name = actor
        request.action = action
        request.payload = try PayloadCoding.encode(input)
        request.metadata = metadata
        request.timeoutMs = timeout.milliseconds
        if let spawnFrom { request.spawnFrom = spawnFrom }
        if let caller {
            request.caller.system = self.system
            request.caller.name = caller
        }
        // Any client used inside an action continues the action's chain, so the sidecar can tell
        // a call that comes back into a running turn.
        if let chain = chain ?? CallChainScope.current { request.chain = chain }
        return request
    }

    /// Sends `request` in its `troupe.client.invoke` span, which its trace headers name as parent.
    private func send(_ request: WireInvokeRequest, timeout: Duration) async throws -> WireInvokeResponse {
        var request = request
        let span = TracePropagation.startClientSpan(
            TroupeSpan.clientInvoke, tracer: tracer, metadata: &request.metadata, system: system,
            target: request.actor.system, actorID: request.actor.name, action: request.action)
        do {
            // The sidecar enforces the deadline; the local one is a backstop for a sidecar that went silent.
            let answer = try await connection.call(
                .invoke(request), timeout: .milliseconds(Int64(timeout.milliseconds) + 2000))
            guard case .invoked(let response) = answer else {
                throw TroupeError.internalError("the sidecar answered invoke with an unexpected frame")
            }
            span?.end(reporting: nil)
            return response
        } catch {
            span?.end(reporting: TroupeError(wrapping: error))
            throw error
        }
    }

    /// Fire and forget: returns as soon as the call waits in the actor's mailbox, without waiting
    /// for the action. Its outcome is dropped; the sidecar logs and counts failures.
    ///
    /// ```swift
    /// try await client.send("audit-log", action: "record", "seat 12 booked")
    /// ```
    ///
    /// - Parameter timeout: the call's deadline, counted from now, for queueing and running it.
    /// - Throws: ``TroupeError`` if the call cannot be queued: `notFound` for an unknown actor,
    ///   `resourceExhausted` for a full mailbox, `unavailable` without a host.
    public func send<Input: Sendable>(
        _ actor: String, action: String, _ input: Input, system: String? = nil, spawnFrom: String? = nil,
        metadata: [String: String] = [:], timeout: Duration = .seconds(30)
    ) async throws {
        var request = try makeRequest(actor, action, input, system, spawnFrom, metadata, timeout)
        request.fireAndForget = true
        _ = try await send(request, timeout: timeout)
    }

    /// A delayed call: the sidecar stores it durably and invokes `action` of `actor` once `delay`
    /// has passed, even if the sidecar restarts meanwhile. Returns once it is stored; the outcome
    /// is dropped (failures are logged, counted and retried with backoff).
    ///
    /// ```swift
    /// try await client.schedule("cart-42", action: "expire", NoPayload(), after: .seconds(900))
    /// ```
    ///
    /// - Parameter timeout: the deadline of the call when it runs.
    /// - Returns: the name it is stored under (a reminder of `actor`).
    @discardableResult
    public func schedule<Input: Sendable>(
        _ actor: String, action: String, _ input: Input, after delay: Duration, spawnFrom: String? = nil,
        metadata: [String: String] = [:], timeout: Duration = .seconds(30)
    ) async throws -> String {
        guard delay.milliseconds > 0 else {
            throw TroupeError.invalidArgument("a delayed call needs a delay of at least 1 ms")
        }
        var request = try makeRequest(actor, action, input, nil, spawnFrom, metadata, timeout)
        request.delayMs = UInt64(delay.milliseconds)
        return try await send(request, timeout: .seconds(30)).scheduled
    }

    /// Invokes an action that takes no input.
    public func invoke<Output: Sendable>(
        _ actor: String, action: String, as output: Output.Type = Output.self, system: String? = nil,
        spawnFrom: String? = nil, metadata: [String: String] = [:], timeout: Duration = .seconds(30),
        retry: RetryPolicy = .none
    ) async throws -> Output {
        try await invoke(
            actor, action: action, NoPayload(), as: output, system: system, spawnFrom: spawnFrom, metadata: metadata,
            timeout: timeout, retry: retry)
    }

    /// Sends `input` to every actor that listens to `channel`: in this ActorSystem and, when the
    /// sidecar has a NATS bridge, in the others. Each listener's `action` is invoked once with it;
    /// the replies are dropped. Returns once the sidecar has queued it, not when listeners ran.
    ///
    /// - Returns: how many listeners of this system it was queued for, and whether it was also
    ///   published to the other systems.
    /// - Throws: `invalidArgument` for a channel name with `.`, `*`, `>` or spaces, or no action.
    @discardableResult
    public func broadcast<Input: Sendable>(
        _ channel: String, action: String, _ input: Input, metadata: [String: String] = [:],
        timeout: Duration = .seconds(10)
    ) async throws -> (localListeners: Int, bridged: Bool) {
        var request = WireBroadcastRequest()
        request.channel = channel
        request.action = action
        request.payload = try PayloadCoding.encode(input)
        request.metadata = TracePropagation.outgoing(metadata, using: tracer)
        let answer = try await connection.call(.broadcast(request), timeout: .milliseconds(Int64(timeout.milliseconds)))
        guard case .broadcasted(let response) = answer else {
            throw TroupeError.internalError("the sidecar answered broadcast with an unexpected frame")
        }
        return (Int(response.localListeners), response.bridged)
    }

    /// Creates unnamed actors of `actorType` that do not exist yet; returns the names created.
    public func spawn(_ names: [String], of actorType: String, timeout: Duration = .seconds(30)) async throws
        -> [String]
    {
        var request = WireSpawnRequest()
        request.actorType = actorType
        request.names = names
        request.system = system
        let answer = try await connection.call(.spawn(request), timeout: .milliseconds(Int64(timeout.milliseconds)))
        guard case .spawned(let response) = answer else {
            throw TroupeError.internalError("the sidecar answered spawn with an unexpected frame")
        }
        return response.created
    }

    /// The active actors, as the sidecar lists them.
    ///
    /// ```swift
    /// let europeans = try await client.activeActors(ofType: "player", tagged: ["region": "eu"])
    /// ```
    ///
    /// - Parameter tags: only actors that carry each of these tags with the same value.
    public func activeActors(ofType actorType: String = "", tagged tags: [String: String] = [:], limit: Int = 1000)
        async throws -> [ActiveActor]
    {
        var request = WireListActorsRequest()
        request.actorType = actorType
        request.limit = UInt32(clamping: limit)
        request.tags = tags
        let answer = try await connection.call(.listActors(request), timeout: .seconds(10))
        guard case .actors(let response) = answer else {
            throw TroupeError.internalError("the sidecar answered list_actors with an unexpected frame")
        }
        return response.actors.map {
            ActiveActor(
                name: $0.actor.name, actorType: $0.actorType, node: $0.node, revision: $0.revision,
                mailboxDepth: Int($0.mailboxDepth), tags: $0.tags)
        }
    }

    /// The pools of the pooled actor types on the sidecar this client talks to (each sidecar
    /// keeps its own), sorted by type.
    public func pools() async throws -> [ActorPoolStatus] {
        let answer = try await connection.call(.describeSidecar(WireDescribeSidecarRequest()), timeout: .seconds(10))
        guard case .sidecar(let response) = answer else {
            throw TroupeError.internalError("the sidecar answered describe_sidecar with an unexpected frame")
        }
        return response.pools.map {
            ActorPoolStatus(
                actorType: $0.actorType, instances: Int($0.instances), busy: Int($0.busy), queued: Int($0.queued),
                min: Int($0.min), max: Int($0.max), peakInstances: Int($0.peakInstances),
                queuedTotal: Int($0.queuedTotal))
        }
    }

    /// A client that calls on behalf of actor `name`, in call chain `chain`, over the same connection.
    func acting(as name: String, in chain: WireCallChain) -> TroupeClient {
        // The connection's executor is shared: a client is made per invocation.
        TroupeClient(
            system: system, connection: connection, ownsConnection: false, caller: name, chain: chain,
            executor: executor, tracer: tracer)
    }

    /// Says Goodbye and closes the connection, if this client owns it.
    public func close() async {
        guard ownsConnection else { return }
        var goodbye = WireGoodbye()
        goodbye.reason = "client closing"
        connection.sendConnectionFrame(.goodbye(goodbye))
        connection.close()
        try? await connection.closeFuture.get()
    }
}

extension WireHello {
    static func make(system: String, role: WirePeerRole, name: String, secret: String?) -> WireHello {
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        hello.system = system
        hello.role = role
        hello.name = name
        hello.sdkName = "troupe-swift"
        hello.sdkVersion = "0.1.0"
        hello.secret = secret ?? ""
        return hello
    }
}

extension Duration {
    var milliseconds: UInt32 {
        let (seconds, attoseconds) = components
        return UInt32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

/// One active actor, as ``TroupeClient/activeActors(ofType:tagged:limit:)`` lists it.
public struct ActiveActor: Sendable, Hashable {
    public var name: String
    public var actorType: String
    public var node: String
    /// The state's revision: grows by one per stored state.
    public var revision: UInt64
    /// Calls waiting, including the running one.
    public var mailboxDepth: Int
    /// The tags the actor set (``ActorContext/tag(_:_:)``).
    public var tags: [String: String] = [:]
}

/// The call chain of the action running in this task, for clients other than the action's own.
enum CallChainScope {
    @TaskLocal static var current: WireCallChain?
}

/// The pool of one pooled actor type on one sidecar, as ``TroupeClient/pools()`` reports it.
public struct ActorPoolStatus: Sendable, Hashable {
    public var actorType: String
    /// Instances now, and how many of them run a call.
    public var instances: Int
    public var busy: Int
    /// Calls waiting for an instance now.
    public var queued: Int
    public var min: Int
    public var max: Int
    /// The most instances the pool had at once.
    public var peakInstances: Int
    /// Calls that had to wait for an instance, in all.
    public var queuedTotal: Int
}

/// How ``TroupeClient`` retries a call answered `unavailable`: a node went away with the call in
/// flight, or placement is settling after a membership change. A retried call may have run
/// already, so use it for idempotent actions only.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included.
    public var maxAttempts: Int
    /// The pause before the first retry; it doubles up to `maxBackoff` (each with up to half jitter).
    public var initialBackoff: Duration
    public var maxBackoff: Duration

    public init(maxAttempts: Int, initialBackoff: Duration = .milliseconds(50), maxBackoff: Duration = .seconds(1)) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }

    /// One attempt.
    public static let none = RetryPolicy(maxAttempts: 1)
    /// Up to 20 attempts within the call's timeout: rides out a failover (a few seconds).
    public static let idempotent = RetryPolicy(maxAttempts: 20)
}
