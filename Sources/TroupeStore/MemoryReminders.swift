import HeapModule
import TroupeWire

/// The reminders of a ``MemoryStateStore``: rows by (actor, name), and a heap of the time each
/// row can next be claimed, so a claim touches only due rows.
///
/// Heap entries are not removed when a row changes; each carries the row's version, and an entry
/// whose version is no longer the row's is dropped when it reaches the top.
struct MemoryReminders {
    private struct ID: Hashable {
        var key: ActorKey
        var name: String
    }

    private struct Row {
        var reminder: Reminder
        var version: UInt64
        var leaseUntil: Int64 = 0
        var leaseToken: Int64 = 0
        var attempts = 0
    }

    private struct Entry: Comparable {
        var at: Int64
        var version: UInt64
        var id: ID

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            (lhs.at, lhs.version) < (rhs.at, rhs.version)
        }
        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.at == rhs.at && lhs.version == rhs.version }
    }

    private var rows: [ID: Row] = [:]
    private var byTime = Heap<Entry>()
    private var nextVersion: UInt64 = 1
    private var nextToken: Int64 = 1

    mutating func set(_ reminder: Reminder) {
        let id = ID(key: reminder.key, name: reminder.name)
        let version = takeVersion()
        rows[id] = Row(reminder: reminder, version: version)
        byTime.insert(Entry(at: reminder.dueAtMillis, version: version, id: id))
    }

    mutating func cancel(_ key: ActorKey, name: String) -> Bool {
        rows.removeValue(forKey: ID(key: key, name: name)) != nil
    }

    mutating func claimDue(nowMillis: Int64, leaseMillis: Int64, limit: Int) -> [ClaimedReminder] {
        var claimed: [ClaimedReminder] = []
        while claimed.count < limit, let top = byTime.min, top.at <= nowMillis {
            _ = byTime.popMin()
            guard var row = rows[top.id], row.version == top.version else { continue }
            row.version = takeVersion()
            row.leaseUntil = nowMillis + leaseMillis
            row.leaseToken = nextToken
            nextToken += 1
            rows[top.id] = row
            // Claimable again only once the lease has run out.
            byTime.insert(Entry(at: row.leaseUntil + 1, version: row.version, id: top.id))
            claimed.append(ClaimedReminder(reminder: row.reminder, leaseToken: row.leaseToken, attempts: row.attempts))
        }
        return claimed
    }

    mutating func settle(_ claim: ClaimedReminder, nextDueAtMillis: Int64?) {
        let id = ID(key: claim.reminder.key, name: claim.reminder.name)
        guard var row = rows[id], row.leaseToken == claim.leaseToken else { return }
        guard let next = nextDueAtMillis else {
            rows.removeValue(forKey: id)
            return
        }
        row.reminder.dueAtMillis = next
        reschedule(&row, id: id, attempts: 0)
    }

    mutating func retry(_ claim: ClaimedReminder, atMillis: Int64) {
        let id = ID(key: claim.reminder.key, name: claim.reminder.name)
        guard var row = rows[id], row.leaseToken == claim.leaseToken else { return }
        row.reminder.dueAtMillis = atMillis
        reschedule(&row, id: id, attempts: row.attempts + 1)
    }

    func reminders(of key: ActorKey) -> [Reminder] {
        rows.values.filter { $0.reminder.key == key }.map(\.reminder).sorted { $0.name < $1.name }
    }

    private mutating func reschedule(_ row: inout Row, id: ID, attempts: Int) {
        row.version = takeVersion()
        row.leaseUntil = 0
        row.leaseToken = 0
        row.attempts = attempts
        rows[id] = row
        byTime.insert(Entry(at: row.reminder.dueAtMillis, version: row.version, id: id))
    }

    private mutating func takeVersion() -> UInt64 {
        defer { nextVersion += 1 }
        return nextVersion
    }
}
