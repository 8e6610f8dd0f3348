import Logging
import PostgresNIO
import TroupeWire

/// The versioned schema of the store, tracked in `<schema>.troupe_migrations`.
enum PostgresSchema {
    /// Serializes migrations of every sidecar on the server (any schema): they are rare and short,
    /// and one constant key needs no agreement on how to derive it.
    static let migrationLockKey: Int64 = 0x7472_6F75_7065_0001  // "troupe" + 1

    /// `migrations(schema)[i]` takes the schema from version `i` to `i + 1`. Append new steps;
    /// never edit a shipped one, since databases in the field already ran it.
    static func migrations(_ schema: String) -> [[String]] {
        [
            // 1: the actor table; the indexes serve listing by type and finding recent changes.
            [
                """
                CREATE TABLE \(schema).troupe_actors (
                    system text NOT NULL,
                    actor text NOT NULL,
                    actor_type text NOT NULL,
                    state_type text NOT NULL DEFAULT '',
                    state bytea,
                    revision bigint NOT NULL DEFAULT 0,
                    fencing_token bigint NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (system, actor)
                )
                """,
                "CREATE INDEX troupe_actors_by_type ON \(schema).troupe_actors (system, actor_type)",
                "CREATE INDEX troupe_actors_by_update ON \(schema).troupe_actors (updated_at)",
            ],
            // 2: reminders, one row each. ready_at is due_at, or the end of the lease while a
            // scheduler holds one; its index is all a claim reads.
            [
                """
                CREATE TABLE \(schema).troupe_reminders (
                    system text NOT NULL,
                    actor text NOT NULL,
                    name text NOT NULL,
                    body bytea NOT NULL,
                    due_at bigint NOT NULL,
                    period_ms bigint NOT NULL DEFAULT 0,
                    ready_at bigint NOT NULL,
                    lease_token bigint NOT NULL DEFAULT 0,
                    attempts integer NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (system, actor, name)
                )
                """,
                "CREATE INDEX troupe_reminders_by_ready ON \(schema).troupe_reminders (ready_at)",
            ],
        ]
    }

    /// The version this build writes and understands.
    static var currentVersion: Int { migrations("s").count }

    /// `name` quoted for SQL. Callers validate it first; quoting keeps reserved words working.
    static func quoted(_ name: String) -> String {
        "\"" + String(name.flatMap { $0 == "\"" ? ["\"", "\""] : [$0] }) + "\""
    }

    /// Brings `schema` up to ``currentVersion`` in one transaction under an advisory lock, so
    /// sidecars starting together apply each step once and the others see the result.
    static func migrate(_ connection: PostgresConnection, schema: String, logger: Logger) async throws {
        let name = quoted(schema)
        let applied = try await connection.withTransaction(logger: logger) { connection -> [Int] in
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLockKey))", logger: logger)
            try await connection.query("CREATE SCHEMA IF NOT EXISTS \(unescaped: name)", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS \(unescaped: name).troupe_migrations (
                    version int PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                logger: logger
            )
            let found = try await version(connection, schema: name, logger: logger)
            guard found <= currentVersion else {
                throw TroupeError.failedPrecondition(
                    "state store schema \(schema) is at version \(found), newer than this build understands (\(currentVersion))",
                    details: ["schema": schema]
                )
            }
            let steps = migrations(name)
            for version in found..<currentVersion {
                for statement in steps[version] {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO \(unescaped: name).troupe_migrations (version) VALUES (\(version + 1))",
                    logger: logger
                )
            }
            return Array(found..<currentVersion).map { $0 + 1 }
        }
        for version in applied {
            logger.info("migrated state store", metadata: ["schema": "\(schema)", "schemaVersion": "\(version)"])
        }
    }

    private static func version(_ connection: PostgresConnection, schema: String, logger: Logger) async throws -> Int {
        let rows = try await connection.query(
            "SELECT coalesce(max(version), 0) FROM \(unescaped: schema).troupe_migrations",
            logger: logger
        )
        for try await (version) in rows.decode(Int32.self) {
            return Int(version)
        }
        throw TroupeError.unavailable("state store: reading the schema version returned no row")
    }
}
