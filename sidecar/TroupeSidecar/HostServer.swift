import Foundation
package import Logging
package import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
package import TroupeActors
import TroupeCluster
package import TroupeWire

/// Accepts host and client connections on the Unix socket (and TCP if configured).
///
/// Work that a connection starts but cannot finish on its event loop (such as spawning actors,
/// which waits for the store) runs in this service's task group, so it ends with the service.
final class HostServer: Service {
    private let configuration: SidecarConfiguration
    private let directory: ActorDirectory
    private let membership: ClusterMembership?
    private let logger: Logger
    private let group: any EventLoopGroup
    private let jobs: AsyncStream<@Sendable () async -> Void>
    private let jobInput: AsyncStream<@Sendable () async -> Void>.Continuation
    private let sessions = Mutex<[ObjectIdentifier: HostSession]>([:])
    private let listening = Mutex<[any Channel]>([])
    private let bound = Mutex<Bool>(false)

    init(
        configuration: SidecarConfiguration, directory: ActorDirectory, membership: ClusterMembership?,
        group: any EventLoopGroup, logger: Logger
    ) {
        self.configuration = configuration
        self.directory = directory
        self.membership = membership
        self.group = group
        self.logger = logger
        (jobs, jobInput) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
    }

    /// Number of open connections.
    var connectionCount: Int { sessions.withLock { $0.count } }

    func run() async throws {
        try await bind()
        await withDiscardingTaskGroup { group in
            group.addTask {
                try? await gracefulShutdown()
                await self.shutdown()
            }
            for await job in jobs {
                group.addTask { await job() }
            }
        }
        logger.info("host server stopped")
    }

    private func bind() async throws {
        try SocketDirectory.prepare(forSocket: configuration.socket)
        var channels: [any Channel] = []
        let unix = try await bootstrap(requiredSecret: nil).bind(
            unixDomainSocketPath: SocketDirectory.staging(for: configuration.socket), cleanupExistingSocketFile: true
        ).get()
        channels.append(unix)
        do { try SocketDirectory.publish(socket: configuration.socket) } catch {
            try? await unix.close()
            throw error
        }
        logger.info("listening for hosts", metadata: ["troupe.endpoint": "unix:\(configuration.socket)"])
        if let tcp = configuration.listenTCP, case .tcp(let host, let port) = try Endpoint(parsing: "tcp://" + tcp) {
            if configuration.hostSecret == nil {
                logger.warning(
                    "the TCP host listener has no host-secret: any process that can reach the loopback address may register and invoke",
                    metadata: ["troupe.endpoint": "tcp://\(tcp)"])
            }
            let channel = try await bootstrap(requiredSecret: configuration.hostSecret.map(SharedSecret.init))
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port).get()
            channels.append(channel)
            // The bound port, which differs from the configured one when that is 0.
            logger.info(
                "listening for hosts",
                metadata: ["troupe.endpoint": "tcp://\(host):\(channel.localAddress?.port.map(String.init) ?? "?")"])
        }
        listening.withLock { $0 = channels }
    }

    /// The TCP port actually bound (useful when configured with port 0).
    var tcpPort: Int? {
        listening.withLock { $0.compactMap { $0.localAddress?.port }.first { $0 > 0 } }
    }

    /// - Parameter requiredSecret: the secret each Hello must carry on this listener; nil: none.
    private func bootstrap(requiredSecret: SharedSecret?) -> ServerBootstrap {
        ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let session = try Self.installSession(
                        on: channel, configuration: configuration, directory: directory, membership: membership,
                        requiredSecret: requiredSecret, jobs: jobInput, logger: logger)
                    let id = ObjectIdentifier(session)
                    sessions.withLock { $0[id] = session }
                    channel.closeFuture.whenComplete { [self] _ in
                        _ = sessions.withLock { $0.removeValue(forKey: id) }
                    }
                }
            }
    }

    /// Sets up the host protocol on a freshly accepted `channel`: the framing with its limits,
    /// the session that answers the peer, and the handshake timer. Call on the channel's loop.
    static func installSession(
        on channel: any Channel, configuration: SidecarConfiguration, directory: ActorDirectory,
        membership: ClusterMembership?, requiredSecret: SharedSecret?,
        jobs: AsyncStream<@Sendable () async -> Void>.Continuation, logger: Logger
    ) throws -> HostSession {
        var sessionLogger = logger
        sessionLogger[metadataKey: "troupe.connection"] = "\(channel.remoteAddress.map { "\($0)" } ?? "unix")"
        let session = HostSession(
            configuration: configuration, directory: directory, membership: membership,
            requiredSecret: requiredSecret, eventLoop: channel.eventLoop, jobs: jobs, logger: sessionLogger)
        let connection = try PeerConnection.install(
            on: channel, side: .acceptor, maxFrameBytes: configuration.maxFrameBytes,
            maxBufferedBytes: Int(configuration.maxConnectionBufferBytes), delegate: session, logger: sessionLogger)
        session.attach(connection)
        return session
    }

    /// Stops accepting, says Goodbye to every peer, and closes what is still open after the drain timeout.
    private func shutdown() async {
        let channels = listening.withLock { $0 }
        for channel in channels { try? await channel.close() }
        let open = sessions.withLock { Array($0.values) }
        for session in open {
            session.sayGoodbye(reason: "sidecar shutting down", drainTimeoutMs: configuration.drainTimeoutMs)
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(min(configuration.drainTimeoutMs, 2000)))
        while connectionCount > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for session in sessions.withLock({ Array($0.values) }) { session.connection?.close() }
        try? FileManager.default.removeItem(atPath: configuration.socket)
        jobInput.finish()
    }
}

/// Host connections set up exactly as ``HostServer`` sets up the ones it accepts, on a channel
/// the caller owns: what the fuzz target fuzz/Sources/FuzzHostFrames feeds hostile bytes to.
package enum HostConnectionSetup {
    /// Installs the framing, its limits, a session and its handshake timer on `channel` (a
    /// single node: no cluster). Work the session hands off (spawns) goes to `jobs`.
    /// - Returns: the connection, or nil when it closed during setup.
    package static func serve(
        on channel: any Channel, configuration: SidecarConfiguration, directory: ActorDirectory, hostSecret: String?,
        jobs: AsyncStream<@Sendable () async -> Void>.Continuation, logger: Logger
    ) throws -> PeerConnection? {
        let session = try HostServer.installSession(
            on: channel, configuration: configuration, directory: directory, membership: nil,
            requiredSecret: hostSecret.map(SharedSecret.init), jobs: jobs, logger: logger)
        return session.connection
    }
}
