import NIOCore
import PostgresNIO
public import TroupeStore
import TroupeWire

extension PostgresStateStore {
    public func activate(_ key: ActorKey, actorType: String) async throws -> Activation {
        try await run { client in
            // One statement: creating and bumping the token cannot be split by another sidecar.
            let rows = try await client.query(
                """
                INSERT INTO \(unescaped: self.table) AS t (system, actor, actor_type, fencing_token)
                VALUES (\(key.system), \(key.name), \(actorType), 1)
                ON CONFLICT (system, actor) DO UPDATE SET fencing_token = t.fencing_token + 1
                RETURNING \(unescaped: PostgresRecords.columns)
                """,
                logger: self.logger
            )
            guard let row = try await rows.collect().first else {
                throw TroupeError.unavailable("state store: activating \(key) returned no row")
            }
            let (record, token) = try PostgresRecords.record(row, key: key)
            // The token was bumped anyway; harmless, since tokens only have to grow.
            guard record.actorType == actorType else {
                throw TroupeError.typeClash(key, stored: record.actorType, requested: actorType)
            }
            return Activation(fencingToken: token, record: record)
        }
    }

    public func spawn(_ keys: [ActorKey], actorType: String) async throws -> [ActorKey] {
        var seen = Set<ActorKey>()
        let keys = keys.filter { seen.insert($0).inserted }
        guard !keys.isEmpty else { return try await run { _ in [] } }
        let systems = keys.map(\.system)
        let names = keys.map(\.name)
        return try await run { client in
            // Check every key before inserting any, so a type clash creates nothing. A clashing
            // row that appears between the check and the insert is skipped by DO NOTHING.
            let existing = try await client.query(
                """
                SELECT system, actor, actor_type FROM \(unescaped: self.table)
                WHERE (system, actor) IN (SELECT * FROM unnest(\(systems)::text[], \(names)::text[]))
                """,
                logger: self.logger
            )
            for try await (system, actor, stored) in existing.decode((String, String, String).self)
            where stored != actorType {
                throw TroupeError.spawnClash(
                    ActorKey(system: system, name: actor), stored: stored, requested: actorType)
            }
            let inserted = try await client.query(
                """
                INSERT INTO \(unescaped: self.table) (system, actor, actor_type)
                SELECT k.system, k.actor, \(actorType) FROM unnest(\(systems)::text[], \(names)::text[]) AS k(system, actor)
                ON CONFLICT (system, actor) DO NOTHING
                RETURNING system, actor
                """,
                logger: self.logger
            )
            var created = Set<ActorKey>()
            for try await (system, actor) in inserted.decode((String, String).self) {
                created.insert(ActorKey(system: system, name: actor))
            }
            // RETURNING order is unspecified; answer in the caller's order.
            return keys.filter { created.contains($0) }
        }
    }

    public func read(_ key: ActorKey) async throws -> ActorRecord? {
        try await run { client in
            let rows = try await client.query(
                """
                SELECT \(unescaped: PostgresRecords.columns) FROM \(unescaped: self.table)
                WHERE system = \(key.system) AND actor = \(key.name)
                """,
                logger: self.logger
            )
            return try await rows.collect().first.map { try PostgresRecords.record($0, key: key).record }
        }
    }
}
