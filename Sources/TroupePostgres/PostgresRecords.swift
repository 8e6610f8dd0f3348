import NIOCore
import PostgresNIO
import TroupeStore
import TroupeWire

/// Reads ``ActorRecord``s out of `troupe_actors` rows without trusting the database: a negative
/// revision or token becomes a `dataLoss` error, never a crash.
enum PostgresRecords {
    /// The columns ``record(_:key:)`` reads, for SELECT and RETURNING lists.
    static let columns =
        "actor_type, state_type, state, revision, fencing_token, (extract(epoch FROM updated_at) * 1000)::bigint"

    /// The row type of ``columns``.
    typealias Columns = (String, String, ByteBuffer?, Int64, Int64, Int64)

    /// The record and fencing token of one row of ``columns``.
    static func record(_ row: PostgresRow, key: ActorKey) throws -> (record: ActorRecord, token: UInt64) {
        let (actorType, stateType, state, revision, token, updatedAt) = try row.decode(Columns.self)
        let written = try unsigned(revision, "revision", key: key)
        // The revision, not the column's nullness, says whether state was ever written, so an
        // empty blob cannot be mistaken for "never written".
        let blob =
            written > 0 ? StateBlob(typeURL: stateType, bytes: state.map { Array($0.readableBytesView) } ?? []) : nil
        return (
            ActorRecord(actorType: actorType, state: blob, revision: written, updatedAtMillis: updatedAt),
            try unsigned(token, "fencing_token", key: key)
        )
    }

    static func unsigned(_ value: Int64, _ column: String, key: ActorKey) throws -> UInt64 {
        guard let value = UInt64(exactly: value) else {
            throw TroupeError(
                .dataLoss,
                "state store: column \(column) of \(key) holds \(value)",
                details: ["actor": key.description]
            )
        }
        return value
    }

    /// Binds a token. Values past Int64.max never occur in the table, so wrapping them to a
    /// negative number keeps them from matching any row, which is the right answer.
    static func bind(_ value: UInt64) -> Int64 {
        Int64(bitPattern: value)
    }
}
