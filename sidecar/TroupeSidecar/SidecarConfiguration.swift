import Foundation
public import TroupeNATS
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
    /// `sqlite` (the embedded default) or `memory` (nothing survives a restart).
    public var store = "sqlite"
    /// The SQLite file.
    public var dataPath = "troupe-data/state.sqlite"
    public var maxFrameBytes = HostProtocol.defaultMaxFrameBytes
    public var defaultTimeoutMs: UInt32 = 30_000
    public var mailboxCapacity = 1024
    public var idleTimeoutMs: UInt32 = 300_000
    public var heartbeatIntervalMs: UInt32 = 5_000
    public var handshakeTimeoutMs: UInt32 = 5_000
    public var drainTimeoutMs: UInt32 = 10_000
    public var maxConcurrentRequests: UInt32 = 4096
    /// Threads serving connections and running actors. One keeps every call on one thread.
    public var eventLoopThreads = 1
    public var logLevel = "info"
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

    public init() {}

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
        Setting(key: "store", summary: "state store: sqlite or memory") { c, v throws(TroupeError) in
            guard ["sqlite", "memory"].contains(v) else {
                throw .invalidArgument("store must be sqlite or memory, not '\(v)'")
            }
            c.store = v
        },
        Setting(key: "data-path", summary: "SQLite state file") { c, v throws(TroupeError) in
            c.dataPath = try nonEmpty(v, "data-path")
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
        Setting(key: "max-concurrent-requests", summary: "requests one connection may have outstanding") {
            c, v throws(TroupeError) in
            c.maxConcurrentRequests = try number(v, "max-concurrent-requests", in: 1...1_000_000)
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
    public mutating func apply(yaml text: String, source: String = "configuration") throws(TroupeError) {
        let document: Any?
        do { document = try Yams.load(yaml: text) } catch {
            throw .invalidArgument("\(source) is not valid YAML: \(error)")
        }
        guard let document else { return }
        guard let mapping = document as? [String: Any] else {
            throw .invalidArgument("\(source) must be a mapping of setting names to values")
        }
        for (key, value) in mapping.sorted(by: { $0.key < $1.key }) {
            let text: String
            switch value {
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
