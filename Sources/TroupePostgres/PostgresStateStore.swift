public import Logging
import PostgresNIO
public import TroupeStore
import TroupeWire

/// The production ``StateStore``: actor state in PostgreSQL, shared by every sidecar of a cluster.
///
/// Fencing tokens make sharing safe: an activation bumps the actor's token in one statement, and a
/// write lands only while its token is still the latest, so a zombie activation on another node
/// can never overwrite newer state.
///
/// Writes are group-committed: concurrent ``write(_:state:fencingToken:)`` calls queue while a
/// flush runs, and the next flush sends all of them (one per actor) in a single UPDATE. Each
/// caller is answered once its row is committed.
///
/// ```swift
/// let configuration = try PostgresStateStore.Configuration(url: "postgres://troupe:secret@db:5432/troupe")
/// let store = try await PostgresStateStore.open(configuration: configuration, logger: logger)
/// let activation = try await store.activate(key, actorType: "Event")
/// _ = try await store.write(key, state: blob, fencingToken: activation.fencingToken)
/// try await store.close()
/// ```
public final class PostgresStateStore: StateStore {
    /// Kept internal: it holds the password.
    let configuration: Configuration
    let client: PostgresClient
    /// The quoted, schema-qualified actor table.
    let table: String
    let logger: Logger
    private let writes: WriteQueue
    private let gate = CloseGate()
    /// Runs the pool and the group-commit loop. Unstructured because the store is created outside
    /// any task tree it could join (a service group, a test); ``close()`` cancels it and awaits
    /// it, so nothing it started outlives the store.
    private let background: Task<Void, Never>

    /// - Parameter running: Finished once the pool is about to run; see ``open(configuration:logger:)``.
    private init(configuration: Configuration, logger: Logger, running: AsyncStream<Void>.Continuation) {
        self.configuration = configuration
        self.logger = logger
        self.table = "\(PostgresSchema.quoted(configuration.schema)).troupe_actors"
        self.client = PostgresClient(
            configuration: PostgresConnector.clientConfiguration(configuration),
            backgroundLogger: logger
        )
        let writes = WriteQueue(
            maxBatch: configuration.maxWriteBatch, timeout: configuration.operationTimeout, logger: logger)
        self.writes = writes
        let commit = GroupCommit(client: client, table: table, logger: logger)
        let client = client
        self.background = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { await writes.run { batch in await commit.flush(batch) } }
                running.finish()
                await client.run()
            }
        }
    }

    deinit {
        if !gate.isClosing {
            logger.warning("state store deallocated without close()")
            background.cancel()
        }
    }

    public var description: String { configuration.description }

    /// How many group-commit statements have run: with concurrent writers, far fewer than writes.
    package var flushCount: Int { writes.flushCount }

    /// Connects, creates the schema if missing, brings it up to date and starts the pool.
    ///
    /// Fails fast when the server cannot be reached: the first connection is made directly,
    /// bounded by ``Configuration/connectTimeout``, rather than through the pool, which would
    /// keep retrying.
    ///
    /// - Throws: `invalidArgument` for a schema name that is not a plain identifier;
    ///   `unauthenticated` if the server refuses the credentials; `failedPrecondition` if the
    ///   schema is newer than this build; `unavailable` for anything else.
    public static func open(configuration: Configuration, logger: Logger) async throws -> PostgresStateStore {
        var logger = logger
        logger[metadataKey: "stateStore"] = "\(configuration)"
        guard Configuration.isPlainIdentifier(configuration.schema) else {
            throw TroupeError.invalidArgument(
                "state store schema \(configuration.schema) is not a plain identifier (letters, digits, _)")
        }
        do {
            try await PostgresConnector.withConnection(configuration, logger: logger) { connection in
                try await PostgresSchema.migrate(connection, schema: configuration.schema, logger: logger)
            }
        } catch {
            throw PostgresErrors.opening(error, target: configuration.target)
        }
        let (running, runningContinuation) = AsyncStream<Void>.makeStream()
        let store = PostgresStateStore(configuration: configuration, logger: logger, running: runningContinuation)
        // postgres-nio warns about leases taken before run(); the first caller would race it.
        for await _ in running {}
        logger.info("opened state store")
        return store
    }

    /// Waits for running operations (queued writes included), then stops the pool. Later calls
    /// throw `unavailable`; closing again does nothing.
    public func close() async throws {
        guard await gate.close() else { return }
        background.cancel()
        await background.value
        logger.info("closed state store")
    }

    public func write(_ key: ActorKey, state: StateBlob, fencingToken: UInt64) async throws -> UInt64 {
        try gate.enter(description)
        defer { gate.leave() }
        return try await writes.submit(key, state: state, fencingToken: fencingToken)
    }

    /// Runs one operation on the pool within ``Configuration/operationTimeout``, mapping its errors.
    ///
    /// The timeout cancels the operation, which frees a caller waiting for a connection at once
    /// (the usual case while the server is away); a query already sent finishes or fails first.
    @discardableResult
    func run<T: Sendable>(_ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws -> T {
        try gate.enter(description)
        defer { gate.leave() }
        let (client, timeout) = (self.client, configuration.operationTimeout)
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body(client) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else {
                    throw TroupeError.unavailable("state store: no answer within \(timeout)")
                }
                return value
            }
        } catch {
            throw PostgresErrors.operating(error)
        }
    }
}
