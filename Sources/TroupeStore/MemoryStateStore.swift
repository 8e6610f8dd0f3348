import Synchronization
package import TroupeWire

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A ``StateStore`` that keeps everything in process memory.
///
/// State is lost when the process exits, so use it for tests and for deployments whose actors
/// keep no state worth surviving a restart. It follows the same rules as every other store
/// (fencing tokens, typed errors), so code tested against it behaves the same on SQLite.
///
/// ```swift
/// let store = MemoryStateStore()
/// let activation = try await store.activate(ActorKey(system: "tickets", name: "event-42"), actorType: "Event")
/// _ = try await store.write(key, state: blob, fencingToken: activation.fencingToken)
/// ```
public final class MemoryStateStore: StateStore, ReminderStore {
    private struct Entry {
        var record: ActorRecord
        var fencingToken: UInt64
    }

    /// nil once closed, so every call after ``close()`` can tell.
    private let actors = Mutex<[ActorKey: Entry]?>([:])
    /// nil once closed, like `actors`.
    private let reminderTable = Mutex<MemoryReminders?>(MemoryReminders())

    /// Creates an empty store.
    public init() {}

    public var description: String { "memory" }

    public func activate(_ key: ActorKey, actorType: String) async throws -> Activation {
        let now = Self.nowMillis()
        return try withOpenActors { actors in
            var entry =
                actors[key]
                ?? Entry(
                    record: ActorRecord(actorType: actorType, state: nil, revision: 0, updatedAtMillis: now),
                    fencingToken: 0
                )
            // Bump even on a type clash, as SQLite does: the token only has to grow.
            entry.fencingToken += 1
            actors[key] = entry
            guard entry.record.actorType == actorType else {
                throw TroupeError.typeClash(key, stored: entry.record.actorType, requested: actorType)
            }
            return Activation(fencingToken: entry.fencingToken, record: entry.record)
        }
    }

    public func write(_ key: ActorKey, state: StateBlob, fencingToken: UInt64) async throws -> UInt64 {
        let now = Self.nowMillis()
        return try withOpenActors { actors in
            guard var entry = actors[key] else {
                throw TroupeError.notFound("actor \(key) does not exist", details: ["actor": key.description])
            }
            guard entry.fencingToken == fencingToken else {
                throw TroupeError.staleToken(key, current: entry.fencingToken, carried: fencingToken)
            }
            entry.record.state = state
            entry.record.revision += 1
            entry.record.updatedAtMillis = now
            actors[key] = entry
            return entry.record.revision
        }
    }

    public func spawn(_ keys: [ActorKey], actorType: String) async throws -> [ActorKey] {
        let now = Self.nowMillis()
        return try withOpenActors { actors in
            // Check everything before creating anything, so a clash leaves the store untouched.
            for key in keys {
                if let existing = actors[key], existing.record.actorType != actorType {
                    throw TroupeError.spawnClash(key, stored: existing.record.actorType, requested: actorType)
                }
            }
            var created: [ActorKey] = []
            for key in keys where actors[key] == nil {
                actors[key] = Entry(
                    record: ActorRecord(actorType: actorType, state: nil, revision: 0, updatedAtMillis: now),
                    fencingToken: 0
                )
                created.append(key)
            }
            return created
        }
    }

    public func read(_ key: ActorKey) async throws -> ActorRecord? {
        try withOpenActors { $0[key]?.record }
    }

    public func close() async throws {
        actors.withLock { $0 = nil }
        reminderTable.withLock { $0 = nil }
    }

    // MARK: ReminderStore

    public func setReminder(_ reminder: Reminder) async throws {
        if let error = TroupeError.invalidReminder(reminder) { throw error }
        try withOpenReminders { $0.set(reminder) }
    }

    @discardableResult
    public func cancelReminder(_ key: ActorKey, name: String) async throws -> Bool {
        try withOpenReminders { $0.cancel(key, name: name) }
    }

    public func claimDue(nowMillis: Int64, leaseMillis: Int64, limit: Int) async throws -> [ClaimedReminder] {
        try withOpenReminders { $0.claimDue(nowMillis: nowMillis, leaseMillis: leaseMillis, limit: limit) }
    }

    public func settle(_ claim: ClaimedReminder, nextDueAtMillis: Int64?) async throws {
        try withOpenReminders { $0.settle(claim, nextDueAtMillis: nextDueAtMillis) }
    }

    public func retry(_ claim: ClaimedReminder, atMillis: Int64) async throws {
        try withOpenReminders { $0.retry(claim, atMillis: atMillis) }
    }

    public func reminders(of key: ActorKey) async throws -> [Reminder] {
        try withOpenReminders { $0.reminders(of: key) }
    }

    private func withOpenReminders<T>(_ body: (inout MemoryReminders) throws -> T) throws -> T {
        try Self.withOpen(reminderTable, body)
    }

    private func withOpenActors<T>(_ body: (inout [ActorKey: Entry]) throws -> T) throws -> T {
        try Self.withOpen(actors, body)
    }

    /// Runs `body` on the value in `box`, or throws `unavailable` once the store is closed (nil).
    private static func withOpen<Value: Sendable, T>(
        _ box: borrowing Mutex<Value?>, _ body: (inout Value) throws -> T
    ) throws -> T {
        try box.withLock { value in
            guard var open = value else {
                throw TroupeError.unavailable("state store: memory store is closed")
            }
            // Take the value out while mutating it so it is not copied on write.
            value = nil
            defer { value = open }
            return try body(&open)
        }
    }

    private static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}

extension TroupeError {
    /// The failure of activating an actor as a type other than the one it was created as.
    /// Shared by the stores so every backend words it the same.
    package static func typeClash(_ key: ActorKey, stored: String, requested: String) -> TroupeError {
        .failedPrecondition(
            "actor \(key) exists as type \(stored), not \(requested)",
            details: ["actor": key.description, "actorType": stored, "requestedType": requested]
        )
    }

    /// The failure of spawning an actor that exists as another type.
    package static func spawnClash(_ key: ActorKey, stored: String, requested: String) -> TroupeError {
        .alreadyExists(
            "actor \(key) already exists as type \(stored), not \(requested)",
            details: ["actor": key.description, "actorType": stored, "requestedType": requested]
        )
    }

    /// The failure of a write from an activation that a newer one has replaced.
    package static func staleToken(_ key: ActorKey, current: UInt64, carried: UInt64) -> TroupeError {
        .failedPrecondition(
            "a newer activation of \(key) holds fencing token \(current); this write carried \(carried)",
            details: ["actor": key.description]
        )
    }
}
