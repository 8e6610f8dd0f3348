import ArgumentParser
import Foundation
import Logging
import TroupeSidecar

/// `troupe-sidecar`: runs one Troupe sidecar until SIGTERM or SIGINT.
@main
struct TroupeSidecarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "troupe-sidecar",
        abstract: "Runs a Troupe sidecar next to an actor host.",
        discussion: """
            Settings come from defaults, then the YAML file (--config or TROUPE_CONFIG), then TROUPE_* \
            environment variables, then these flags. See docs/configuration.md.
            """)

    @Option(help: "YAML configuration file.") var config: String?
    @Option(help: "ActorSystem name.") var system: String?
    @Option(help: "Node name in the cluster.") var node: String?
    @Option(help: "Unix socket path for hosts.") var socket: String?
    @Option(name: .customLong("listen-tcp"), help: "TCP listener for hosts, HOST:PORT.") var listenTCP: String?
    @Option(help: "State store: sqlite or memory.") var store: String?
    @Option(name: .customLong("data-path"), help: "SQLite state file.") var dataPath: String?
    @Option(name: .customLong("max-frame-bytes"), help: "Largest accepted frame body.") var maxFrameBytes: String?
    @Option(name: .customLong("default-timeout-ms"), help: "Deadline of calls that carry none.") var defaultTimeoutMs:
        String?
    @Option(name: .customLong("mailbox-capacity"), help: "Calls that may wait per actor.") var mailboxCapacity: String?
    @Option(name: .customLong("idle-timeout-ms"), help: "Deactivate actors idle this long.") var idleTimeoutMs: String?
    @Option(name: .customLong("heartbeat-interval-ms"), help: "Host ping interval.") var heartbeatIntervalMs: String?
    @Option(name: .customLong("handshake-timeout-ms"), help: "Time a connection has to say Hello.")
    var handshakeTimeoutMs: String?
    @Option(name: .customLong("drain-timeout-ms"), help: "Graceful shutdown wait for calls in flight.")
    var drainTimeoutMs: String?
    @Option(name: .customLong("max-concurrent-requests"), help: "Requests one connection may have outstanding.")
    var maxConcurrentRequests: String?
    @Option(name: .customLong("event-loop-threads"), help: "Threads serving connections and running actors.")
    var eventLoopThreads: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.") var logLevel:
        String?
    @Option(name: .customLong("cluster-listen"), help: "Cluster listener for other sidecars, HOST:PORT.")
    var clusterListen: String?
    @Option(name: .customLong("cluster-advertise"), help: "Address peers reach this sidecar at, HOST:PORT.")
    var clusterAdvertise: String?
    @Option(name: .customLong("cluster-seeds"), help: "Comma-separated HOST:PORT of cluster seeds.")
    var clusterSeeds: String?
    @Option(name: .customLong("cluster-dns"), help: "DNS name whose A records are cluster peers.")
    var clusterDNS: String?

    /// Every flag paired with the setting key it sets; a test checks this covers the whole table.
    var flags: [(String, String?)] {
        [
            ("system", system), ("node", node), ("socket", socket), ("listen-tcp", listenTCP), ("store", store),
            ("data-path", dataPath), ("max-frame-bytes", maxFrameBytes), ("default-timeout-ms", defaultTimeoutMs),
            ("mailbox-capacity", mailboxCapacity), ("idle-timeout-ms", idleTimeoutMs),
            ("heartbeat-interval-ms", heartbeatIntervalMs), ("handshake-timeout-ms", handshakeTimeoutMs),
            ("drain-timeout-ms", drainTimeoutMs), ("max-concurrent-requests", maxConcurrentRequests),
            ("event-loop-threads", eventLoopThreads), ("log-level", logLevel), ("cluster-listen", clusterListen),
            ("cluster-advertise", clusterAdvertise), ("cluster-seeds", clusterSeeds), ("cluster-dns", clusterDNS),
        ]
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var configuration = SidecarConfiguration()
        do {
            if let file = config ?? environment["TROUPE_CONFIG"] { try configuration.apply(yamlFile: file) }
            try configuration.apply(environment: environment)
            for (key, value) in flags {
                if let value { try configuration.set(key, to: value) }
            }
        } catch {
            throw ValidationError(error.message)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "troupe.sidecar")
        logger[metadataKey: "troupe.system"] = "\(configuration.system)"
        logger[metadataKey: "troupe.node"] = "\(configuration.node)"
        let sidecar = try await Sidecar.start(configuration: configuration, logger: logger)
        logger.info("sidecar starting", metadata: ["troupe.store": "\(sidecar.directory.store.description)"])
        try await sidecar.run()
    }
}
