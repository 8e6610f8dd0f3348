import Logging
import NIOCore
import PostgresNIO
import TroupeStore
import TroupeWire

/// Writes one batch of ``WriteQueue`` with a single UPDATE and answers every writer in it.
struct GroupCommit: Sendable {
    let client: PostgresClient
    /// The quoted, schema-qualified actor table.
    let table: String
    let logger: Logger

    func flush(_ batch: [WriteQueue.Write]) async {
        let revisions: [ActorKey: UInt64]
        do {
            revisions = try await update(batch)
        } catch {
            fail(batch, error)
            return
        }
        var missed: [WriteQueue.Write] = []
        for write in batch {
            if let revision = revisions[write.key] {
                write.reply.resume(returning: revision)
            } else {
                missed.append(write)
            }
        }
        guard !missed.isEmpty else { return }
        // Committed writes are answered already; a failure here only concerns the refused ones.
        let tokens: [ActorKey: UInt64]
        do {
            tokens = try await currentTokens(of: missed.map(\.key))
        } catch {
            fail(missed, error)
            return
        }
        for write in missed {
            if let current = tokens[write.key] {
                write.reply.resume(
                    throwing: TroupeError.staleToken(write.key, current: current, carried: write.fencingToken))
            } else {
                write.reply.resume(
                    throwing: TroupeError.notFound(
                        "actor \(write.key) does not exist", details: ["actor": write.key.description]))
            }
        }
    }

    private func fail(_ writes: [WriteQueue.Write], _ error: any Error) {
        let failure = PostgresErrors.operating(error)
        // Cancelled by the write queue's timeout: its writers were answered then, and logged by it.
        if Task.isCancelled {
            logger.debug("group commit cancelled after its timeout", metadata: ["writes": "\(writes.count)"])
        } else {
            logger.warning("group commit failed", metadata: ["writes": "\(writes.count)", "error": "\(failure.message)"])
        }
        for write in writes { write.reply.resume(throwing: failure) }
    }

    /// Applies the writes whose token is still the latest; returns their new revisions.
    private func update(_ batch: [WriteQueue.Write]) async throws -> [ActorKey: UInt64] {
        let systems = batch.map(\.key.system)
        let actors = batch.map(\.key.name)
        let tokens = batch.map { PostgresRecords.bind($0.fencingToken) }
        let types = batch.map(\.state.typeURL)
        let states = batch.map { ByteBuffer(bytes: $0.state.bytes) }
        let rows = try await client.query(
            """
            UPDATE \(unescaped: table) AS t
            SET state_type = v.state_type, state = v.state, revision = t.revision + 1, updated_at = now()
            FROM unnest(\(systems)::text[], \(actors)::text[], \(tokens)::bigint[], \(types)::text[], \(states)::bytea[])
                AS v(system, actor, token, state_type, state)
            WHERE t.system = v.system AND t.actor = v.actor AND t.fencing_token = v.token
            RETURNING t.system, t.actor, t.revision
            """,
            logger: logger
        )
        var revisions: [ActorKey: UInt64] = [:]
        for try await (system, actor, revision) in rows.decode((String, String, Int64).self) {
            let key = ActorKey(system: system, name: actor)
            revisions[key] = try PostgresRecords.unsigned(revision, "revision", key: key)
        }
        return revisions
    }

    /// The current tokens of those of `keys` that exist, to explain refused writes.
    private func currentTokens(of keys: [ActorKey]) async throws -> [ActorKey: UInt64] {
        let rows = try await client.query(
            """
            SELECT system, actor, fencing_token FROM \(unescaped: table)
            WHERE (system, actor) IN (SELECT * FROM unnest(\(keys.map(\.system))::text[], \(keys.map(\.name))::text[]))
            """,
            logger: logger
        )
        var tokens: [ActorKey: UInt64] = [:]
        for try await (system, actor, token) in rows.decode((String, String, Int64).self) {
            let key = ActorKey(system: system, name: actor)
            tokens[key] = try PostgresRecords.unsigned(token, "fencing_token", key: key)
        }
        return tokens
    }
}
