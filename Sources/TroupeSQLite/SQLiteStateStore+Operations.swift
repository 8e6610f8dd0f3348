import SQLiteNIO
public import TroupeStore
import TroupeWire

extension SQLiteStateStore {
    public func activate(_ key: ActorKey, actorType: String) async throws -> Activation {
        let now = SQLiteInt64(Self.nowMillis())
        return try await run { connection in
            // One statement: creating and bumping the token cannot be split by another caller.
            let rows = try await connection.query(
                """
                INSERT INTO troupe_actors (system, actor, actor_type, fencing_token, created_at, updated_at)
                VALUES (?1, ?2, ?3, 1, ?4, ?4)
                ON CONFLICT (system, actor) DO UPDATE SET fencing_token = fencing_token + 1
                RETURNING \(SQLiteRecords.columns)
                """,
                [.text(key.system), .text(key.name), .text(actorType), .integer(now)]
            )
            guard let row = rows.first else {
                throw TroupeError.unavailable("state store: activating \(key) returned no row")
            }
            let record = try SQLiteRecords.record(row, key: key)
            // The token was bumped anyway; harmless, since tokens only have to grow.
            guard record.actorType == actorType else {
                throw TroupeError.typeClash(key, stored: record.actorType, requested: actorType)
            }
            let token = try SQLiteRecords.unsigned(row, "fencing_token", key: key)
            return Activation(fencingToken: token, record: record)
        }
    }

    public func write(_ key: ActorKey, state: StateBlob, fencingToken: UInt64) async throws -> UInt64 {
        let now = SQLiteInt64(Self.nowMillis())
        return try await run { connection in
            // coalesce: sqlite-nio may bind an empty buffer as NULL; store it as an empty blob.
            let rows = try await connection.query(
                """
                UPDATE troupe_actors
                SET state_type = ?1, state = coalesce(?2, x''), revision = revision + 1, updated_at = ?3
                WHERE system = ?4 AND actor = ?5 AND fencing_token = ?6
                RETURNING revision
                """,
                [
                    .text(state.typeURL), .blob(ByteBuffer(bytes: state.bytes)), .integer(now),
                    .text(key.system), .text(key.name), SQLiteRecords.bind(fencingToken),
                ]
            )
            if let row = rows.first {
                return try SQLiteRecords.unsigned(row, "revision", key: key)
            }
            // Nothing matched: only explaining why is left, so a second statement is fine here.
            let current = try await connection.query(
                "SELECT fencing_token FROM troupe_actors WHERE system = ?1 AND actor = ?2",
                [.text(key.system), .text(key.name)]
            )
            guard let row = current.first else {
                throw TroupeError.notFound("actor \(key) does not exist", details: ["actor": key.description])
            }
            let token = try SQLiteRecords.unsigned(row, "fencing_token", key: key)
            throw TroupeError.staleToken(key, current: token, carried: fencingToken)
        }
    }

    public func spawn(_ keys: [ActorKey], actorType: String) async throws -> [ActorKey] {
        var seen = Set<ActorKey>()
        let keys = keys.filter { seen.insert($0).inserted }
        let now = SQLiteInt64(Self.nowMillis())
        return try await run { connection in
            // Check every key before inserting any, so a type clash creates nothing. A clashing
            // row that appears between the check and the insert is skipped by DO NOTHING.
            for chunk in keys.chunked(Self.spawnChunk) {
                let rows = try await connection.query(
                    """
                    SELECT system, actor, actor_type FROM troupe_actors
                    WHERE (system, actor) IN (VALUES \(Array(repeating: "(?, ?)", count: chunk.count).joined(separator: ", ")))
                    """,
                    chunk.flatMap { [SQLiteData.text($0.system), .text($0.name)] }
                )
                for row in rows {
                    let key = ActorKey(
                        system: try SQLiteRecords.text(row, "system", key: chunk[0]),
                        name: try SQLiteRecords.text(row, "actor", key: chunk[0])
                    )
                    let stored = try SQLiteRecords.text(row, "actor_type", key: key)
                    guard stored == actorType else {
                        throw TroupeError.spawnClash(key, stored: stored, requested: actorType)
                    }
                }
            }
            var created = Set<ActorKey>()
            for chunk in keys.chunked(Self.spawnChunk) {
                let rows = try await connection.query(
                    """
                    INSERT INTO troupe_actors (system, actor, actor_type, created_at, updated_at)
                    VALUES \(Array(repeating: "(?, ?, ?, ?, ?)", count: chunk.count).joined(separator: ", "))
                    ON CONFLICT (system, actor) DO NOTHING
                    RETURNING system, actor
                    """,
                    chunk.flatMap {
                        [SQLiteData.text($0.system), .text($0.name), .text(actorType), .integer(now), .integer(now)]
                    }
                )
                for row in rows {
                    created.insert(
                        ActorKey(
                            system: try SQLiteRecords.text(row, "system", key: chunk[0]),
                            name: try SQLiteRecords.text(row, "actor", key: chunk[0])
                        ))
                }
            }
            // RETURNING order is unspecified; answer in the caller's order.
            return keys.filter { created.contains($0) }
        }
    }

    public func read(_ key: ActorKey) async throws -> ActorRecord? {
        try await run { connection in
            let rows = try await connection.query(
                "SELECT \(SQLiteRecords.columns) FROM troupe_actors WHERE system = ?1 AND actor = ?2",
                [.text(key.system), .text(key.name)]
            )
            return try rows.first.map { try SQLiteRecords.record($0, key: key) }
        }
    }

    /// Keys per spawn statement: well under SQLite's limit on bound parameters.
    private static var spawnChunk: Int { 100 }
}

extension Array {
    fileprivate func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
