package import TroupeWire

/// A durable timer of one actor (a reminder, or a delayed call): one row per
/// (system, actor, name) in the store, found by its due time.
public struct Reminder: Sendable, Hashable {
    /// The actor it fires on.
    public var key: ActorKey
    /// Unique per actor; setting a name that exists replaces the reminder.
    public var name: String
    /// What to invoke, encoded by the runtime. The store never looks inside.
    public var body: [UInt8]
    /// Milliseconds since 1970 of the next firing.
    public var dueAtMillis: Int64
    /// 0 for a one-shot reminder (deleted after it fired), else the period in milliseconds.
    public var periodMillis: Int64

    public init(key: ActorKey, name: String, body: [UInt8], dueAtMillis: Int64, periodMillis: Int64) {
        self.key = key
        self.name = name
        self.body = body
        self.dueAtMillis = dueAtMillis
        self.periodMillis = periodMillis
    }
}

/// A due reminder that one scheduler has leased: no other scheduler sharing the store claims it
/// again until the lease runs out, and only the holder of `leaseToken` can settle it.
public struct ClaimedReminder: Sendable, Hashable {
    public var reminder: Reminder
    /// Unique to this claim: ``ReminderStore/settle(_:nextDueAtMillis:)`` and
    /// ``ReminderStore/retry(_:atMillis:)`` change the row only while it still carries it, so a
    /// reminder replaced or cancelled while it fired is left as its new owner set it.
    public var leaseToken: Int64
    /// Failed firings since the last successful one.
    public var attempts: Int

    public init(reminder: Reminder, leaseToken: Int64, attempts: Int) {
        self.reminder = reminder
        self.leaseToken = leaseToken
        self.attempts = attempts
    }
}

/// Where reminders live: the same database as the state, one row per reminder, indexed by due
/// time, so finding what is due never scans every actor (or every reminder).
///
/// Every implementation passes the same behavioural suite (Tests/TroupeStoreTests):
///
/// - ``claimDue(nowMillis:leaseMillis:limit:)`` returns reminders with `due <= now` whose lease
///   has run out, earliest first, and leases them until `now + leaseMillis`. Two schedulers sharing
///   a store never hold a lease on the same reminder at the same time.
/// - ``settle(_:nextDueAtMillis:)`` after a successful firing moves a repeating reminder to its
///   next due time (or deletes a one-shot one) and clears the lease and the attempt count;
///   ``retry(_:atMillis:)`` after a failed firing counts the attempt and makes it due again later.
///   Both do nothing if the reminder was set again or cancelled since it was claimed.
/// - ``setReminder(_:)`` replaces any reminder of that name and any lease on it.
public protocol ReminderStore: Sendable {
    /// Stores `reminder`, replacing one of the same actor and name.
    func setReminder(_ reminder: Reminder) async throws

    /// Deletes the reminder `name` of `key`; returns whether there was one.
    @discardableResult
    func cancelReminder(_ key: ActorKey, name: String) async throws -> Bool

    /// Leases up to `limit` due reminders, earliest first.
    func claimDue(nowMillis: Int64, leaseMillis: Int64, limit: Int) async throws -> [ClaimedReminder]

    /// After a successful firing: moves the reminder to `nextDueAtMillis`, or deletes it when nil.
    func settle(_ claim: ClaimedReminder, nextDueAtMillis: Int64?) async throws

    /// After a failed firing: counts the attempt and makes the reminder due at `atMillis`.
    func retry(_ claim: ClaimedReminder, atMillis: Int64) async throws

    /// The reminders of `key`, by name (for tools and tests).
    func reminders(of key: ActorKey) async throws -> [Reminder]
}

extension Reminder {
    /// The due time after a firing that was due at `dueAtMillis` and ran at `nowMillis`: one
    /// period on, skipping periods that passed meanwhile (a sidecar that was down for an hour
    /// fires once, not once per missed period). Nil for a one-shot reminder.
    public func nextDue(afterFiringAt nowMillis: Int64) -> Int64? {
        guard periodMillis > 0 else { return nil }
        let next = dueAtMillis + periodMillis
        guard next <= nowMillis else { return next }
        let missed = (nowMillis - dueAtMillis) / periodMillis
        return dueAtMillis + (missed + 1) * periodMillis
    }
}

extension TroupeError {
    /// A reminder's fields that no store accepts.
    package static func invalidReminder(_ reminder: Reminder) -> TroupeError? {
        if reminder.name.isEmpty { return .invalidArgument("a reminder of \(reminder.key) has no name") }
        if reminder.periodMillis < 0 {
            return .invalidArgument("reminder \(reminder.name) of \(reminder.key) has a negative period")
        }
        return nil
    }
}
