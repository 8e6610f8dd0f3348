import NIOCore
import PostgresNIO
public import TroupeStore
import TroupeWire

extension PostgresStateStore: ReminderStore {
    /// The quoted, schema-qualified reminder table.
    var reminderTable: String { "\(PostgresSchema.quoted(configuration.schema)).troupe_reminders" }

    public func setReminder(_ reminder: Reminder) async throws {
        if let error = TroupeError.invalidReminder(reminder) { throw error }
        let body = ByteBuffer(bytes: reminder.body)
        try await run { client in
            // Replacing drops any lease: a scheduler firing the old reminder cannot settle the new one.
            try await client.query(
                """
                INSERT INTO \(unescaped: self.reminderTable) (system, actor, name, body, due_at, period_ms, ready_at)
                VALUES (\(reminder.key.system), \(reminder.key.name), \(reminder.name), \(body),
                        \(reminder.dueAtMillis), \(reminder.periodMillis), \(reminder.dueAtMillis))
                ON CONFLICT (system, actor, name) DO UPDATE SET
                    body = excluded.body, due_at = excluded.due_at, period_ms = excluded.period_ms,
                    ready_at = excluded.due_at, lease_token = 0, attempts = 0
                """,
                logger: self.logger
            )
        }
    }

    @discardableResult
    public func cancelReminder(_ key: ActorKey, name: String) async throws -> Bool {
        try await run { client in
            let rows = try await client.query(
                """
                DELETE FROM \(unescaped: self.reminderTable)
                WHERE system = \(key.system) AND actor = \(key.name) AND name = \(name) RETURNING name
                """,
                logger: self.logger
            )
            return try await !rows.collect().isEmpty
        }
    }

    public func claimDue(nowMillis: Int64, leaseMillis: Int64, limit: Int) async throws -> [ClaimedReminder] {
        let token = Int64.random(in: 1...Int64.max)
        let leaseEnd = nowMillis + leaseMillis + 1
        return try await run { client in
            // SKIP LOCKED: sidecars claiming at the same moment take disjoint rows instead of
            // waiting for each other; the lease keeps a claimed row from every other claim after.
            let rows = try await client.query(
                """
                UPDATE \(unescaped: self.reminderTable) AS r SET ready_at = \(leaseEnd), lease_token = \(token)
                FROM (
                    SELECT system, actor, name FROM \(unescaped: self.reminderTable)
                    WHERE ready_at <= \(nowMillis) ORDER BY ready_at LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED
                ) AS due
                WHERE r.system = due.system AND r.actor = due.actor AND r.name = due.name
                RETURNING r.system, r.actor, r.name, r.body, r.due_at, r.period_ms, r.attempts
                """,
                logger: self.logger
            )
            var claimed: [ClaimedReminder] = []
            for try await (system, actor, name, body, due, period, attempts) in rows.decode(
                (String, String, String, ByteBuffer, Int64, Int64, Int32).self)
            {
                claimed.append(
                    ClaimedReminder(
                        reminder: Reminder(
                            key: ActorKey(system: system, name: actor), name: name,
                            body: Array(body.readableBytesView), dueAtMillis: due, periodMillis: period),
                        leaseToken: token, attempts: Int(attempts)))
            }
            // RETURNING order is unspecified; fire the earliest first.
            return claimed.sorted { $0.reminder.dueAtMillis < $1.reminder.dueAtMillis }
        }
    }

    public func settle(_ claim: ClaimedReminder, nextDueAtMillis: Int64?) async throws {
        let (key, name, token) = (claim.reminder.key, claim.reminder.name, claim.leaseToken)
        try await run { client in
            if let next = nextDueAtMillis {
                try await client.query(
                    """
                    UPDATE \(unescaped: self.reminderTable)
                    SET due_at = \(next), ready_at = \(next), lease_token = 0, attempts = 0
                    WHERE system = \(key.system) AND actor = \(key.name) AND name = \(name) AND lease_token = \(token)
                    """,
                    logger: self.logger
                )
            } else {
                try await client.query(
                    """
                    DELETE FROM \(unescaped: self.reminderTable)
                    WHERE system = \(key.system) AND actor = \(key.name) AND name = \(name) AND lease_token = \(token)
                    """,
                    logger: self.logger
                )
            }
        }
    }

    public func retry(_ claim: ClaimedReminder, atMillis: Int64) async throws {
        let (key, name, token) = (claim.reminder.key, claim.reminder.name, claim.leaseToken)
        try await run { client in
            try await client.query(
                """
                UPDATE \(unescaped: self.reminderTable)
                SET due_at = \(atMillis), ready_at = \(atMillis), lease_token = 0, attempts = attempts + 1
                WHERE system = \(key.system) AND actor = \(key.name) AND name = \(name) AND lease_token = \(token)
                """,
                logger: self.logger
            )
        }
    }

    public func reminders(of key: ActorKey) async throws -> [Reminder] {
        try await run { client in
            let rows = try await client.query(
                """
                SELECT name, body, due_at, period_ms FROM \(unescaped: self.reminderTable)
                WHERE system = \(key.system) AND actor = \(key.name) ORDER BY name
                """,
                logger: self.logger
            )
            var found: [Reminder] = []
            for try await (name, body, due, period) in rows.decode((String, ByteBuffer, Int64, Int64).self) {
                found.append(
                    Reminder(
                        key: key, name: name, body: Array(body.readableBytesView), dueAtMillis: due,
                        periodMillis: period))
            }
            return found
        }
    }
}
