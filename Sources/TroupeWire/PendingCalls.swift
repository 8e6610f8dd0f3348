public import NIOCore

/// The calls one connection is waiting on, with their deadlines: the state machine behind the
/// connection's single deadline timer.
///
/// It does no I/O and reads no clock. The connection arms one timer for ``earliestDeadline``;
/// when it fires it takes the ``expire(now:)`` calls and re-arms for the next. So a connection
/// with thousands of calls in flight still has one timer, not one sleeping task per call.
public struct PendingCalls<Value> {
    private var entries: [UInt64: (deadline: NIODeadline, value: Value)] = [:]
    /// No pending deadline is earlier (removals may leave it lower than the true earliest).
    private var lowerBound: NIODeadline?
    /// `lowerBound` is the earliest pending deadline itself, not only a bound: right after an
    /// expiry, and after inserting an earlier one, until the call holding it is removed.
    private var lowerBoundIsExact = true

    public init() {}

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// Adds call `id` in constant time. Returns true when its deadline is earlier than every
    /// deadline added since the last expiry, so the timer must be moved forward.
    @discardableResult
    public mutating func insert(_ id: UInt64, deadline: NIODeadline, _ value: Value) -> Bool {
        let earlier = lowerBound.map { deadline < $0 } ?? true
        if earlier {
            lowerBound = deadline
            lowerBoundIsExact = true
        }
        entries[id] = (deadline, value)
        return earlier
    }

    /// Whether call `id` is still waiting.
    public func contains(_ id: UInt64) -> Bool { entries[id] != nil }

    /// Removes call `id` (its answer arrived, or it was cancelled).
    public mutating func remove(_ id: UInt64) -> Value? {
        guard let entry = entries.removeValue(forKey: id) else { return nil }
        if entry.deadline == lowerBound { lowerBoundIsExact = false }
        return entry.value
    }

    /// Removes and returns the calls whose deadline is `now` or earlier, earliest first.
    public mutating func expire(now: NIODeadline) -> [(id: UInt64, value: Value)] {
        let due = entries.filter { $0.value.deadline <= now }.sorted { $0.value.deadline < $1.value.deadline }
        for (id, _) in due { entries.removeValue(forKey: id) }
        lowerBound = entries.values.lazy.map(\.deadline).min()
        lowerBoundIsExact = true
        return due.map { ($0.key, $0.value.value) }
    }

    /// Removes and returns every call: the connection is gone.
    public mutating func removeAll() -> [Value] {
        defer {
            entries.removeAll()
            lowerBound = nil
            lowerBoundIsExact = true
        }
        return entries.values.map(\.value)
    }

    /// When the timer must fire next; nil when nothing is pending. Constant right after
    /// ``expire(now:)`` (where the timer asks), linear after the earliest call was removed.
    public var earliestDeadline: NIODeadline? {
        if lowerBoundIsExact { return lowerBound }
        return entries.values.lazy.map(\.deadline).min()
    }
}
