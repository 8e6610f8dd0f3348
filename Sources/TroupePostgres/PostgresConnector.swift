import Logging
import NIOCore
import PostgresNIO
import TroupeWire

/// Turns a ``PostgresStateStore/Configuration`` into postgres-nio's configurations, and opens the
/// single direct connections used outside the pool (migrations, test tooling).
enum PostgresConnector {
    /// What a TLS connection checks, per libpq's `sslmode`; nil for `disable`.
    static func tlsConfiguration(_ configuration: PostgresStateStore.Configuration) -> TLSConfiguration? {
        var tls = TLSConfiguration.makeClientConfiguration()
        switch configuration.tls {
        case .disable:
            return nil
        case .prefer, .require:
            tls.certificateVerification = .none
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
        case .verifyFull:
            tls.certificateVerification = .fullVerification
        }
        if let roots = configuration.rootCertificatePath {
            tls.trustRoots = .file(roots)
        }
        return tls
    }

    static func clientConfiguration(
        _ configuration: PostgresStateStore.Configuration
    ) -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch (configuration.tls, tlsConfiguration(configuration)) {
            case (_, nil): .disable
            case (.prefer, let settings?): .prefer(settings)
            case (_, let settings?): .require(settings)
            }
        var client = PostgresClient.Configuration(
            host: configuration.host,
            port: configuration.port,
            username: configuration.username,
            password: configuration.password,
            database: configuration.database,
            tls: tls
        )
        client.options.maximumConnections = max(1, configuration.maxConnections)
        client.options.connectTimeout = configuration.connectTimeout
        return client
    }

    /// Runs `body` on a connection of its own, closed afterwards.
    ///
    /// A direct connection, not the pool: the pool retries a refused connection for a minute
    /// before failing waiting callers, while opening the store should fail fast and say why.
    @discardableResult
    static func withConnection<T>(
        _ configuration: PostgresStateStore.Configuration,
        logger: Logger,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await PostgresConnection.connect(
            configuration: try connectionConfiguration(configuration),
            id: 0,
            logger: logger
        )
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private static func connectionConfiguration(
        _ configuration: PostgresStateStore.Configuration
    ) throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS =
            switch (configuration.tls, tlsConfiguration(configuration)) {
            case (_, nil): .disable
            case (.prefer, let settings?): .prefer(try NIOSSLContext(configuration: settings))
            case (_, let settings?): .require(try NIOSSLContext(configuration: settings))
            }
        var connection = PostgresConnection.Configuration(
            host: configuration.host,
            port: configuration.port,
            username: configuration.username,
            password: configuration.password,
            database: configuration.database,
            tls: tls
        )
        connection.options.connectTimeout = timeAmount(configuration.connectTimeout)
        return connection
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
    }
}
