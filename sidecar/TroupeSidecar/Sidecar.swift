public import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
public import TroupeActors
import TroupeBridge
import TroupeNATS
import TroupeSQLite
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
    /// Calls to and from other ActorSystems, when `nats-url` is set.
    let bridge: NATSBridge?

    /// Opens the store, connects to NATS when `nats-url` is set (and subscribes the bridge), and
    /// prepares the services. No host can connect until ``run(signals:)``.
    public static func start(configuration: SidecarConfiguration, logger: Logger) async throws -> Sidecar {
        let store: any StateStore
        switch configuration.store {
        case "memory":
            store = MemoryStateStore()
        default:
            store = try await SQLiteStateStore.open(path: configuration.dataPath, logger: logger)
        }
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        var nats: NATSConnection?
        if let options = configuration.natsOptions {
            do {
                try BridgeSubjects.validate(system: configuration.system)
                // Request timers on the sidecar's own loop: arming one from a call never wakes another thread.
                nats = try await NATSConnection.connect(options, logger: logger, timerLoop: eventLoops.next())
            } catch {
                try? await store.close()
                try? await eventLoops.shutdownGracefully()
                throw TroupeError(error.code, "nats-url: \(error.message)", details: error.details)
            }
        }
        do {
            let sidecar = try Sidecar(
                configuration: configuration, store: store, nats: nats, eventLoops: eventLoops, logger: logger)
            // Before hosts can connect: a sidecar that answers on its socket is reachable over NATS too.
            try await sidecar.bridge?.startServing()
            return sidecar
        } catch {
            nats?.close()
            try? await store.close()
            try? await eventLoops.shutdownGracefully()
            throw error
        }
    }

    init(
        configuration: SidecarConfiguration, store: any StateStore, nats: NATSConnection?,
        eventLoops: MultiThreadedEventLoopGroup, logger: Logger
    ) throws(TroupeError) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        var directoryConfiguration = ActorDirectory.Configuration(
            system: configuration.system, node: configuration.node)
        directoryConfiguration.defaultIdleTimeout = .milliseconds(Int64(configuration.idleTimeoutMs))
        directoryConfiguration.defaultMailboxCapacity = configuration.mailboxCapacity
        directoryConfiguration.drainTimeout = .milliseconds(Int64(configuration.drainTimeoutMs))
        directoryConfiguration.broadcastTimeout = .milliseconds(Int64(configuration.defaultTimeoutMs))
        directory = ActorDirectory(configuration: directoryConfiguration, store: store, logger: logger)
        self.eventLoops = eventLoops
        server = HostServer(configuration: configuration, directory: directory, group: eventLoops, logger: logger)
        if let nats {
            let bridge = try NATSBridge(
                configuration: .init(
                    system: configuration.system, node: configuration.node,
                    maxCallBytes: Int(configuration.maxFrameBytes),
                    drainTimeout: .milliseconds(Int64(configuration.drainTimeoutMs))),
                connection: nats, directory: directory, timerLoop: eventLoops.next(), logger: logger)
            directory.attach(bridge: bridge)
            self.bridge = bridge
        } else {
            bridge = nil
        }
    }

    /// The TCP port hosts can connect to, once ``run(signals:)`` has bound it (useful with port 0).
    public var tcpPort: Int? { server.tcpPort }

    /// Runs until a signal in `signals` arrives (or the task is cancelled), then drains: new calls
    /// are refused, queued ones finish, hosts are told Goodbye, and the store is closed.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        let group = ServiceGroup(
            configuration: .init(
                // Shut down in reverse: the bridge stops taking calls first, then the directory drains.
                services: [.init(service: server), .init(service: directory)]
                    + (bridge.map { [.init(service: $0)] } ?? []),
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
