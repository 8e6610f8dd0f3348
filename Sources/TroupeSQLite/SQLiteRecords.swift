import SQLiteNIO
import TroupeStore
import TroupeWire

/// Reads ``ActorRecord``s out of `troupe_actors` rows without trusting the file: a value of the
/// wrong type or sign becomes a `dataLoss` error, never a crash.
enum SQLiteRecords {
    /// The columns ``record(_:key:)`` reads, for SELECT and RETURNING lists.
    static let columns = "actor_type, state_type, state, revision, fencing_token, updated_at"

    static func record(_ row: SQLiteRow, key: ActorKey) throws -> ActorRecord {
        let revision = try unsigned(row, "revision", key: key)
        var state: StateBlob?
        // The revision, not the column's nullness, says whether state was ever written, so an
        // empty blob cannot be mistaken for "never written".
        if revision > 0 {
            let bytes = row.column("state")?.blob.map { Array($0.readableBytesView) } ?? []
            state = StateBlob(typeURL: try text(row, "state_type", key: key), bytes: bytes)
        }
        return ActorRecord(
            actorType: try text(row, "actor_type", key: key),
            state: state,
            revision: revision,
            updatedAtMillis: try integer(row, "updated_at", key: key)
        )
    }

    static func text(_ row: SQLiteRow, _ column: String, key: ActorKey) throws -> String {
        guard case .text(let value)? = row.column(column) else {
            throw malformed(row, column, key: key)
        }
        return value
    }

    static func integer(_ row: SQLiteRow, _ column: String, key: ActorKey) throws -> Int64 {
        guard case .integer(let value)? = row.column(column) else {
            throw malformed(row, column, key: key)
        }
        return Int64(value)
    }

    static func unsigned(_ row: SQLiteRow, _ column: String, key: ActorKey) throws -> UInt64 {
        guard let value = UInt64(exactly: try integer(row, column, key: key)) else {
            throw malformed(row, column, key: key)
        }
        return value
    }

    /// Binds a token or revision. Values past Int64.max never occur in the file, so wrapping
    /// them to a negative number keeps them from matching any row, which is the right answer.
    static func bind(_ value: UInt64) -> SQLiteData {
        .integer(SQLiteInt64(truncatingIfNeeded: Int64(bitPattern: value)))
    }

    private static func malformed(_ row: SQLiteRow, _ column: String, key: ActorKey) -> TroupeError {
        let found = row.column(column)?.description ?? "no such column"
        return TroupeError(
            .dataLoss,
            "state store: column \(column) of \(key) holds \(found)",
            details: ["actor": key.description]
        )
    }
}
