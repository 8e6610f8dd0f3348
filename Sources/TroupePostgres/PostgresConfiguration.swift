import TroupeWire

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension PostgresStateStore {
    /// Where the store's tables live and how to reach them.
    ///
    /// ```swift
    /// var configuration = try PostgresStateStore.Configuration(
    ///     url: "postgres://troupe:secret@db.internal:5432/troupe?sslmode=require&schema=tickets")
    /// configuration.maxConnections = 16
    /// let store = try await PostgresStateStore.open(configuration: configuration, logger: logger)
    /// ```
    public struct Configuration: Sendable, CustomStringConvertible {
        /// Whether connections use TLS and what they check, as libpq's `sslmode`.
        public enum TLSMode: String, Sendable, Hashable {
            /// Plain TCP.
            case disable
            /// TLS if the server offers it, plain TCP otherwise; the certificate is not checked
            /// (libpq's default). Protects against eavesdroppers, not against impostors.
            case prefer
            /// TLS or no connection; the certificate is not checked.
            case require
            /// TLS with a certificate that chains to the trusted roots (``rootCertificatePath``,
            /// or the system's); any host name.
            case verifyCA = "verify-ca"
            /// TLS with a certificate that chains to the trusted roots and names the host
            /// connected to: the mode to use across a network.
            case verifyFull = "verify-full"
        }

        public var host: String
        public var port: Int
        public var username: String
        /// Never logged nor shown in ``description``.
        public var password: String?
        public var database: String
        /// The Postgres schema holding the store's tables; created if missing. A plain identifier:
        /// letters, digits and `_`, starting with a letter or `_`, at most 63 characters.
        public var schema: String
        public var tls: TLSMode
        /// PEM file of the CA certificates a server certificate must chain to (libpq's
        /// `sslrootcert`) for `verify-ca` and `verify-full`; nil trusts the system's roots.
        public var rootCertificatePath: String?
        /// The most connections the pool opens.
        public var maxConnections: Int
        /// How long one connection attempt may take before the store reports `unavailable`.
        public var connectTimeout: Duration
        /// The most writes one group-commit statement carries.
        public var maxWriteBatch: Int
        /// How long an operation may wait for the server (a connection, then its answer) before it
        /// fails with `unavailable`. Keep it below the calls' deadlines, so callers learn that the
        /// store is away rather than that their call timed out.
        public var operationTimeout: Duration

        public init(
            host: String,
            port: Int = 5432,
            username: String,
            password: String? = nil,
            database: String,
            schema: String = "troupe",
            tls: TLSMode = .prefer,
            rootCertificatePath: String? = nil,
            maxConnections: Int = 8,
            connectTimeout: Duration = .seconds(5),
            maxWriteBatch: Int = 512,
            operationTimeout: Duration = .seconds(5)
        ) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.schema = schema
            self.tls = tls
            self.rootCertificatePath = rootCertificatePath
            self.maxConnections = maxConnections
            self.connectTimeout = connectTimeout
            self.maxWriteBatch = maxWriteBatch
            self.operationTimeout = operationTimeout
        }

        /// Parses `postgres://user:password@host:port/database?sslmode=disable&schema=name`.
        ///
        /// `postgresql://` works too. The port defaults to 5432, `sslmode` (`disable`, `prefer`,
        /// `require`, `verify-ca`, `verify-full`) to `prefer` and `schema` to `troupe`;
        /// `sslrootcert` names the trusted CA file; user and database are required.
        ///
        /// - Throws: `invalidArgument`, with a message that never contains the password.
        public init(url: String) throws {
            let shown = Self.redacting(url)
            func invalid(_ why: String) -> TroupeError {
                .invalidArgument("state store URL \(shown): \(why)")
            }
            guard let components = URLComponents(string: url),
                components.scheme == "postgres" || components.scheme == "postgresql"
            else {
                throw invalid("expected postgres://user@host:port/database")
            }
            guard let host = components.host, !host.isEmpty else { throw invalid("no host") }
            guard let user = components.user, !user.isEmpty else { throw invalid("no user") }
            let database = String(components.path.drop(while: { $0 == "/" }))
            guard !database.isEmpty, !database.contains("/") else { throw invalid("no database") }

            self.init(
                host: host, port: components.port ?? 5432, username: user, password: components.password,
                database: database)
            for item in components.queryItems ?? [] {
                switch item.name {
                case "sslmode":
                    guard let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                        throw invalid("sslmode must be disable, prefer, require, verify-ca or verify-full")
                    }
                    tls = mode
                case "sslrootcert":
                    guard let path = item.value, !path.isEmpty else { throw invalid("sslrootcert needs a file") }
                    rootCertificatePath = path
                case "schema":
                    guard let schema = item.value, Self.isPlainIdentifier(schema) else {
                        throw invalid("schema must be a plain identifier")
                    }
                    self.schema = schema
                default:
                    throw invalid("unknown parameter \(item.name)")
                }
            }
        }

        /// `postgres://user@host:port/database (schema name)`: no password, fit for logs.
        public var description: String {
            "postgres://\(username)@\(host):\(port)/\(database) (schema \(schema))"
        }

        /// Where the server is, for error messages.
        var target: String { "postgres://\(username)@\(host):\(port)/\(database)" }

        /// Whether `name` can be spliced into SQL as an identifier (it is also quoted there).
        static func isPlainIdentifier(_ name: String) -> Bool {
            guard let first = name.unicodeScalars.first, name.utf8.count <= 63 else { return false }
            func isLetter(_ c: Unicode.Scalar) -> Bool {
                ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_"
            }
            return isLetter(first) && name.unicodeScalars.allSatisfy { isLetter($0) || ("0"..."9").contains($0) }
        }

        /// `url` with any password replaced by `***`, so a bad URL can be echoed safely.
        private static func redacting(_ url: String) -> String {
            guard let schemeEnd = url.range(of: "://"),
                let at = url[schemeEnd.upperBound...].lastIndex(of: "@")
            else { return url }
            let userInfo = url[schemeEnd.upperBound..<at]
            guard let colon = userInfo.firstIndex(of: ":") else { return url }
            return url[..<colon] + ":***" + url[at...]
        }
    }
}
