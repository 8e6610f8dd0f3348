import Foundation
public import Logging
import NIOCore
import NIOPosix
public import Prometheus
public import ServiceLifecycle
import Synchronization
public import Tracing
public import TroupeActors
public import TroupeCluster
import TroupeMembership
import TroupePostgres
import TroupeBridge
import TroupeNATS
import TroupeSQLite
import TroupeStateEncryption
import TroupeStore
import TroupeWire
public import UnixSignals

/// A Troupe sidecar: the actor directory, the host server, the state store and the admin HTTP
/// endpoint, run as one service group with graceful shutdown.
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
    let admin: AdminServer?
    let logger: Logger
    let eventLoops: MultiThreadedEventLoopGroup
    private let draining = DrainFlag()
    /// Calls to and from other ActorSystems, when `nats-url` is set.
    let bridge: NATSBridge?
    /// Fires reminders and delayed calls; nil for a store that keeps none.
    let reminderScheduler: ReminderScheduler?

    /// Opens the store, connects to NATS when `nats-url` is set (and subscribes the bridge), and
    /// prepares the services. No host can connect until ``run(signals:alongside:)``. `/metrics` serves
    /// `metrics`: the registry the process bootstrapped swift-metrics with. With a `tracer`, every
    /// hop of every call is a span (docs/observability.md); without one, trace headers pass
    /// through unchanged.
    public static func start(
        configuration: SidecarConfiguration, logger: Logger,
        metrics: PrometheusCollectorRegistry = PrometheusMetricsFactory.defaultRegistry,
        tracer: (any Tracer)? = nil
    ) async throws -> Sidecar {
        // Validated before anything is opened, so a bad key never leaves a store open behind it.
        try configuration.check()
        try SocketDirectory.prepare(forSocket: configuration.socket)
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
        let store = EncryptingStateStore(wrapping: MeteredStateStore(wrapping: base), keyring: keyring)
        // Reminders go to the same database, in their own table, unwrapped: they hold calls, not state.
        let reminders = base as? any ReminderStore
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
                configuration: configuration, store: store, reminders: reminders, nats: nats, eventLoops: eventLoops,
                metrics: metrics, tracer: tracer, logger: logger)
            // Before hosts can connect: a sidecar that answers on its socket is reachable over NATS too.
            try await sidecar.bridge?.startServing()
            return sidecar
        } catch {
            await nats?.close()
            try? await store.close()
            try? await eventLoops.shutdownGracefully()
            throw error
        }
    }

    init(
        configuration: SidecarConfiguration, store: any StateStore, reminders: (any ReminderStore)?,
        nats: NATSConnection?, eventLoops: MultiThreadedEventLoopGroup, metrics: PrometheusCollectorRegistry,
        tracer: (any Tracer)?,
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        var directoryConfiguration = ActorDirectory.Configuration(
            system: configuration.system, node: configuration.node)
        directoryConfiguration.defaultIdleTimeout = .milliseconds(Int64(configuration.idleTimeoutMs))
        directoryConfiguration.defaultMailboxCapacity = configuration.mailboxCapacity
        directoryConfiguration.drainTimeout = .milliseconds(Int64(configuration.drainTimeoutMs))
        directoryConfiguration.broadcastTimeout = .milliseconds(Int64(configuration.defaultTimeoutMs))
        directoryConfiguration.sideEffectTimeout = .milliseconds(Int64(configuration.defaultTimeoutMs))
        // With one event loop (the default) that is the loop of every host connection.
        directoryConfiguration.timerLoop = eventLoops.any()
        directoryConfiguration.tracer = tracer
        directoryConfiguration.maxForwardHops = configuration.maxForwardHops
        directoryConfiguration.maxCallDepth = Int(configuration.maxCallDepth)
        directory = ActorDirectory(
            configuration: directoryConfiguration, store: store, reminders: reminders, logger: logger)
        if let reminders {
            var schedulerConfiguration = ReminderScheduler.Configuration()
            schedulerConfiguration.pollInterval = .milliseconds(Int64(configuration.reminderPollMs))
            schedulerConfiguration.lease = .milliseconds(Int64(configuration.reminderLeaseMs))
            schedulerConfiguration.batchSize = Int(configuration.reminderBatch)
            reminderScheduler = ReminderScheduler(
                configuration: schedulerConfiguration, store: reminders, directory: directory, logger: logger)
        } else {
            reminderScheduler = nil
        }
        self.eventLoops = eventLoops
        cluster = try Self.makeCluster(configuration, directory: directory, group: eventLoops, logger: logger)
        server = HostServer(
            configuration: configuration, directory: directory, membership: cluster?.membership, group: eventLoops,
            logger: logger)
        if let listen = configuration.adminListen {
            admin = try AdminServer(
                listen: listen, token: configuration.adminToken,
                checks: Self.readinessChecks(
                    directory: directory, store: store, draining: draining, membership: cluster?.membership),
                registry: metrics,
                api: AdminAPI(
                    view: SidecarView(configuration: configuration, directory: directory, membership: cluster?.membership),
                    defaultTimeoutMs: configuration.defaultTimeoutMs, maxBodyBytes: Int(configuration.maxFrameBytes),
                    eventLoop: eventLoops.next()),
                group: eventLoops, logger: logger)
        } else {
            admin = nil
        }
        if let nats {
            let bridge = try NATSBridge(
                configuration: .init(
                    system: configuration.system, node: configuration.node,
                    maxCallBytes: Int(configuration.maxFrameBytes),
                    drainTimeout: .milliseconds(Int64(configuration.drainTimeoutMs)),
                    policy: try configuration.bridgePolicy(), metadataLimits: configuration.metadataLimits),
                connection: nats, directory: directory, logger: logger)
            directory.attach(bridge: bridge)
            self.bridge = bridge
        } else {
            bridge = nil
        }
    }

    private static func makeCluster(
        _ configuration: SidecarConfiguration, directory: ActorDirectory, group: any EventLoopGroup, logger: Logger
    ) throws(TroupeError) -> (ClusterTransport, ClusterMembership)? {
        let tlsFiles = try configuration.clusterTLSFiles()
        guard let listen = configuration.clusterListen, let (host, port) = ClusterTransport.split(listen) else {
            return nil
        }
        let advertise = configuration.clusterAdvertise ?? listen
        // The incarnation grows with every start, so members take a restarted node for the newer
        // one (SWIM keeps the higher); microseconds of wall-clock time at start.
        let incarnation = UInt64(Date().timeIntervalSince1970 * 1_000_000)
        let myself = NodeIdentity(name: configuration.node, address: advertise, uid: incarnation)
        var transportConfiguration = ClusterTransport.Configuration(
            system: configuration.system, myself: myself, listenHost: host, listenPort: port)
        if let tlsFiles {
            var tlsLogger = logger
            tlsLogger[metadataKey: "troupe.node"] = "\(configuration.node)"
            tlsLogger[metadataKey: "troupe.system"] = "\(configuration.system)"
            transportConfiguration.tls = try ClusterTLS(
                files: tlsFiles, system: configuration.system, logger: tlsLogger)
            transportConfiguration.tlsReloadInterval = .milliseconds(Int(configuration.clusterTLSReloadMs))
        }
        transportConfiguration.maxFrameBytes = configuration.clusterMaxFrameBytes
        transportConfiguration.maxBufferedBytes = Int(configuration.maxConnectionBufferBytes)
        transportConfiguration.handshakeTimeout = .milliseconds(Int64(configuration.handshakeTimeoutMs))
        let transport = ClusterTransport(
            configuration: transportConfiguration, actorSystem: directory.actorSystem, group: group, logger: logger)
        var membershipConfiguration = ClusterMembership.Configuration()
        membershipConfiguration.seeds = configuration.clusterSeeds
        membershipConfiguration.swim = configuration.clusterFailureDetector
        membershipConfiguration.dnsName = configuration.clusterDNS
        membershipConfiguration.dnsPort = ClusterTransport.split(advertise)?.1 ?? port
        let membership = ClusterMembership(
            configuration: membershipConfiguration, transport: transport,
            localTypes: { Set(directory.registeredTypes.map(\.name)) },
            moved: { _ in directory.placementChanged() }, logger: logger)
        directory.route(with: membership)
        return (transport, membership)
    }

    /// What `/readyz` requires: not shutting down, a host registered, the store answering a read,
    /// and, in a cluster, this node up among the members.
    private static func readinessChecks(
        directory: ActorDirectory, store: any StateStore, draining: DrainFlag, membership: ClusterMembership?
    ) -> [ReadinessCheck] {
        let probeKey = ActorKey(system: directory.configuration.system, name: "troupe.readyz")
        var cluster: [ReadinessCheck] = []
        if let membership {
            cluster.append(
                ReadinessCheck(name: "cluster") {
                    let status = membership.status
                    return status == .up ? nil : "this node is \(status) in the cluster"
                })
        }
        return [
            ReadinessCheck(name: "draining") {
                draining.isSet ? "shutting down: calls in flight are finishing" : nil
            },
            ReadinessCheck(name: "host") {
                directory.registeredTypes.isEmpty ? "no host has registered an actor type" : nil
            },
            ReadinessCheck(name: "store") {
                do {
                    _ = try await store.read(probeKey)
                    return nil
                } catch {
                    return "\(store.description) does not answer: \(error)"
                }
            },
        ] + cluster
    }

    /// The port of the admin HTTP endpoint once ``run(signals:alongside:)`` has bound it (useful with port 0).
    public var adminPort: Int? { admin?.boundPort }

    /// The TCP port hosts can connect to, once ``run(signals:alongside:)`` has bound it (useful with port 0).
    public var tcpPort: Int? { server.tcpPort }

    /// Runs until a signal in `signals` arrives (or the task is cancelled), then drains: new calls
    /// are refused, queued ones finish, hosts are told Goodbye, and the store is closed.
    ///
    /// - Parameter alongside: services that run as long as the sidecar and stop after it, such as
    ///   the span exporter (``TraceExport``), which then sends the spans of the drain too.
    public func run(signals: [UnixSignal] = [.sigterm, .sigint], alongside: [any Service] = []) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = alongside.map { .init(service: $0) }
        if let admin { services.append(.init(service: admin)) }
        if let cluster { services += [.init(service: cluster.transport), .init(service: cluster.membership)] }
        services += [.init(service: server), .init(service: directory)]
        // Stopped before the directory drains, so no reminder fires into a draining directory.
        if let reminderScheduler { services.append(.init(service: reminderScheduler)) }
        if let bridge { services.append(.init(service: bridge)) }
        services.append(.init(service: DrainMarker(flag: draining, membership: cluster?.membership)))
        let group = ServiceGroup(
            configuration: .init(
                // Stopped in reverse order: the drain marker first (so /readyz fails at once and
                // the other members see this node leaving), then
                // the bridge stops taking calls from other systems, the directory drains calls,
                // hosts are let go, the node leaves the cluster, the transport closes, and the
                // admin endpoint goes last, so probes are answered throughout.
                services: services,
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

/// Set once graceful shutdown has begun.
final class DrainFlag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

/// Waits for graceful shutdown and sets the flag, so readiness fails while the rest drains, and
/// announces the node as leaving to the cluster.
private struct DrainMarker: Service {
    let flag: DrainFlag
    let membership: ClusterMembership?

    func run() async throws {
        try? await gracefulShutdown()
        flag.set()
        membership?.beginLeaving()
    }
}
