import SQLiteNIO
public import TroupeStore
import TroupeWire

extension SQLiteStateStore: ReminderStore {
    public func setReminder(_ reminder: Reminder) async throws {
        if let error = TroupeError.invalidReminder(reminder) { throw error }
        let now = SQLiteInt64(Self.nowMillis())
        try await run { connection in
            // Replacing drops any lease: a scheduler firing the old reminder cannot settle the new one.
            _ = try await connection.query(
                """
                INSERT INTO troupe_reminders (system, actor, name, body, due_at, period_ms, ready_at, created_at)
                VALUES (?1, ?2, ?3, coalesce(?4, x''), ?5, ?6, ?5, ?7)
                ON CONFLICT (system, actor, name) DO UPDATE SET
                    body = excluded.body, due_at = excluded.due_at, period_ms = excluded.period_ms,
                    ready_at = excluded.due_at, lease_token = 0, attempts = 0
                """,
                [
                    .text(reminder.key.system), .text(reminder.key.name), .text(reminder.name),
                    .blob(ByteBuffer(bytes: reminder.body)), .integer(SQLiteInt64(reminder.dueAtMillis)),
                    .integer(SQLiteInt64(reminder.periodMillis)), .integer(now),
                ]
            )
        }
    }

    @discardableResult
    public func cancelReminder(_ key: ActorKey, name: String) async throws -> Bool {
        try await run { connection in
            let rows = try await connection.query(
                "DELETE FROM troupe_reminders WHERE system = ?1 AND actor = ?2 AND name = ?3 RETURNING name",
                [.text(key.system), .text(key.name), .text(name)]
            )
            return !rows.isEmpty
        }
    }

    public func claimDue(nowMillis: Int64, leaseMillis: Int64, limit: Int) async throws -> [ClaimedReminder] {
        let token = Int64.random(in: 1...Int64.max)
        return try await run { connection in
            // One statement, so no other caller of the shared connection can claim the same rows.
            let rows = try await connection.query(
                """
                UPDATE troupe_reminders SET ready_at = ?1, lease_token = ?2
                WHERE (system, actor, name) IN (
                    SELECT system, actor, name FROM troupe_reminders
                    WHERE ready_at <= ?3 ORDER BY ready_at LIMIT ?4)
                RETURNING system, actor, name, body, due_at, period_ms, attempts
                """,
                [
                    .integer(SQLiteInt64(nowMillis + leaseMillis + 1)), .integer(SQLiteInt64(token)),
                    .integer(SQLiteInt64(nowMillis)), .integer(SQLiteInt64(limit)),
                ]
            )
            let claimed = try rows.map { row in
                let key = ActorKey(
                    system: try SQLiteRecords.text(row, "system", key: ActorKey(system: "?", name: "?")),
                    name: try SQLiteRecords.text(row, "actor", key: ActorKey(system: "?", name: "?")))
                let body = row.column("body")?.blob.map { Array($0.readableBytesView) } ?? []
                return ClaimedReminder(
                    reminder: Reminder(
                        key: key, name: try SQLiteRecords.text(row, "name", key: key), body: body,
                        dueAtMillis: try SQLiteRecords.integer(row, "due_at", key: key),
                        periodMillis: try SQLiteRecords.integer(row, "period_ms", key: key)),
                    leaseToken: token, attempts: Int(try SQLiteRecords.integer(row, "attempts", key: key)))
            }
            // RETURNING order is unspecified; fire the earliest first.
            return claimed.sorted { $0.reminder.dueAtMillis < $1.reminder.dueAtMillis }
        }
    }

    public func settle(_ claim: ClaimedReminder, nextDueAtMillis: Int64?) async throws {
        let reminder = claim.reminder
        try await run { connection in
            if let next = nextDueAtMillis {
                _ = try await connection.query(
                    """
                    UPDATE troupe_reminders SET due_at = ?1, ready_at = ?1, lease_token = 0, attempts = 0
                    WHERE system = ?2 AND actor = ?3 AND name = ?4 AND lease_token = ?5
                    """,
                    [
                        .integer(SQLiteInt64(next)), .text(reminder.key.system), .text(reminder.key.name),
                        .text(reminder.name), .integer(SQLiteInt64(claim.leaseToken)),
                    ]
                )
            } else {
                _ = try await connection.query(
                    "DELETE FROM troupe_reminders WHERE system = ?1 AND actor = ?2 AND name = ?3 AND lease_token = ?4",
                    [
                        .text(reminder.key.system), .text(reminder.key.name), .text(reminder.name),
                        .integer(SQLiteInt64(claim.leaseToken)),
                    ]
                )
            }
        }
    }

    public func retry(_ claim: ClaimedReminder, atMillis: Int64) async throws {
        let reminder = claim.reminder
        try await run { connection in
            _ = try await connection.query(
                """
                UPDATE troupe_reminders SET due_at = ?1, ready_at = ?1, lease_token = 0, attempts = attempts + 1
                WHERE system = ?2 AND actor = ?3 AND name = ?4 AND lease_token = ?5
                """,
                [
                    .integer(SQLiteInt64(atMillis)), .text(reminder.key.system), .text(reminder.key.name),
                    .text(reminder.name), .integer(SQLiteInt64(claim.leaseToken)),
                ]
            )
        }
    }

    public func reminders(of key: ActorKey) async throws -> [Reminder] {
        try await run { connection in
            let rows = try await connection.query(
                """
                SELECT name, body, due_at, period_ms FROM troupe_reminders
                WHERE system = ?1 AND actor = ?2 ORDER BY name
                """,
                [.text(key.system), .text(key.name)]
            )
            return try rows.map { row in
                Reminder(
                    key: key, name: try SQLiteRecords.text(row, "name", key: key),
                    body: row.column("body")?.blob.map { Array($0.readableBytesView) } ?? [],
                    dueAtMillis: try SQLiteRecords.integer(row, "due_at", key: key),
                    periodMillis: try SQLiteRecords.integer(row, "period_ms", key: key))
            }
        }
    }
}
