import Foundation
public import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
public import TroupeActors
public import TroupeCluster
import TroupeMembership
import TroupePostgres
import TroupeSQLite
import TroupeStateEncryption
import TroupeStore
import TroupeWire
public import UnixSignals

/// A Troupe sidecar: the actor directory, the host server and the state store, run as one
/// service group with graceful shutdown.
///
/// ```swift
/// var configuration = SidecarConfiguration()
/// configuration.system = "tickets"
/// let sidecar = try await Sidecar.start(configuration: configuration, logger: logger)
/// try await sidecar.run()   // until SIGTERM or SIGINT
/// ```
public final class Sidecar: Sendable {
    public let configuration: SidecarConfiguration
    public let directory: ActorDirectory
    let server: HostServer
    /// The cluster transport and membership; nil on a single node (no `cluster-listen`).
    public let cluster: (transport: ClusterTransport, membership: ClusterMembership)?
    let store: any StateStore
    let logger: Logger
    let eventLoops: MultiThreadedEventLoopGroup

    /// Opens the store and prepares the services. Nothing listens until ``run(signals:)``.
    public static func start(configuration: SidecarConfiguration, logger: Logger) async throws -> Sidecar {
        // Validated before anything is opened, so a bad key never leaves a store open behind it.
        let keyring = try configuration.stateKeyring()
        let base: any StateStore
        switch configuration.store {
        case "memory":
            base = MemoryStateStore()
        case "postgres":
            base = try await PostgresStateStore.open(
                configuration: try configuration.postgresConfiguration(), logger: logger)
        default:
            base = try await SQLiteStateStore.open(path: configuration.dataPath, logger: logger)
        }
        // Wrapped also without keys: an encrypted record then fails clearly instead of reaching
        // the host as garbage.
        let store = EncryptingStateStore(wrapping: base, keyring: keyring)
        return Sidecar(configuration: configuration, store: store, logger: logger)
    }

    init(configuration: SidecarConfiguration, store: any StateStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        var directoryConfiguration = ActorDirectory.Configuration(
            system: configuration.system, node: configuration.node)
        directoryConfiguration.defaultIdleTimeout = .milliseconds(Int64(configuration.idleTimeoutMs))
        directoryConfiguration.defaultMailboxCapacity = configuration.mailboxCapacity
        directoryConfiguration.drainTimeout = .milliseconds(Int64(configuration.drainTimeoutMs))
        directory = ActorDirectory(configuration: directoryConfiguration, store: store, logger: logger)
        eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        cluster = Self.makeCluster(configuration, directory: directory, group: eventLoops, logger: logger)
        server = HostServer(
            configuration: configuration, directory: directory, membership: cluster?.membership, group: eventLoops,
            logger: logger)
    }

    private static func makeCluster(
        _ configuration: SidecarConfiguration, directory: ActorDirectory, group: any EventLoopGroup, logger: Logger
    ) -> (ClusterTransport, ClusterMembership)? {
        guard let listen = configuration.clusterListen, let (host, port) = ClusterTransport.split(listen) else {
            return nil
        }
        let advertise = configuration.clusterAdvertise ?? listen
        // The incarnation grows with every start, so members take a restarted node for the newer
        // one (SWIM keeps the higher); microseconds of wall-clock time at start.
        let incarnation = UInt64(Date().timeIntervalSince1970 * 1_000_000)
        let myself = NodeIdentity(name: configuration.node, address: advertise, uid: incarnation)
        let transport = ClusterTransport(
            configuration: .init(system: configuration.system, myself: myself, listenHost: host, listenPort: port),
            actorSystem: directory.actorSystem, group: group, logger: logger)
        var membershipConfiguration = ClusterMembership.Configuration()
        membershipConfiguration.seeds = configuration.clusterSeeds
        membershipConfiguration.dnsName = configuration.clusterDNS
        membershipConfiguration.dnsPort = ClusterTransport.split(advertise)?.1 ?? port
        let membership = ClusterMembership(
            configuration: membershipConfiguration, transport: transport,
            localTypes: { Set(directory.registeredTypes.map(\.name)) }, logger: logger)
        directory.route(with: membership)
        return (transport, membership)
    }

    /// The TCP port hosts can connect to, once ``run(signals:)`` has bound it (useful with port 0).
    public var tcpPort: Int? { server.tcpPort }

    /// Runs until a signal in `signals` arrives (or the task is cancelled), then drains: new calls
    /// are refused, queued ones finish, hosts are told Goodbye, and the store is closed.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        let group = ServiceGroup(
            configuration: .init(
                // Shut down in reverse order: hosts, then the directory drains, then the node
                // leaves the cluster, then the transport closes.
                services: (cluster.map { [.init(service: $0.transport), .init(service: $0.membership)] } ?? [])
                    + [.init(service: server), .init(service: directory)],
                gracefulShutdownSignals: signals,
                cancellationSignals: [],
                logger: logger))
        do {
            try await group.run()
        } catch {
            try? await store.close()
            try? await eventLoops.shutdownGracefully()
            throw error
        }
        try await store.close()
        try await eventLoops.shutdownGracefully()
        logger.info("sidecar stopped")
    }
}
