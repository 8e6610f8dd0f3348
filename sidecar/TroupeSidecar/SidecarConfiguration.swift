import Foundation
public import TroupeActors
public import TroupeBridge
public import TroupeCluster
public import TroupeMembership
public import TroupeNATS
public import TroupePostgres
public import TroupeStateEncryption
public import TroupeWire
import Yams

/// Everything a sidecar can be told. Each setting has a default and can be set, from lowest to
/// highest precedence, in a YAML file, by a `TROUPE_*` environment variable, or by a flag.
/// docs/configuration.md lists them; ``settings`` is the single table all three sources use.
///
/// ```swift
/// var config = SidecarConfiguration()
/// try config.apply(yamlFile: "/etc/troupe/sidecar.yaml")
/// try config.apply(environment: ProcessInfo.processInfo.environment)
/// try config.set("socket", to: "/run/troupe/troupe.sock")
/// ```
public struct SidecarConfiguration: Sendable, Equatable {
    /// The ActorSystem this sidecar belongs to.
    public var system = "default"
    /// This sidecar's name in the cluster.
    public var node = ProcessInfo.processInfo.hostName
    /// The Unix socket hosts connect to.
    public var socket = "/tmp/troupe/troupe.sock"
    /// Optional TCP listener for hosts, `HOST:PORT`.
    public var listenTCP: String?
    /// The secret every Hello on the TCP listener must carry; nil: none (allowed only on a
    /// loopback listener). Never logged.
    public var hostSecret: String?
    /// `sqlite` (the embedded default), `postgres` (shared by a cluster) or `memory` (nothing
    /// survives a restart).
    public var store = "sqlite"
    /// The SQLite file.
    public var dataPath = "troupe-data/state.sqlite"
    /// The Postgres store's connection: a URL, then discrete settings that override its parts.
    public var postgres = PostgresSettings()
    /// `id:base64key` entries of AES-256 keys for state encryption at rest; empty for none.
    public var encryptionKeys = ""
    /// The id of the key new writes use; may stay empty when there is one key.
    public var encryptionActiveKey = ""
    public var maxFrameBytes = HostProtocol.defaultMaxFrameBytes
    public var defaultTimeoutMs: UInt32 = 30_000
    public var mailboxCapacity = 1024
    public var idleTimeoutMs: UInt32 = 300_000
    public var heartbeatIntervalMs: UInt32 = 5_000
    public var handshakeTimeoutMs: UInt32 = 5_000
    public var drainTimeoutMs: UInt32 = 10_000
    /// How often the reminder scheduler asks the store for due reminders and delayed calls.
    public var reminderPollMs: UInt32 = 250
    /// How long a claimed reminder is reserved for this sidecar before another may fire it.
    public var reminderLeaseMs: UInt32 = 30_000
    /// Due reminders claimed per statement.
    public var reminderBatch: UInt32 = 256
    public var maxConcurrentRequests: UInt32 = 4096
    /// Forwards, pipes, side effects and broadcast effects one call chain may go through.
    public var maxForwardHops: UInt32 = 32
    /// Actors one call chain may pass through, nested calls and effects included.
    public var maxCallDepth: UInt32 = 64
    /// Bytes one host or cluster connection may have waiting to be sent before it is closed: a
    /// peer that asks without reading the answers cannot grow the sidecar's memory without bound.
    public var maxConnectionBufferBytes: UInt32 = 64 << 20
    /// The most metadata entries one invocation or broadcast may carry.
    public var maxMetadataEntries: UInt32 = UInt32(MetadataLimits.defaultMaxEntries)
    /// The most bytes of metadata keys and values one invocation or broadcast may carry.
    public var maxMetadataBytes: UInt32 = UInt32(MetadataLimits.defaultMaxBytes)
    /// Largest cluster envelope body accepted from another sidecar.
    public var clusterMaxFrameBytes: UInt32 = 16 << 20
    /// Threads serving connections and running actors. One keeps every call on one thread.
    public var eventLoopThreads = 1
    public var logLevel = "info"
    /// The admin HTTP endpoint (`/healthz`, `/readyz`, `/metrics`), `HOST:PORT`; nil: none.
    public var adminListen: String? = "127.0.0.1:9090"
    /// The bearer token `/metrics` requires; nil: none. Without one, `/metrics` is served only on
    /// a loopback admin address. Never logged.
    public var adminToken: String?
    /// NATS servers of the bridge to other ActorSystems; empty means no bridge.
    public var natsServers: [String] = []
    public var natsUser: String?
    public var natsPassword: String?
    public var natsToken: String?
    public var natsCredentialsFile: String?
    public var natsTLSCAFile: String?
    public var natsTLSCertificateFile: String?
    public var natsTLSKeyFile: String?
    public var natsReconnectWaitMs: UInt32 = 500
    /// How long one attempt to connect to a NATS server may take, handshake included.
    public var natsConnectTimeoutMs: UInt32 = 2_000
    /// Which calls other systems may make into this one, `CALLER:TYPE/ACTION,...;...`; with
    /// ``bridgeAllowBroadcasts``, nil for both allows everything (``bridgePolicy()``).
    public var bridgeAllowCalls: String?
    /// On which channels other systems may broadcast to this one, `CALLER:CHANNEL,...;...`.
    public var bridgeAllowBroadcasts: String?
    /// Cluster listener for the other sidecars of the system, `HOST:PORT`; nil runs a single node.
    public var clusterListen: String?
    /// The address other sidecars reach this one at; `clusterListen` when nil.
    public var clusterAdvertise: String?
    /// Seed addresses of the cluster.
    public var clusterSeeds: [String] = []
    /// A DNS name whose A records are cluster peers (a headless Service), on the cluster port.
    public var clusterDNS: String?
    /// Mutual TLS between the sidecars: this node's PEM certificate, its key and the CA every
    /// node's certificate must chain to; all three or none (``clusterTLSFiles()``).
    public var clusterTLSCertificateFile: String?
    public var clusterTLSKeyFile: String?
    public var clusterTLSCAFile: String?
    /// How often the cluster TLS files are read again, to pick up rotated certificates.
    public var clusterTLSReloadMs: UInt32 = 5000
    /// The failure detector's probe interval and timeouts (docs/cluster.md); the
    /// `cluster-probe-interval-ms`, `cluster-ping-timeout-ms`, `cluster-indirect-timeout-ms` and
    /// `cluster-suspicion-timeout-ms` settings.
    public var clusterFailureDetector = SWIM.Settings()
    /// The OpenTelemetry collector spans are exported to over OTLP, `http(s)://HOST:PORT`; nil: no
    /// spans are made and trace headers pass through unchanged (docs/observability.md).
    public var otlpEndpoint: String?
    /// `http/protobuf`, `http/json` or `grpc`.
    public var otlpProtocol = "http/protobuf"
    /// The fraction of new traces recorded, 0 to 1. A call that arrives with a trace follows its
    /// caller's sampling decision.
    public var traceSampleRatio = 1.0

    public init() {}

    /// The metadata limits of invocations and broadcasts (`max-metadata-entries`, `max-metadata-bytes`).
    public var metadataLimits: MetadataLimits {
        MetadataLimits(maxEntries: Int(maxMetadataEntries), maxBytes: Int(maxMetadataBytes))
    }

    /// How to reach NATS, or nil when no bridge is configured.
    public var natsOptions: NATSOptions? {
        guard !natsServers.isEmpty else { return nil }
        var options = NATSOptions(servers: natsServers)
        options.name = "troupe-sidecar \(system)/\(node)"
        options.user = natsUser
        options.password = natsPassword
        options.token = natsToken
        options.credentialsFile = natsCredentialsFile
        options.tlsCAFile = natsTLSCAFile
        options.tlsCertificateFile = natsTLSCertificateFile
        options.tlsKeyFile = natsTLSKeyFile
        options.reconnectWait = .milliseconds(Int64(natsReconnectWaitMs))
        options.connectTimeout = .milliseconds(Int64(natsConnectTimeoutMs))
        return options
    }

    /// One configurable setting: its YAML key, environment variable and flag are derived from `key`.
    public struct Setting: Sendable {
        public let key: String
        public let summary: String
        let apply: @Sendable (inout SidecarConfiguration, String) throws(TroupeError) -> Void

        /// `TROUPE_` + the key in upper case, `-` as `_`.
        public var environmentVariable: String { "TROUPE_" + key.uppercased().replacingOccurrences(of: "-", with: "_") }
        public var flag: String { "--" + key }
    }

    /// The table of settings, in documentation order.
    public static let settings: [Setting] = [
        Setting(key: "system", summary: "ActorSystem name") { c, v throws(TroupeError) in
            c.system = try nonEmpty(v, "system")
        },
        Setting(key: "node", summary: "node name in the cluster") { c, v throws(TroupeError) in
            c.node = try nonEmpty(v, "node")
        },
        Setting(key: "socket", summary: "Unix socket path for hosts") { c, v throws(TroupeError) in
            c.socket = try nonEmpty(v, "socket")
        },
        Setting(key: "listen-tcp", summary: "TCP listener for hosts, HOST:PORT") { c, v throws(TroupeError) in
            c.listenTCP = v.isEmpty ? nil : v
            if let tcp = c.listenTCP { _ = try Endpoint(parsing: "tcp://" + tcp) }
        },
        Setting(key: "host-secret", summary: "secret TCP hosts and clients must send (prefer TROUPE_HOST_SECRET)") {
            c, v throws(TroupeError) in
            c.hostSecret = v.isEmpty ? nil : v
        },
        Setting(key: "store", summary: "state store: sqlite, postgres or memory") { c, v throws(TroupeError) in
            guard ["sqlite", "postgres", "memory"].contains(v) else {
                throw .invalidArgument("store must be sqlite, postgres or memory, not '\(v)'")
            }
            c.store = v
        },
        Setting(key: "data-path", summary: "SQLite state file") { c, v throws(TroupeError) in
            c.dataPath = try nonEmpty(v, "data-path")
        },
        Setting(key: "pg-url", summary: "Postgres URL, postgres://user:password@host:port/database") {
            c, v throws(TroupeError) in
            c.postgres.url = v
        },
        Setting(key: "pg-host", summary: "Postgres host (overrides the URL's)") { c, v throws(TroupeError) in
            c.postgres.host = v
        },
        Setting(key: "pg-port", summary: "Postgres port") { c, v throws(TroupeError) in
            c.postgres.port = Int(try number(v, "pg-port", in: UInt16(1)...UInt16.max))
        },
        Setting(key: "pg-user", summary: "Postgres user") { c, v throws(TroupeError) in
            c.postgres.user = v
        },
        Setting(key: "pg-password", summary: "Postgres password (prefer TROUPE_PG_PASSWORD)") {
            c, v throws(TroupeError) in
            c.postgres.password = v
        },
        Setting(key: "pg-database", summary: "Postgres database") { c, v throws(TroupeError) in
            c.postgres.database = v
        },
        Setting(key: "pg-schema", summary: "Postgres schema of the store's tables") { c, v throws(TroupeError) in
            c.postgres.schema = v
        },
        Setting(key: "pg-sslmode", summary: "disable, prefer, require, verify-ca or verify-full") {
            c, v throws(TroupeError) in
            guard PostgresStateStore.Configuration.TLSMode(rawValue: v) != nil else {
                throw .invalidArgument(
                    "pg-sslmode must be disable, prefer, require, verify-ca or verify-full, not '\(v)'")
            }
            c.postgres.sslmode = v
        },
        Setting(key: "pg-sslrootcert", summary: "PEM file of the CAs the Postgres server must chain to") {
            c, v throws(TroupeError) in
            c.postgres.rootCertificatePath = v.isEmpty ? nil : v
        },
        Setting(key: "pg-pool-size", summary: "most Postgres connections") { c, v throws(TroupeError) in
            c.postgres.poolSize = Int(try number(v, "pg-pool-size", in: 1...1000))
        },
        Setting(key: "pg-operation-timeout-ms", summary: "store operations fail as unavailable after this") {
            c, v throws(TroupeError) in
            c.postgres.operationTimeoutMs = try number(v, "pg-operation-timeout-ms", in: 100...600_000)
        },
        Setting(key: "pg-max-write-batch", summary: "most writes in one group commit") { c, v throws(TroupeError) in
            c.postgres.maxWriteBatch = Int(try number(v, "pg-max-write-batch", in: 1...65_535))
        },
        Setting(key: "encryption-keys", summary: "state encryption keys, id:base64key,... (prefer the variable)") {
            c, v throws(TroupeError) in
            _ = try StateKeyring(parsing: v)
            c.encryptionKeys = v
        },
        Setting(key: "encryption-active-key", summary: "id of the key new writes use") { c, v throws(TroupeError) in
            c.encryptionActiveKey = v
        },
        Setting(key: "max-frame-bytes", summary: "largest accepted frame body") { c, v throws(TroupeError) in
            c.maxFrameBytes = try number(v, "max-frame-bytes", in: 1024...UInt32(256 << 20))
        },
        Setting(key: "default-timeout-ms", summary: "deadline of calls that carry none") { c, v throws(TroupeError) in
            c.defaultTimeoutMs = try number(v, "default-timeout-ms", in: 1...3_600_000)
        },
        Setting(key: "mailbox-capacity", summary: "calls that may wait per actor") { c, v throws(TroupeError) in
            c.mailboxCapacity = Int(try number(v, "mailbox-capacity", in: 1...1_000_000))
        },
        Setting(key: "idle-timeout-ms", summary: "deactivate actors idle this long") { c, v throws(TroupeError) in
            c.idleTimeoutMs = try number(v, "idle-timeout-ms", in: 1...UInt32.max)
        },
        Setting(key: "max-forward-hops", summary: "forwards, pipes and effects one call chain may go through") {
            c, v throws(TroupeError) in
            c.maxForwardHops = try number(v, "max-forward-hops", in: 1...10_000)
        },
        Setting(key: "max-call-depth", summary: "actors one call chain may pass through") {
            c, v throws(TroupeError) in
            c.maxCallDepth = try number(v, "max-call-depth", in: 2...10_000)
        },
        Setting(key: "heartbeat-interval-ms", summary: "host ping interval") { c, v throws(TroupeError) in
            c.heartbeatIntervalMs = try number(v, "heartbeat-interval-ms", in: 10...600_000)
        },
        Setting(key: "handshake-timeout-ms", summary: "time a new connection has to say Hello") {
            c, v throws(TroupeError) in
            c.handshakeTimeoutMs = try number(v, "handshake-timeout-ms", in: 10...600_000)
        },
        Setting(key: "drain-timeout-ms", summary: "graceful shutdown wait for calls in flight") {
            c, v throws(TroupeError) in
            c.drainTimeoutMs = try number(v, "drain-timeout-ms", in: 0...3_600_000)
        },
        Setting(key: "reminder-poll-ms", summary: "how often due reminders are claimed") { c, v throws(TroupeError) in
            c.reminderPollMs = try number(v, "reminder-poll-ms", in: 10...60_000)
        },
        Setting(key: "reminder-lease-ms", summary: "how long a claimed reminder is reserved") {
            c, v throws(TroupeError) in
            c.reminderLeaseMs = try number(v, "reminder-lease-ms", in: 1_000...3_600_000)
        },
        Setting(key: "reminder-batch", summary: "due reminders claimed per statement") { c, v throws(TroupeError) in
            c.reminderBatch = try number(v, "reminder-batch", in: 1...10_000)
        },
        Setting(key: "max-concurrent-requests", summary: "requests one connection may have outstanding") {
            c, v throws(TroupeError) in
            c.maxConcurrentRequests = try number(v, "max-concurrent-requests", in: 1...1_000_000)
        },
        Setting(key: "max-connection-buffer-bytes", summary: "bytes a connection may have waiting to be sent") {
            c, v throws(TroupeError) in
            c.maxConnectionBufferBytes = try number(v, "max-connection-buffer-bytes", in: 65_536...UInt32.max)
        },
        Setting(key: "max-metadata-entries", summary: "metadata entries one invocation may carry") {
            c, v throws(TroupeError) in
            c.maxMetadataEntries = try number(v, "max-metadata-entries", in: 0...100_000)
        },
        Setting(key: "max-metadata-bytes", summary: "bytes of metadata keys and values one invocation may carry") {
            c, v throws(TroupeError) in
            c.maxMetadataBytes = try number(v, "max-metadata-bytes", in: 0...UInt32(64 << 20))
        },
        Setting(key: "event-loop-threads", summary: "threads serving connections and running actors") {
            c, v throws(TroupeError) in
            c.eventLoopThreads = Int(try number(v, "event-loop-threads", in: 1...256))
        },
        Setting(key: "log-level", summary: "trace, debug, info, notice, warning, error or critical") {
            c, v throws(TroupeError) in
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(v) else {
                throw .invalidArgument(
                    "log-level '\(v)' is not one of trace, debug, info, notice, warning, error, critical")
            }
            c.logLevel = v
        },
        Setting(key: "admin-listen", summary: "admin HTTP endpoint HOST:PORT, or off") { c, v throws(TroupeError) in
            if v == "off" || v.isEmpty {
                c.adminListen = nil
            } else {
                do { _ = try Endpoint(parsing: "tcp://" + v) } catch {
                    throw .invalidArgument("admin-listen must be HOST:PORT or off, not '\(v)'")
                }
                c.adminListen = v
            }
        },
        Setting(key: "admin-token", summary: "bearer token /metrics requires (prefer TROUPE_ADMIN_TOKEN)") {
            c, v throws(TroupeError) in
            c.adminToken = v.isEmpty ? nil : v
        },
        Setting(key: "nats-url", summary: "NATS servers of the bridge to other systems, comma-separated") {
            c, v throws(TroupeError) in
            let servers = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            for server in servers where !(server.hasPrefix("nats://") || server.hasPrefix("tls://")) {
                throw .invalidArgument("nats-url '\(server)' must start with nats:// or tls://")
            }
            c.natsServers = servers
        },
        Setting(key: "nats-user", summary: "NATS user name (with nats-password)") { c, v throws(TroupeError) in
            c.natsUser = v.isEmpty ? nil : v
        },
        Setting(key: "nats-password", summary: "NATS password (with nats-user)") { c, v throws(TroupeError) in
            c.natsPassword = v.isEmpty ? nil : v
        },
        Setting(key: "nats-token", summary: "NATS authentication token") { c, v throws(TroupeError) in
            c.natsToken = v.isEmpty ? nil : v
        },
        Setting(key: "nats-credentials", summary: "NATS .creds file (user JWT and NKey seed)") {
            c, v throws(TroupeError) in
            c.natsCredentialsFile = v.isEmpty ? nil : v
        },
        Setting(key: "nats-tls-ca", summary: "PEM CA file the NATS server certificate must chain to") {
            c, v throws(TroupeError) in
            c.natsTLSCAFile = v.isEmpty ? nil : v
        },
        Setting(key: "nats-tls-cert", summary: "PEM client certificate for NATS mutual TLS") {
            c, v throws(TroupeError) in
            c.natsTLSCertificateFile = v.isEmpty ? nil : v
        },
        Setting(key: "nats-tls-key", summary: "PEM private key of nats-tls-cert") { c, v throws(TroupeError) in
            c.natsTLSKeyFile = v.isEmpty ? nil : v
        },
        Setting(key: "nats-reconnect-wait-ms", summary: "pause between NATS reconnect attempts") {
            c, v throws(TroupeError) in
            c.natsReconnectWaitMs = try number(v, "nats-reconnect-wait-ms", in: 10...600_000)
        },
        Setting(key: "nats-connect-timeout-ms", summary: "time one NATS connect attempt may take") {
            c, v throws(TroupeError) in
            c.natsConnectTimeoutMs = try number(v, "nats-connect-timeout-ms", in: 10...600_000)
        },
        Setting(key: "bridge-allow-calls", summary: "calls other systems may make, CALLER:TYPE/ACTION,...;...") {
            c, v throws(TroupeError) in
            _ = try parseBridgePolicy(naming: "bridge-allow-calls", calls: v, broadcasts: "")
            c.bridgeAllowCalls = v.isEmpty ? nil : v
        },
        Setting(
            key: "bridge-allow-broadcasts", summary: "channels other systems may broadcast on, CALLER:CHANNEL,...;..."
        ) { c, v throws(TroupeError) in
            _ = try parseBridgePolicy(naming: "bridge-allow-broadcasts", calls: "", broadcasts: v)
            c.bridgeAllowBroadcasts = v.isEmpty ? nil : v
        },
        Setting(key: "cluster-listen", summary: "cluster listener for other sidecars, HOST:PORT; off by default") {
            c, v throws(TroupeError) in
            c.clusterListen = v.isEmpty ? nil : try clusterAddress(v, "cluster-listen")
        },
        Setting(key: "cluster-advertise", summary: "address peers reach this sidecar at, HOST:PORT") {
            c, v throws(TroupeError) in
            c.clusterAdvertise = v.isEmpty ? nil : try clusterAddress(v, "cluster-advertise")
        },
        Setting(key: "cluster-seeds", summary: "comma-separated HOST:PORT of cluster seed nodes") {
            c, v throws(TroupeError) in
            c.clusterSeeds = try v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.map { (seed) throws(TroupeError) in try clusterAddress(seed, "cluster-seeds") }
        },
        Setting(key: "cluster-dns", summary: "DNS name whose A records are cluster peers") { c, v throws(TroupeError) in
            c.clusterDNS = v.isEmpty ? nil : v
        },
        Setting(key: "cluster-tls-cert", summary: "PEM certificate of this node for cluster mutual TLS (tls.crt)") {
            c, v throws(TroupeError) in
            c.clusterTLSCertificateFile = v.isEmpty ? nil : v
        },
        Setting(key: "cluster-tls-key", summary: "PEM private key of cluster-tls-cert (tls.key)") {
            c, v throws(TroupeError) in
            c.clusterTLSKeyFile = v.isEmpty ? nil : v
        },
        Setting(key: "cluster-tls-ca", summary: "PEM CA the peers' cluster certificates must chain to (ca.crt)") {
            c, v throws(TroupeError) in
            c.clusterTLSCAFile = v.isEmpty ? nil : v
        },
        Setting(key: "cluster-tls-reload-ms", summary: "how often the cluster TLS files are checked for rotation") {
            c, v throws(TroupeError) in
            c.clusterTLSReloadMs = try number(v, "cluster-tls-reload-ms", in: 100...3_600_000)
        },
        Setting(key: "otlp-endpoint", summary: "OTLP collector for spans, http(s)://HOST:PORT; off by default") {
            c, v throws(TroupeError) in
            guard !v.isEmpty, v != "off" else {
                c.otlpEndpoint = nil
                return
            }
            guard let url = URL(string: v), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                throw .invalidArgument("otlp-endpoint must be an http:// or https:// URL, not '\(v)'")
            }
            c.otlpEndpoint = v
        },
        Setting(key: "otlp-protocol", summary: "OTLP transport: http/protobuf, http/json or grpc") {
            c, v throws(TroupeError) in
            guard ["http/protobuf", "http/json", "grpc"].contains(v) else {
                throw .invalidArgument("otlp-protocol must be http/protobuf, http/json or grpc, not '\(v)'")
            }
            c.otlpProtocol = v
        },
        Setting(key: "trace-sample-ratio", summary: "fraction of new traces recorded, 0 to 1") {
            c, v throws(TroupeError) in
            guard let ratio = Double(v), (0...1).contains(ratio) else {
                throw .invalidArgument("trace-sample-ratio must be a number from 0 to 1, not '\(v)'")
            }
            c.traceSampleRatio = ratio
        },
        Setting(key: "cluster-max-frame-bytes", summary: "largest cluster envelope accepted from another sidecar") {
            c, v throws(TroupeError) in
            c.clusterMaxFrameBytes = try number(v, "cluster-max-frame-bytes", in: 1024...UInt32(1 << 30))
        },
        Setting(key: "cluster-probe-interval-ms", summary: "how often the failure detector probes one member") {
            c, v throws(TroupeError) in
            c.clusterFailureDetector.probeInterval = try number(v, "cluster-probe-interval-ms", in: 50...60_000)
        },
        Setting(key: "cluster-ping-timeout-ms", summary: "how long a direct probe may take before indirect ones") {
            c, v throws(TroupeError) in
            c.clusterFailureDetector.pingTimeout = try number(v, "cluster-ping-timeout-ms", in: 10...60_000)
        },
        Setting(key: "cluster-indirect-timeout-ms", summary: "how long indirect probes may take before suspicion") {
            c, v throws(TroupeError) in
            c.clusterFailureDetector.indirectTimeout = try number(v, "cluster-indirect-timeout-ms", in: 10...60_000)
        },
        Setting(key: "cluster-suspicion-timeout-ms", summary: "how long a suspect member has to refute") {
            c, v throws(TroupeError) in
            c.clusterFailureDetector.suspicionTimeout = try number(
                v, "cluster-suspicion-timeout-ms", in: 100...600_000)
        },
    ]

    /// Sets one setting by key.
    public mutating func set(_ key: String, to value: String) throws(TroupeError) {
        guard let setting = Self.settings.first(where: { $0.key == key }) else {
            throw .invalidArgument("unknown setting '\(key)'")
        }
        try setting.apply(&self, value)
    }

    /// Applies every `TROUPE_*` variable of `environment` that names a setting. `TROUPE_CONFIG`
    /// (the YAML file) is read by the caller.
    public mutating func apply(environment: [String: String]) throws(TroupeError) {
        for setting in Self.settings {
            if let value = environment[setting.environmentVariable] {
                do { try setting.apply(&self, value) } catch {
                    throw .invalidArgument("\(setting.environmentVariable): \(error.message)")
                }
            }
        }
    }

    /// Applies a YAML mapping of setting keys to values. Unknown keys are refused, so a typo is
    /// not silently ignored.
    ///
    /// Only the top-level mapping and its scalar values are ever turned into values: a nested
    /// collection is refused unread, so aliases of aliases (a "billion laughs" document) cannot
    /// expand into memory.
    public mutating func apply(yaml text: String, source: String = "configuration") throws(TroupeError) {
        let document: Node?
        do { document = try Yams.compose(yaml: text) } catch {
            throw .invalidArgument("\(source) is not valid YAML: \(error)")
        }
        guard let document else { return }
        guard case .mapping(let mapping) = document else {
            throw .invalidArgument("\(source) must be a mapping of setting names to values")
        }
        var settings: [(key: String, value: Node)] = []
        for (key, value) in mapping {
            guard case .scalar = key, let name = key.string else {
                throw .invalidArgument("\(source) must be a mapping of setting names to values")
            }
            settings.append((name, value))
        }
        for (key, node) in settings.sorted(by: { $0.key < $1.key }) {
            guard case .scalar = node else { throw .invalidArgument("\(source): setting '\(key)' must be a scalar") }
            let text: String
            switch node.any {
            case let string as String: text = string
            case let int as Int: text = String(int)
            case let bool as Bool: text = String(bool)
            case let double as Double: text = String(double)
            default: throw .invalidArgument("\(source): setting '\(key)' must be a scalar")
            }
            do { try set(key, to: text) } catch {
                throw .invalidArgument("\(source): \(error.message)")
            }
        }
    }

    /// Reads and applies a YAML file.
    public mutating func apply(yamlFile path: String) throws(TroupeError) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .invalidArgument("cannot read configuration file \(path): \(error.localizedDescription)")
        }
        try apply(yaml: text, source: path)
    }
}

private func clusterAddress(_ value: String, _ key: String) throws(TroupeError) -> String {
    guard case .tcp(let host, let port) = try? Endpoint(parsing: "tcp://" + value), port > 0 || key == "cluster-listen"
    else {
        throw .invalidArgument("\(key) must be HOST:PORT, not '\(value)'")
    }
    return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
}

extension SidecarConfiguration {
    /// The Postgres connection settings. A URL gives the base; each discrete setting that is set
    /// overrides its part, so a password can come from a Secret while the rest sits in the file.
    public struct PostgresSettings: Sendable, Equatable {
        public var url = ""
        public var host = ""
        public var port: Int?
        public var user = ""
        public var password: String?
        public var database = ""
        public var schema = ""
        public var sslmode = ""
        public var rootCertificatePath: String?
        public var poolSize = 8
        public var operationTimeoutMs: UInt32 = 5_000
        public var maxWriteBatch = 512

        public init() {}
    }

    /// The Postgres store's configuration, for `store: postgres`.
    ///
    /// - Throws: `invalidArgument` naming the missing or wrong setting.
    public func postgresConfiguration() throws(TroupeError) -> PostgresStateStore.Configuration {
        let settings = postgres
        var configuration: PostgresStateStore.Configuration
        if !settings.url.isEmpty {
            do { configuration = try PostgresStateStore.Configuration(url: settings.url) } catch {
                throw .invalidArgument("pg-url: \(TroupeError(wrapping: error).message)")
            }
        } else {
            guard !settings.host.isEmpty, !settings.user.isEmpty, !settings.database.isEmpty else {
                throw .invalidArgument(
                    "store postgres needs pg-url, or pg-host, pg-user and pg-database (TROUPE_PG_URL or TROUPE_PG_*)")
            }
            configuration = .init(host: settings.host, username: settings.user, database: settings.database)
        }
        if !settings.host.isEmpty { configuration.host = settings.host }
        if let port = settings.port { configuration.port = port }
        if !settings.user.isEmpty { configuration.username = settings.user }
        if let password = settings.password { configuration.password = password }
        if !settings.database.isEmpty { configuration.database = settings.database }
        if !settings.schema.isEmpty { configuration.schema = settings.schema }
        if !settings.sslmode.isEmpty, let mode = PostgresStateStore.Configuration.TLSMode(rawValue: settings.sslmode) {
            configuration.tls = mode
        }
        if let roots = settings.rootCertificatePath { configuration.rootCertificatePath = roots }
        configuration.maxConnections = settings.poolSize
        configuration.operationTimeout = .milliseconds(Int64(settings.operationTimeoutMs))
        configuration.maxWriteBatch = settings.maxWriteBatch
        return configuration
    }

    /// Checks what no single setting can: settings that must agree, the host listener's
    /// authentication, the bridge policy, the state keys and, for `store: postgres`, the
    /// connection settings. ``Sidecar/start(configuration:logger:metrics:)`` runs it first.
    ///
    /// - Throws: `invalidArgument` or `failedPrecondition` naming the setting to change.
    public func check() throws(TroupeError) {
        guard UInt64(maxConnectionBufferBytes) >= UInt64(maxFrameBytes) + UInt64(HostProtocol.headerSize) else {
            throw .invalidArgument(
                "max-connection-buffer-bytes (\(maxConnectionBufferBytes)) must hold at least one frame of "
                    + "max-frame-bytes (\(maxFrameBytes)) and its \(HostProtocol.headerSize)-byte header")
        }
        try checkHostAuthentication()
        _ = try stateKeyring()
        _ = try bridgePolicy()
        if store == "postgres" { _ = try postgresConfiguration() }
    }

    /// Refuses a host listener reachable from the network without a secret: with `listen-tcp`
    /// on an address other than loopback, `host-secret` must be set. A loopback listener may go
    /// without one (docs/security.md says what that trusts).
    ///
    /// - Throws: `failedPrecondition` naming the setting to set.
    public func checkHostAuthentication() throws(TroupeError) {
        guard let tcp = listenTCP, hostSecret == nil else { return }
        guard case .tcp(let host, _) = try Endpoint(parsing: "tcp://" + tcp), isLoopback(host: host) else {
            throw .failedPrecondition(
                "listen-tcp \(tcp) is reachable from the network, but host-secret is not set: "
                    + "set TROUPE_HOST_SECRET (or host-secret), or listen on 127.0.0.1")
        }
    }

    /// The bridge's authorization policy, or nil (everything allowed) when neither
    /// `bridge-allow-calls` nor `bridge-allow-broadcasts` is set. Once one is, whatever it and
    /// the other do not allow is denied.
    ///
    /// - Throws: `invalidArgument` naming the setting whose rules are wrong.
    public func bridgePolicy() throws(TroupeError) -> BridgePolicy? {
        guard bridgeAllowCalls != nil || bridgeAllowBroadcasts != nil else { return nil }
        let calls = try parseBridgePolicy(naming: "bridge-allow-calls", calls: bridgeAllowCalls ?? "", broadcasts: "")
        let broadcasts = try parseBridgePolicy(
            naming: "bridge-allow-broadcasts", calls: "", broadcasts: bridgeAllowBroadcasts ?? "")
        return calls.merging(broadcasts)
    }

    /// The files of mutual TLS between the sidecars, or nil for plain TCP.
    ///
    /// - Throws: `invalidArgument` if only some of `cluster-tls-cert`, `cluster-tls-key` and
    ///   `cluster-tls-ca` are set, or they are set without `cluster-listen`.
    public func clusterTLSFiles() throws(TroupeError) -> ClusterTLSFiles? {
        let set = [clusterTLSCertificateFile, clusterTLSKeyFile, clusterTLSCAFile].compactMap { $0 }
        if set.isEmpty { return nil }
        guard let certificate = clusterTLSCertificateFile, let key = clusterTLSKeyFile, let ca = clusterTLSCAFile else {
            throw .invalidArgument(
                "cluster-tls-cert, cluster-tls-key and cluster-tls-ca go together: set all three or none")
        }
        guard clusterListen != nil else {
            throw .invalidArgument("cluster-tls-cert, cluster-tls-key and cluster-tls-ca need cluster-listen")
        }
        return ClusterTLSFiles(certificate: certificate, key: key, ca: ca)
    }

    /// The state encryption keys, or ``StateKeyring/none``.
    ///
    /// - Throws: `invalidArgument` naming the key id that is wrong, never a key.
    public func stateKeyring() throws(TroupeError) -> StateKeyring {
        guard !encryptionKeys.isEmpty else {
            guard encryptionActiveKey.isEmpty else {
                throw .invalidArgument("encryption-active-key is set, but encryption-keys is empty")
            }
            return .none
        }
        return try StateKeyring(
            parsing: encryptionKeys, activeKeyID: encryptionActiveKey.isEmpty ? nil : encryptionActiveKey)
    }
}

/// The policy of the rule strings, its errors prefixed with `key`, the setting they came from.
private func parseBridgePolicy(naming key: String, calls: String, broadcasts: String) throws(TroupeError)
    -> BridgePolicy
{
    do throws(TroupeError) {
        return try BridgePolicy(calls: calls, broadcasts: broadcasts)
    } catch {
        throw .invalidArgument("\(key): \(error.message)", details: error.details)
    }
}

private func nonEmpty(_ value: String, _ key: String) throws(TroupeError) -> String {
    guard !value.isEmpty else { throw .invalidArgument("\(key) must not be empty") }
    return value
}

private func number<N: FixedWidthInteger>(_ value: String, _ key: String, in range: ClosedRange<N>) throws(TroupeError)
    -> N
{
    guard let number = N(value), range.contains(number) else {
        throw .invalidArgument(
            "\(key) must be a whole number in \(range.lowerBound)...\(range.upperBound), not '\(value)'")
    }
    return number
}
