package import Logging
import PostgresNIO
import TroupeWire

/// Maintenance outside a running store, for tests and tooling.
extension PostgresStateStore {
    /// Drops the configured schema with everything in it. Irreversible: tests use it to clean up
    /// the throwaway schema each of them works in.
    package static func dropSchema(configuration: Configuration, logger: Logger) async throws {
        let schema = PostgresSchema.quoted(configuration.schema)
        do {
            try await PostgresConnector.withConnection(configuration, logger: logger) { connection in
                try await connection.query("DROP SCHEMA IF EXISTS \(unescaped: schema) CASCADE", logger: logger)
            }
        } catch {
            throw PostgresErrors.opening(error, target: configuration.target)
        }
    }

    /// The versions recorded in the schema's migration table, oldest first.
    package static func appliedMigrations(configuration: Configuration, logger: Logger) async throws -> [Int] {
        let schema = PostgresSchema.quoted(configuration.schema)
        do {
            return try await PostgresConnector.withConnection(configuration, logger: logger) { connection in
                let rows = try await connection.query(
                    "SELECT version FROM \(unescaped: schema).troupe_migrations ORDER BY version", logger: logger)
                var versions: [Int] = []
                for try await version in rows.decode(Int32.self) { versions.append(Int(version)) }
                return versions
            }
        } catch {
            throw PostgresErrors.opening(error, target: configuration.target)
        }
    }
}
