public import Logging
import SQLiteNIO
public import TroupeStore
import TroupeWire

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The embedded default ``StateStore``: one SQLite file, owned by one sidecar.
///
/// The file is opened in WAL mode with an exclusive lock, so a second sidecar pointed at the same
/// file fails at ``open(path:logger:busyTimeout:)`` instead of corrupting state.
///
/// Every operation is a single SQL statement (or, for ``write(_:state:fencingToken:)`` and
/// ``spawn(_:actorType:)``, statements whose outcome does not depend on running as one
/// transaction): concurrent callers share one connection, so a multi-statement transaction of one
/// caller could interleave with another's.
///
/// ```swift
/// let store = try await SQLiteStateStore.open(path: "/data/troupe.sqlite", logger: logger)
/// let activation = try await store.activate(key, actorType: "Event")
/// _ = try await store.write(key, state: blob, fencingToken: activation.fencingToken)
/// try await store.close()
/// ```
public final class SQLiteStateStore: StateStore {
    /// The state file.
    public let path: String
    private let connection: SQLiteConnection
    private let logger: Logger
    private let gate = CloseGate()

    private init(path: String, connection: SQLiteConnection, logger: Logger) {
        self.path = path
        self.connection = connection
        self.logger = logger
    }

    deinit {
        // sqlite-nio asserts that connections are closed; a forgotten close() should leak nothing
        // and crash nothing. The close future keeps the connection alive until it has run.
        if !gate.isClosing {
            logger.warning("state store deallocated without close()", metadata: ["path": "\(path)"])
            _ = connection.close()
        }
    }

    public var description: String { "sqlite:\(path)" }

    /// Opens (creating if needed) the state file at `path` and brings its schema up to date.
    ///
    /// Parent directories are created. The file stays locked until ``close()``.
    ///
    /// - Parameters:
    ///   - busyTimeout: How long to wait for another process to release the file before giving up.
    ///     Waiting a little covers a previous sidecar that is still shutting down.
    /// - Throws: `failedPrecondition` if another process holds the file, if it is not a SQLite
    ///   database, or if its schema is newer than this build; `unavailable` for anything else.
    public static func open(
        path: String,
        logger: Logger,
        busyTimeout: Duration = .seconds(5)
    ) async throws -> SQLiteStateStore {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw TroupeError.unavailable(
                "state store: cannot create directory \(directory): \(error)",
                details: ["path": path]
            )
        }

        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
        } catch {
            throw SQLiteErrors.opening(error, path: path)
        }
        do {
            try await prepare(connection, path: path, logger: logger, busyTimeout: busyTimeout)
        } catch {
            try? await connection.close()
            throw SQLiteErrors.opening(error, path: path)
        }
        logger.info("opened state store", metadata: ["path": "\(path)"])
        return SQLiteStateStore(path: path, connection: connection, logger: logger)
    }

    private static func prepare(
        _ connection: SQLiteConnection,
        path: String,
        logger: Logger,
        busyTimeout: Duration
    ) async throws {
        // Must come first: it replaces sqlite-nio's busy handler, which retries forever and would
        // hang a second sidecar instead of failing it.
        _ = try await connection.query("PRAGMA busy_timeout = \(milliseconds(busyTimeout))")
        // Before the first access, so the WAL is opened in exclusive mode and its lock excludes
        // readers in other processes too.
        _ = try await connection.query("PRAGMA locking_mode = EXCLUSIVE")
        let mode = try await connection.query("PRAGMA journal_mode = WAL").first?.column("journal_mode")?.string
        if mode != "wal" {
            logger.warning(
                "state file is not in WAL mode", metadata: ["path": "\(path)", "journalMode": "\(mode ?? "?")"])
        }
        _ = try await connection.query("PRAGMA synchronous = NORMAL")
        try await SQLiteSchema.migrate(connection, path: path, logger: logger)
        // A write transaction takes the exclusive lock even when there was nothing to migrate,
        // so the check for another process happens now rather than at the first write.
        _ = try await connection.query("BEGIN IMMEDIATE")
        _ = try await connection.query("COMMIT")
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }

    /// Waits for running operations, then closes the file and releases its lock. Later calls
    /// throw `unavailable`; closing again does nothing.
    public func close() async throws {
        guard await gate.close() else { return }
        do {
            // The future-based close, not the async one: shutdown often runs in a cancelled task, and
            // the async variant skips closing when cancelled, which leaks the file lock.
            try await connection.close().get()
        } catch {
            throw SQLiteErrors.operating(error)
        }
        logger.info("closed state store", metadata: ["path": "\(path)"])
    }

    /// Runs one operation on the open connection, mapping its errors.
    func run<T>(_ body: (SQLiteConnection) async throws -> T) async throws -> T {
        try gate.enter(description)
        defer { gate.leave() }
        do {
            return try await body(connection)
        } catch {
            throw SQLiteErrors.operating(error)
        }
    }

    static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
