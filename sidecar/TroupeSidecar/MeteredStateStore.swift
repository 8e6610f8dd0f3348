import Metrics
import NIOCore
import TroupeStore
import TroupeWire

/// A ``StateStore`` that times every operation of `base` and counts its failures:
/// `troupe_store_operation_duration_seconds{operation}` and
/// `troupe_store_errors_total{operation, status}`. The sidecar puts it right around the backend,
/// so the times are the database's (and its connection pool's), without encryption.
final class MeteredStateStore: StateStore {
    enum Operation: String, CaseIterable, Sendable {
        case activate, write, spawn, read, close
    }

    let base: any StateStore
    private let timers: [Operation: Timer]

    init(wrapping base: any StateStore) {
        self.base = base
        var timers: [Operation: Timer] = [:]
        for operation in Operation.allCases {
            timers[operation] = Timer(
                label: "troupe_store_operation_duration_seconds", dimensions: [("operation", operation.rawValue)],
                preferredDisplayUnit: .seconds)
        }
        self.timers = timers
    }

    var description: String { base.description }

    func activate(_ key: ActorKey, actorType: String) async throws -> Activation {
        try await measured(.activate) { try await base.activate(key, actorType: actorType) }
    }

    func write(_ key: ActorKey, state: StateBlob, fencingToken: UInt64) async throws -> UInt64 {
        try await measured(.write) { try await base.write(key, state: state, fencingToken: fencingToken) }
    }

    func spawn(_ keys: [ActorKey], actorType: String) async throws -> [ActorKey] {
        try await measured(.spawn) { try await base.spawn(keys, actorType: actorType) }
    }

    func read(_ key: ActorKey) async throws -> ActorRecord? {
        try await measured(.read) { try await base.read(key) }
    }

    func close() async throws {
        try await measured(.close) { try await base.close() }
    }

    private func measured<T>(_ operation: Operation, _ body: () async throws -> T) async throws -> T {
        let started = NIODeadline.now()
        defer { timers[operation]?.recordNanoseconds((NIODeadline.now() - started).nanoseconds) }
        do {
            return try await body()
        } catch {
            // Created per failure: failures are rare, and their codes are a small fixed set.
            Counter(
                label: "troupe_store_errors_total",
                dimensions: [("operation", operation.rawValue), ("status", "\(TroupeError(wrapping: error).code)")]
            ).increment()
            throw error
        }
    }
}
