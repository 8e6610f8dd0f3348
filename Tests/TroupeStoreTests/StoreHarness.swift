import Foundation
import Testing
import TroupeSQLite
import TroupeStore
import TroupeWire

/// The backends the behavioural suite runs against. Add a case here and every behaviour in
/// `StateStoreBehaviourTests` runs against the new backend.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case sqlite

    var testDescription: String { rawValue }

    func open(in directory: TemporaryDirectory) async throws -> any StateStore {
        switch self {
        case .memory: MemoryStateStore()
        case .sqlite:
            try await SQLiteStateStore.open(
                path: directory.file("troupe.sqlite"), logger: .init(label: "troupe-store-tests"))
        }
    }
}

/// Runs `body` against a fresh store of `kind` and closes it afterwards, also when `body` throws.
func withStore(_ kind: StoreKind, _ body: (any StateStore) async throws -> Void) async throws {
    try await withTemporaryDirectory { directory in
        let store = try await kind.open(in: directory)
        do {
            try await body(store)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }
}

/// A directory under the system temp directory, unique per test.
struct TemporaryDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("troupe-store-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

func withTemporaryDirectory(_ body: (TemporaryDirectory) async throws -> Void) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    try await body(directory)
}

/// Opens the SQLite store at `path` with a short lock wait, so contention tests fail fast.
func openSQLite(_ path: String, busyTimeout: Duration = .seconds(5)) async throws -> SQLiteStateStore {
    try await SQLiteStateStore.open(path: path, logger: .init(label: "troupe-store-tests"), busyTimeout: busyTimeout)
}

/// Expects `body` to throw a ``TroupeError`` with `code`, and returns it for further checks.
@discardableResult
func expectTroupeError<T>(
    _ code: TroupeError.Code,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> T
) async -> TroupeError? {
    let error = await #expect(throws: TroupeError.self, sourceLocation: sourceLocation) {
        _ = try await body()
    }
    #expect(error?.code == code, "expected \(code), got \(String(describing: error))", sourceLocation: sourceLocation)
    return error
}

func key(_ name: String, system: String = "tickets") -> ActorKey {
    ActorKey(system: system, name: name)
}

func blob(_ text: String, type: String = "type.example/Seat") -> StateBlob {
    StateBlob(typeURL: type, bytes: Array(text.utf8))
}
