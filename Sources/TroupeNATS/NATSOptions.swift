public import TroupeWire

/// How to reach and authenticate with NATS. Every field maps onto one libnats option.
///
/// ```swift
/// var options = NATSOptions(servers: ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"])
/// options.name = "troupe-sidecar tickets/node-1"
/// options.user = "tickets"
/// options.password = "secret"
/// let connection = try await NATSConnection.connect(options, logger: logger)
/// ```
public struct NATSOptions: Sendable, Equatable {
    /// Server URLs (`nats://HOST:PORT`, `tls://HOST:PORT`); the client picks among them and
    /// fails over to the others.
    public var servers: [String]
    /// The connection's name, shown by the server's monitoring.
    public var name: String?
    /// User and password authentication (both or neither).
    public var user: String?
    public var password: String?
    /// Token authentication.
    public var token: String?
    /// A `.creds` file (user JWT and NKey seed) for decentralized authentication.
    public var credentialsFile: String?
    /// PEM file of the CA certificates the server's certificate must chain to. Setting it turns TLS on.
    public var tlsCAFile: String?
    /// PEM client certificate and key for mutual TLS (both or neither). Setting them turns TLS on.
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// How long one attempt to reach a server may take.
    public var connectTimeout: Duration = .seconds(2)
    /// The pause between reconnect attempts to the same server.
    public var reconnectWait: Duration = .milliseconds(500)
    /// Reconnect attempts per server before the connection closes for good; -1 = for ever.
    public var maxReconnectAttempts = -1
    /// Bytes published while disconnected that are kept and sent after the reconnect; beyond
    /// that a publish fails.
    public var reconnectBufferBytes = 8 << 20
    /// How often the client pings the server to find a dead connection.
    public var pingInterval: Duration = .seconds(10)

    public init(servers: [String]) {
        self.servers = servers
    }

    /// Checks what libnats would otherwise report less clearly.
    ///
    /// - Throws: `invalidArgument` naming the option at fault.
    public func validate() throws(TroupeError) {
        guard !servers.isEmpty, servers.allSatisfy({ !$0.isEmpty }) else {
            throw .invalidArgument("NATS needs at least one server URL")
        }
        if (user == nil) != (password == nil) {
            throw .invalidArgument("NATS user and password must be given together")
        }
        if user != nil, token != nil {
            throw .invalidArgument("NATS user/password and token are exclusive; give one of them")
        }
        if (tlsCertificateFile == nil) != (tlsKeyFile == nil) {
            throw .invalidArgument("the NATS TLS client certificate and key must be given together")
        }
        guard connectTimeout > .zero, reconnectWait >= .zero, pingInterval > .zero else {
            throw .invalidArgument("NATS timeouts must be positive")
        }
    }

    /// True when TLS is asked for, by a file or by a `tls://` URL.
    var wantsTLS: Bool {
        tlsCAFile != nil || tlsCertificateFile != nil || servers.contains { $0.hasPrefix("tls://") }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down, as libnats takes them.
    var natsMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
