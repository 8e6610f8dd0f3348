public import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
public import TroupeActors
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
        server = HostServer(configuration: configuration, directory: directory, group: eventLoops, logger: logger)
    }

    /// The TCP port hosts can connect to, once ``run(signals:)`` has bound it (useful with port 0).
    public var tcpPort: Int? { server.tcpPort }

    /// Runs until a signal in `signals` arrives (or the task is cancelled), then drains: new calls
    /// are refused, queued ones finish, hosts are told Goodbye, and the store is closed.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server), .init(service: directory)],
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
