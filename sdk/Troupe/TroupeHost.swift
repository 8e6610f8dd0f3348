public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization
public import Tracing
import TroupeProto
import TroupeTracing

/// Serves actor types to a sidecar: connects, registers them, runs their actions, and connects
/// again (with backoff) when the sidecar restarts. Run it in a `ServiceGroup`, or call ``run()``.
///
/// ```swift
/// let host = try TroupeHost(system: "tickets", actors: [SeatMap.self, Booking.self])
/// try await host.run()
/// ```
public final class TroupeHost: Service, Sendable {
    public let system: String
    public let endpoint: Endpoint
    public let name: String
    let actors: [String: RegisteredActor]
    let logger: Logger
    /// Starts the `troupe.host.action` span of each action and the client spans of its calls.
    private let tracer: any Tracer
    /// Sent in every Hello; never logged.
    private let secret: String?
    private let current = Mutex<TroupeClient?>(nil)
    /// Actions running now.
    let running = Atomic<Int>(0)
    /// Asks the sidecar for invocation batches in the Hello.
    private let acceptsInvocationBatches: Bool
    /// Set on graceful shutdown: the connection is not opened again.
    private let stopping = Atomic<Bool>(false)

    /// - Parameter secret: the sidecar's `host-secret`, required on its TCP listener when it has
    ///   one (a Unix socket ignores it). A wrong secret is refused on every attempt, so the host
    ///   keeps retrying and never registers; the refusal is logged at error level.
    /// - Parameter invocationBatches: let the sidecar send many timer firings in one frame
    ///   (`ActorInvocationBatch`); they run concurrently, as single invocations do. Off only to
    ///   behave like a host that predates batches.
    /// - Parameter tracer: starts a `troupe.host.action` span around every action (a child of
    ///   the sidecar's `troupe.actor.turn`) and a `troupe.client.invoke` span for every call an
    ///   action or ``client`` makes; by default the tracer bootstrapped in `InstrumentationSystem`.
    /// - Throws: `invalidArgument` if two actor types share a name or an initial state cannot be encoded.
    public init(
        system: String,
        endpoint: Endpoint = .unix(path: "/tmp/troupe/troupe.sock"),
        actors: [any VirtualActor.Type],
        name: String = "swift-host",
        secret: String? = nil,
        invocationBatches: Bool = true,
        logger: Logger = Logger(label: "troupe.host"),
        tracer: (any Tracer)? = nil
    ) throws {
        self.tracer = tracer ?? InstrumentationSystem.tracer
        self.system = system
        self.acceptsInvocationBatches = invocationBatches
        self.secret = secret
        self.endpoint = endpoint
        self.name = name
        self.logger = logger
        var table: [String: RegisteredActor] = [:]
        for type in actors {
            let registered = try RegisteredActor(type)
            guard table[registered.definition.name] == nil else {
                throw TroupeError.invalidArgument("two actor types are named '\(registered.definition.name)'")
            }
            table[registered.definition.name] = registered
        }
        self.actors = table
    }

    /// The client of the current connection, for calls from outside actions; nil while disconnected.
    public var client: TroupeClient? { current.withLock { $0 } }

    /// Waits until the host is connected and registered, up to `timeout`.
    public func connected(timeout: Duration = .seconds(30)) async throws -> TroupeClient {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let client { return client }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TroupeError.unavailable("the host did not connect to the sidecar at \(endpoint) in time")
    }

    /// Serves until graceful shutdown or cancellation. On graceful shutdown it says Goodbye, lets
    /// running actions answer (for at most 10 s), then closes the connection.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                guard (try? await gracefulShutdown()) != nil else { return }
                self.stopping.store(true, ordering: .relaxed)
                self.sayGoodbye()
                await self.waitForActions(timeout: .seconds(10))
                self.client?.connection.close()
            }
            await self.connectLoop()
            group.cancelAll()
        }
    }

    private func sayGoodbye() {
        guard let client else { return }
        var goodbye = WireGoodbye()
        goodbye.reason = "host shutting down"
        client.connection.sendConnectionFrame(.goodbye(goodbye))
    }

    private func connectLoop() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
            do {
                let handler = InvocationHandler(host: self)
                var hello = WireHello.make(system: system, role: .host, name: name, secret: secret)
                hello.acceptsInvocationBatches = acceptsInvocationBatches
                let (connection, welcome) = try await PeerConnection.connect(
                    to: endpoint, hello: hello,
                    delegate: handler,
                    logger: logger)
                let client = TroupeClient(
                    system: system, connection: connection, ownsConnection: false, tracer: tracer)
                handler.client.withLock { $0 = client }
                var register = WireRegisterRequest()
                register.actors = actors.values.map(\.definition).sorted { $0.name < $1.name }
                _ = try await connection.call(.register(register), timeout: .seconds(10))
                current.withLock { $0 = client }
                logger.info(
                    "registered with sidecar",
                    metadata: ["troupe.node": "\(welcome.node)", "troupe.actor_types": "\(actors.keys.sorted())"])
                backoff = .milliseconds(100)
                try await withTaskCancellationHandler {
                    try await connection.closeFuture.get()
                } onCancel: {
                    connection.close()
                }
                current.withLock { $0 = nil }
                logger.info("sidecar connection closed; reconnecting")
            } catch let error as TroupeError where error.code == .unauthenticated {
                current.withLock { $0 = nil }
                logger.error("the sidecar refused this host's secret", metadata: ["troupe.error": "\(error.message)"])
            } catch {
                current.withLock { $0 = nil }
                logger.debug("cannot reach the sidecar", metadata: ["troupe.error": "\(error)"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(2))
        }
    }

    /// Runs one invocation on the connection's event loop and answers it.
    fileprivate func serve(
        _ invocation: WireActorInvocation, id: UInt64, connection: PeerConnection, client: TroupeClient?
    ) {
        guard let actor = actors[invocation.actorType] else {
            connection.fail(id, with: .notFound("this host has no actor type '\(invocation.actorType)'"))
            return
        }
        guard let client else {
            connection.fail(id, with: .unavailable("the host is still registering"))
            return
        }
        running.wrappingAdd(1, ordering: .relaxed)
        // Not in the task group: starting there would cost two thread switches per call. `running`
        // counts these tasks, and shutdown waits for it to reach zero.
        Task(executorPreference: client.executor) {
            defer { self.running.wrappingSubtract(1, ordering: .relaxed) }
            do {
                let result = try await CallChainScope.$current.withValue(invocation.chain) {
                    try await actor.run(invocation, client.acting(as: invocation.actor.name, in: invocation.chain))
                }
                connection.respond(to: id, with: .actorResult(result))
            } catch let error as TroupeError {
                connection.fail(id, with: error)
            } catch {
                connection.fail(id, with: self.unexpected(error, of: invocation))
            }
        }
    }

    /// Waits until no action is running, for at most `timeout`.
    private func waitForActions(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while running.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Receives the sidecar's requests on a host connection.
private final class InvocationHandler: PeerRequestHandler {
    let host: TroupeHost
    /// Its executor, the connection's event loop, runs the actions.
    let client = Mutex<TroupeClient?>(nil)

    init(host: TroupeHost) {
        self.host = host
    }

    func handle(request: WireFrame.OneOf_Body, id: UInt64, on connection: PeerConnection) {
        switch request {
        case .actorInvocation(let invocation):
            host.serve(invocation, id: id, connection: connection, client: client.withLock { $0 })
        case .actorInvocationBatch(let batch):
            host.serve(batch, id: id, connection: connection, client: client.withLock { $0 })
        default:
            connection.fail(id, with: .invalidArgument("a host serves only actor invocations"))
        }
    }

    func peerSaidGoodbye(_ goodbye: WireGoodbye, on connection: PeerConnection) {
        // The sidecar drains its calls before it says Goodbye, so nothing is in flight: close now
        // so it can exit, and let the connect loop reconnect once it is back.
        connection.close()
    }
}
