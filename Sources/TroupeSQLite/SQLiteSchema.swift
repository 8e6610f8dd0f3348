import Logging
import SQLiteNIO
import TroupeWire

/// The versioned schema of the state file, tracked in `PRAGMA user_version`.
enum SQLiteSchema {
    /// `migrations[i]` takes the schema from version `i` to `i + 1`. Append new steps; never edit
    /// a shipped one, since files in the field already ran it.
    static let migrations: [[String]] = [
        // 1: the actor table.
        [
            """
            CREATE TABLE troupe_actors (
                system TEXT NOT NULL,
                actor TEXT NOT NULL,
                actor_type TEXT NOT NULL,
                state_type TEXT NOT NULL DEFAULT '',
                state BLOB,
                revision INTEGER NOT NULL DEFAULT 0,
                fencing_token INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (system, actor)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX troupe_actors_by_type ON troupe_actors (system, actor_type)",
        ],
        // 2: reminders, one row each. ready_at is due_at, or the end of the lease while a
        // scheduler holds one; its index is all a claim reads.
        [
            """
            CREATE TABLE troupe_reminders (
                system TEXT NOT NULL,
                actor TEXT NOT NULL,
                name TEXT NOT NULL,
                body BLOB NOT NULL,
                due_at INTEGER NOT NULL,
                period_ms INTEGER NOT NULL DEFAULT 0,
                ready_at INTEGER NOT NULL,
                lease_token INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (system, actor, name)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX troupe_reminders_by_ready ON troupe_reminders (ready_at)",
        ],
    ]

    /// The version this build writes and understands.
    static var currentVersion: Int { migrations.count }

    /// Brings the file up to ``currentVersion``, one transaction per step so a crash mid-way
    /// leaves a consistent older version that the next open continues from.
    ///
    /// Runs before the store is handed out, so no other caller can interleave with the
    /// multi-statement transactions here.
    static func migrate(_ connection: SQLiteConnection, path: String, logger: Logger) async throws {
        let found = try await version(of: connection)
        guard found <= currentVersion else {
            throw TroupeError.failedPrecondition(
                "state file \(path) has schema version \(found), newer than this build understands (\(currentVersion))",
                details: ["path": path]
            )
        }
        for version in found..<currentVersion {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                for statement in migrations[version] {
                    _ = try await connection.query(statement)
                }
                // PRAGMA takes no bound parameters; the value is our own integer.
                _ = try await connection.query("PRAGMA user_version = \(version + 1)")
                _ = try await connection.query("COMMIT")
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
            logger.info("migrated state file", metadata: ["path": "\(path)", "schemaVersion": "\(version + 1)"])
        }
    }

    private static func version(of connection: SQLiteConnection) async throws -> Int {
        let rows = try await connection.query("PRAGMA user_version")
        guard let version = rows.first?.column("user_version")?.integer else {
            throw TroupeError.unavailable("state store: PRAGMA user_version returned no value")
        }
        return Int(version)
    }
}
