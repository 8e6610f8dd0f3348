import Foundation
import Logging
import Testing
import TroupePostgres
import TroupeSQLite
import TroupeStore
import TroupeWire

/// The backends the behavioural suite runs against. Add a case here and every behaviour in
/// `StateStoreBehaviourTests` runs against the new backend.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case sqlite
    case postgres

    /// Postgres only when scripts/test.sh provides a server; without one,
    /// `PostgresStateStoreTests.postgresSuiteNeedsTheTestServer` fails, so the gap is visible.
    static var allCases: [StoreKind] {
        PostgresTestServer.url == nil ? [.memory, .sqlite] : [.memory, .sqlite, .postgres]
    }

    var testDescription: String { rawValue }
}

/// Runs `body` against a fresh store of `kind` and closes it afterwards, also when `body` throws.
/// A Postgres store gets a schema of its own, dropped afterwards.
func withStore(_ kind: StoreKind, _ body: (any StateStore) async throws -> Void) async throws {
    switch kind {
    case .memory:
        try await withClosing(MemoryStateStore(), body)
    case .sqlite:
        try await withTemporaryDirectory { directory in
            try await withClosing(try await openSQLite(directory.file("troupe.sqlite")), body)
        }
    case .postgres:
        try await withPostgresSchema { configuration in
            try await withClosing(try await openPostgres(configuration), body)
        }
    }
}

private func withClosing(_ store: any StateStore, _ body: (any StateStore) async throws -> Void) async throws {
    do {
        try await body(store)
    } catch {
        try? await store.close()
        throw error
    }
    try await store.close()
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

func key(_ name: String, system: String = "tickets") -> ActorKey {
    ActorKey(system: system, name: name)
}

func blob(_ text: String, type: String = "type.example/Seat") -> StateBlob {
    StateBlob(typeURL: type, bytes: Array(text.utf8))
}

/// The PostgreSQL server scripts/test.sh starts, named by `TROUPE_TEST_PG_URL`.
enum PostgresTestServer {
    static let url: String? = ProcessInfo.processInfo.environment["TROUPE_TEST_PG_URL"].flatMap {
        $0.isEmpty ? nil : $0
    }

    static let logger = Logger(label: "troupe-store-tests")

    /// The test server's configuration with a schema no other test uses.
    static func freshConfiguration() throws -> PostgresStateStore.Configuration {
        guard let url else {
            throw TroupeError.unavailable("TROUPE_TEST_PG_URL is not set: run scripts/test.sh")
        }
        var configuration = try PostgresStateStore.Configuration(url: url)
        configuration.schema = "t_" + (0..<12).map { _ in String(Int.random(in: 0..<16), radix: 16) }.joined()
        // Tests run in parallel against one server with the default 100 connections.
        configuration.maxConnections = 4
        // The whole suite shares 2 cores with that server: a flush may wait longer than the
        // production default allows, and these tests are not about the timeout.
        configuration.operationTimeout = .seconds(30)
        return configuration
    }
}

/// Runs `body` with a fresh schema on the test server and drops the schema afterwards.
func withPostgresSchema(_ body: (PostgresStateStore.Configuration) async throws -> Void) async throws {
    let configuration = try PostgresTestServer.freshConfiguration()
    do {
        try await body(configuration)
    } catch {
        try? await PostgresStateStore.dropSchema(configuration: configuration, logger: PostgresTestServer.logger)
        throw error
    }
    try await PostgresStateStore.dropSchema(configuration: configuration, logger: PostgresTestServer.logger)
}

func openPostgres(_ configuration: PostgresStateStore.Configuration) async throws -> PostgresStateStore {
    try await PostgresStateStore.open(configuration: configuration, logger: PostgresTestServer.logger)
}
