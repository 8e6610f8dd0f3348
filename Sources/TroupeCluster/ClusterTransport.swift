public import Foundation
public import Logging
import Metrics
public import NIOCore
import NIOPosix
import NIOSSL
public import ServiceLifecycle
import Synchronization
public import TroupeActors
public import TroupeMembership
public import TroupeProto
public import TroupeWire

/// The cluster transport of one node: a TCP listener for the peers' connections and one reused
/// outbound connection per peer, over which this node's remote calls and failure-detector
/// messages go. Implements ``RemoteCallTransport``, so ``TroupeActorSystem`` calls distributed
/// actors of other nodes through it.
///
/// Inbound calls of a stable target are served on the connection's event loop, in order; other
/// targets run through ``TroupeActorSystem/executeRemoteCall(_:)`` (allow-listed
/// `executeDistributedTarget`) in this service's task group.
public final class ClusterTransport: RemoteCallTransport, Service, ClusterInbound, Sendable {
    public struct Configuration: Sendable {
        /// The ActorSystem; nodes of another one are refused.
        public var system: String
        /// This node; its `address` is what peers connect to.
        public var myself: NodeIdentity
        /// Where to listen, HOST:PORT split.
        public var listenHost: String
        public var listenPort: Int
        public var connectTimeout: TimeAmount = .seconds(1)
        /// An accepted connection that has not completed its handshake by then is closed, and so
        /// is a dialled one that got no answer.
        public var handshakeTimeout: TimeAmount = .seconds(2)
        /// The largest envelope body read from a peer. A larger one is skipped unread and
        /// answered with `resourceExhausted`; before the handshake it closes the connection.
        public var maxFrameBytes: UInt32 = ClusterProtocol.maxFrameBytes
        /// The most bytes a connection may have waiting to be sent while its peer does not read;
        /// past it the connection is closed. nil: no limit.
        public var maxBufferedBytes: Int? = 64 << 20
        public var backoff = ReconnectBackoff()
        /// Mutual TLS on every connection, both ways; nil speaks plain TCP.
        public var tls: ClusterTLS?
        /// How often the TLS files are read again to pick up rotated certificates.
        public var tlsReloadInterval: Duration = .seconds(5)

        public init(system: String, myself: NodeIdentity, listenHost: String, listenPort: Int) {
            self.system = system
            self.myself = myself
            self.listenHost = listenHost
            self.listenPort = listenPort
        }
    }

    public let configuration: Configuration
    public let actorSystem: TroupeActorSystem
    private let group: any EventLoopGroup
    private let logger: Logger
    private let links = Mutex<[String: PeerLink]>([:])
    /// Connections peers opened to this node, closed when it stops.
    private let accepted = Mutex<[ObjectIdentifier: ClusterConnection]>([:])
    /// Node name → its current incarnation and address, as membership knows it.
    private let addresses = Mutex<[String: NodeIdentity]>([:])
    private let swimReceiver = Mutex<(@Sendable (ClusterSwim, NodeIdentity) -> Void)?>(nil)
    private let jobs: AsyncStream<@Sendable () async -> Void>
    private let jobInput: AsyncStream<@Sendable () async -> Void>.Continuation
    private let bound = Mutex<(any Channel)?>(nil)
    private let callsSent = Counter(label: "troupe_cluster_calls_sent_total")
    private let callsReceived = Counter(label: "troupe_cluster_calls_received_total")
    private let refusedHandshakes = Counter(label: "troupe_cluster_handshakes_refused_total")

    public init(
        configuration: Configuration, actorSystem: TroupeActorSystem, group: any EventLoopGroup, logger: Logger
    ) {
        self.configuration = configuration
        self.actorSystem = actorSystem
        self.group = group
        var logger = logger
        logger[metadataKey: "troupe.node"] = "\(configuration.myself.name)"
        logger[metadataKey: "troupe.system"] = "\(configuration.system)"
        self.logger = logger
        (jobs, jobInput) = AsyncStream.makeStream()
    }

    /// The port the listener is bound to, once ``run()`` has bound it.
    public var boundPort: Int? { bound.withLock { $0?.localAddress?.port } }

    /// One of the transport's event loops, for work that completes outside its connections.
    var eventLoop: any EventLoop { group.any() }

    /// Where SWIM messages that arrive go.
    public func onSwim(_ receiver: @escaping @Sendable (ClusterSwim, NodeIdentity) -> Void) {
        swimReceiver.withLock { $0 = receiver }
    }

    // MARK: Members

    /// Calls to `node`'s name go to its address from now on.
    public func setAddress(of node: NodeIdentity) {
        addresses.withLock { $0[node.name] = node }
    }

    /// `node` is down: every call waiting on it fails with `unavailable` now, and new calls to
    /// its name are refused until it is a member again. A newer incarnation of the same name,
    /// even on the same address, is left alone.
    public func nodeDown(_ node: NodeIdentity) {
        addresses.withLock { addresses in
            if addresses[node.name]?.uid == node.uid { addresses.removeValue(forKey: node.name) }
        }
        let link = links.withLock { $0[node.address] }
        link?.close(
            failingCallsWith: .unavailable("node \(node.name) is down", details: ["node": node.name]), onlyIfPeer: node)
    }

    // MARK: RemoteCallTransport

    public func start(_ call: RemoteCallEnvelope, to node: String, deadline: NIODeadline) -> EventLoopFuture<Data?> {
        guard let address = addresses.withLock({ $0[node]?.address }) else {
            return DeadlineLoop.any.makeFailedFuture(
                TroupeError.unavailable("node \(node) is not a member of the cluster", details: ["node": node]))
        }
        callsSent.increment()
        let link = link(to: address)
        if let connection = link.ready {
            // The common case: one hop onto the connection, whose timer keeps the deadline.
            return connection.start(call, deadline: deadline, expecting: node)
        }
        // Waiting for a connection is bounded by the call's deadline too.
        let connecting = link.connection()
        let promise = connecting.eventLoop.makePromise(of: Data?.self)
        let timer = connecting.eventLoop.scheduleTask(deadline: deadline) {
            promise.fail(TroupeError.deadlineExceeded("no connection to node \(node) within the call's deadline"))
        }
        connecting.flatMap { connection in
            connection.start(call, deadline: deadline, expecting: node)
        }.whenComplete { result in
            timer.cancel()
            promise.completeWith(result)
        }
        return promise.futureResult
    }

    /// Sends a SWIM message to the node at `address`; a failure is silence, which SWIM handles.
    public func send(swim: ClusterSwim, to address: String) {
        link(to: address).connection().whenSuccess { $0.send(swim: swim) }
    }

    /// Connects to `address` (a seed) and returns the identity of the node there.
    public func identify(_ address: String) -> EventLoopFuture<NodeIdentity> {
        link(to: address).connection().flatMapThrowing { connection in
            guard let peer = connection.peer else { throw TroupeError.unavailable("no handshake with \(address)") }
            return peer
        }
    }

    private func link(to address: String) -> PeerLink {
        links.withLock { links in
            if let link = links[address] { return link }
            let link = PeerLink(address: address, backoff: configuration.backoff) { [self] in dial(address) }
            links[address] = link
            return link
        }
    }

    /// Opens a connection to `address` and performs the handshake.
    private func dial(_ address: String) -> EventLoopFuture<ClusterConnection> {
        let loop = group.any()
        guard let (host, port) = Self.split(address) else {
            return loop.makeFailedFuture(TroupeError.invalidArgument("cluster address '\(address)' is not HOST:PORT"))
        }
        let handshake = {
            var handshake = ClusterHandshake()
            handshake.protocolVersion = ClusterProtocol.version
            handshake.system = configuration.system
            handshake.node = ClusterNode(configuration.myself)
            return handshake
        }()
        let promise = loop.makePromise(of: NodeIdentity.self)
        let made = Mutex<ClusterConnection?>(nil)
        let logger = self.logger
        let handshakeTimeout = configuration.handshakeTimeout
        let connected = ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = try install(
                        on: channel, role: .connecting(handshake, promise), logger: logger)
                    made.withLock { $0 = connection }
                    channel.eventLoop.scheduleTask(in: handshakeTimeout) {
                        if connection.peer == nil {
                            connection.close(
                                failingCallsWith: .unavailable("no cluster handshake from \(address) in time"))
                        }
                    }
                }
            }
            .connect(host: host, port: port)
        connected.whenFailure { error in
            promise.fail(TroupeError.unavailable("cannot connect to cluster peer \(address): \(error)"))
        }
        return promise.futureResult.flatMapThrowing { _ in
            guard let connection = made.withLock({ $0 }) else {
                throw TroupeError.internalError("the connection to \(address) was not set up")
            }
            return connection
        }
    }

    /// Sets up a connection a peer opened: the framing with its limit, the handshake the peer
    /// must start with, and the timer that closes the connection if it does not finish in time.
    /// Call on the channel's loop. The fuzz target fuzz/Sources/FuzzClusterEnvelopes feeds it
    /// hostile bytes.
    package func accept(_ channel: any Channel) throws -> ClusterConnection {
        let connection = try install(
            on: channel, role: .accepting(system: configuration.system, myself: configuration.myself), logger: logger)
        let id = ObjectIdentifier(connection)
        accepted.withLock { $0[id] = connection }
        channel.closeFuture.whenComplete { [self] _ in _ = accepted.withLock { $0.removeValue(forKey: id) } }
        channel.eventLoop.scheduleTask(in: configuration.handshakeTimeout) {
            if connection.peer == nil { connection.close() }
        }
        return connection
    }

    private func install(on channel: any Channel, role: ClusterChannelHandler.Role, logger: Logger) throws
        -> ClusterConnection
    {
        let handler = ClusterChannelHandler(
            role: role, inbound: self, maxBufferedBytes: configuration.maxBufferedBytes, logger: logger)
        let connection = ClusterConnection(channel: channel, handler: handler)
        handler.connection = connection
        if let tls = configuration.tls {
            // The contexts current now: a connection opened after a rotation uses the new files.
            let contexts = tls.current
            let accepting: Bool
            switch role {
            case .accepting:
                accepting = true
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: contexts.server))
            case .connecting:
                accepting = false
                try channel.pipeline.syncOperations.addHandler(
                    NIOSSLClientHandler(context: contexts.client, serverHostname: nil))
            }
            try channel.pipeline.syncOperations.addHandler(
                ClusterTLSGate(tls: tls, accepting: accepting, logger: logger))
        }
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(
                LengthPrefixedFrameDecoder(maxFrameBytes: configuration.maxFrameBytes),
                maximumBufferSize: LengthPrefixedFrameDecoder.maximumBufferedBytes(
                    maxFrameBytes: configuration.maxFrameBytes)))
        try channel.pipeline.syncOperations.addHandler(handler)
        // The handler holds the connection weakly; the channel keeps it alive until it closes.
        channel.closeFuture.whenComplete { _ in withExtendedLifetime(connection) {} }
        return connection
    }

    /// Splits `HOST:PORT` (`[v6]:PORT` too).
    public static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    // MARK: ClusterInbound

    public func handle(
        call: RemoteCallEnvelope, deadline: NIODeadline, from peer: NodeIdentity,
        reply: @escaping @Sendable (Result<Data?, TroupeError>) -> Void
    ) {
        callsReceived.increment()
        guard call.recipient.node == configuration.myself.name else {
            reply(
                .failure(
                    .unavailable(
                        "this is node \(configuration.myself.name), not \(call.recipient.node)",
                        details: ["node": call.recipient.node])))
            return
        }
        if actorSystem.receive(call, deadline: deadline, reply: reply) { return }
        let actorSystem = self.actorSystem
        jobInput.yield { reply(await actorSystem.executeRemoteCall(call)) }
    }

    public func handle(swim: ClusterSwim, from peer: NodeIdentity) {
        swimReceiver.withLock { $0 }?(swim, peer)
    }

    // MARK: Service

    /// Listens for peers and runs the calls that need a task until graceful shutdown; then closes
    /// every connection, failing the calls waiting on them with `unavailable`.
    public func run() async throws {
        let logger = self.logger
        let myself = configuration.myself
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { _ = try accept(channel) }
            }
            .bind(host: configuration.listenHost, port: configuration.listenPort).get()
        bound.withLock { $0 = server }
        logger.info(
            "cluster transport listening",
            metadata: [
                "troupe.address": "\(server.localAddress.map { "\($0)" } ?? "?")",
                "troupe.tls": "\(configuration.tls == nil ? "off" : "mutual")",
            ])
        actorSystem.attach(transport: self)
        await withDiscardingTaskGroup { group in
            if let tls = configuration.tls {
                let interval = configuration.tlsReloadInterval
                group.addTask { await cancelWhenGracefulShutdown { await tls.watch(every: interval) } }
            }
            group.addTask {
                try? await gracefulShutdown()
                self.jobInput.finish()
            }
            for await job in jobs {
                group.addTask { await job() }
            }
        }
        actorSystem.attach(transport: nil)
        try? await server.close()
        let all = links.withLock { links -> [PeerLink] in
            defer { links.removeAll() }
            return Array(links.values)
        }
        for link in all { link.close(failingCallsWith: .unavailable("node \(myself.name) is shutting down")) }
        for connection in accepted.withLock({ Array($0.values) }) { connection.close() }
        logger.info("cluster transport stopped")
    }
}

/// The one outbound connection to a peer address: set up on first use, reused, and set up
/// again after it closed, no sooner than the backoff allows.
final class PeerLink: Sendable {
    private enum State {
        case idle
        case connecting(EventLoopFuture<ClusterConnection>)
        case connected(ClusterConnection)
        case waiting(until: NIODeadline, error: TroupeError)
    }

    let address: String
    private let dial: @Sendable () -> EventLoopFuture<ClusterConnection>
    private let state: Mutex<(State, ReconnectBackoff)>

    init(address: String, backoff: ReconnectBackoff, dial: @escaping @Sendable () -> EventLoopFuture<ClusterConnection>)
    {
        self.address = address
        self.dial = dial
        self.state = Mutex((.idle, backoff))
    }

    /// The connection if it is up now.
    var ready: ClusterConnection? {
        state.withLock { state in
            guard case .connected(let connection) = state.0, connection.isActive else { return nil }
            return connection
        }
    }

    /// The connection, or the attempt to make one. Fails at once while backing off.
    func connection() -> EventLoopFuture<ClusterConnection> {
        enum Next {
            case ready(EventLoopFuture<ClusterConnection>)
            case dial
        }
        let next = state.withLock { state -> Next in
            switch state.0 {
            case .connected(let connection) where connection.isActive:
                return .ready(connection.eventLoop.makeSucceededFuture(connection))
            case .connecting(let future):
                return .ready(future)
            case .waiting(let until, let error) where NIODeadline.now() < until:
                return .ready(DeadlineLoop.any.makeFailedFuture(error))
            default:
                return .dial
            }
        }
        switch next {
        case .ready(let future):
            return future
        case .dial:
            let future = dial()
            let started = state.withLock { state -> EventLoopFuture<ClusterConnection> in
                if case .connecting(let other) = state.0 { return other }  // another caller won the race
                state.0 = .connecting(future)
                return future
            }
            guard started === future else {
                future.whenSuccess { $0.close() }
                return started
            }
            future.whenComplete { [self] result in
                switch result {
                case .success(let connection):
                    state.withLock { state in
                        state.0 = .connected(connection)
                        state.1.succeeded()
                    }
                    connection.closeFuture.whenComplete { [self] _ in
                        state.withLock { state in
                            if case .connected(let current) = state.0, current === connection { state.0 = .idle }
                        }
                    }
                case .failure(let error):
                    state.withLock { state in
                        let delay = state.1.failed()
                        state.0 = .waiting(until: .now() + delay, error: TroupeError(wrapping: error))
                    }
                }
            }
            return future
        }
    }

    /// Closes the connection, failing its waiting calls with `error`; with `peer`, only if the
    /// connection leads to that incarnation.
    func close(failingCallsWith error: TroupeError, onlyIfPeer peer: NodeIdentity? = nil) {
        let current = state.withLock { state -> ClusterConnection? in
            guard case .connected(let connection) = state.0 else { return nil }
            if let peer, connection.peer != peer { return nil }
            state.0 = .idle
            return connection
        }
        current?.close(failingCallsWith: error)
    }
}
