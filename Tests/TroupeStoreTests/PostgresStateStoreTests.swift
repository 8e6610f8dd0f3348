import Testing
import TroupeTestSupport
import TroupePostgres
import TroupeStore
import TroupeWire

/// What only the Postgres store has: a shared server, migrations, group commit, a URL.
@Suite struct PostgresStateStoreTests {
    /// Without a server the `.postgres` behaviours are not even listed; fail here so a bare
    /// `swift test` does not pass while covering no Postgres at all.
    @Test func postgresSuiteNeedsTheTestServer() {
        if PostgresTestServer.url == nil {
            Issue.record("TROUPE_TEST_PG_URL is not set: run scripts/test.sh")
        }
    }

    @Test(.enabled(if: PostgresTestServer.url != nil))
    func concurrentOpensOfAFreshSchemaMigrateItOnce() async throws {
        try await withPostgresSchema { configuration in
            async let first = openPostgres(configuration)
            async let second = openPostgres(configuration)
            let stores = try await [first, second]
            let versions = try await PostgresStateStore.appliedMigrations(
                configuration: configuration, logger: PostgresTestServer.logger)
            #expect(versions == [1, 2])
            // Both see the same table.
            let token = try await stores[0].activate(key("seat-1"), actorType: "Seat").fencingToken
            #expect(try await stores[1].read(key("seat-1"))?.actorType == "Seat")
            #expect(try await stores[1].activate(key("seat-1"), actorType: "Seat").fencingToken > token)
            for store in stores { try await store.close() }
        }
    }

    @Test(.enabled(if: PostgresTestServer.url != nil))
    func stateAndTokensSurviveClosingAndReopening() async throws {
        try await withPostgresSchema { configuration in
            let store = try await openPostgres(configuration)
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            _ = try await store.write(key("seat-1"), state: blob("held"), fencingToken: token)
            try await store.close()

            let reopened = try await openPostgres(configuration)
            let next = try await reopened.activate(key("seat-1"), actorType: "Seat")
            #expect(next.fencingToken > token)
            #expect(next.record.state == blob("held"))
            #expect(next.record.revision == 1)
            try await reopened.close()
            let versions = try await PostgresStateStore.appliedMigrations(
                configuration: configuration, logger: PostgresTestServer.logger)
            #expect(versions == [1, 2])
        }
    }

    @Test(.enabled(if: PostgresTestServer.url != nil))
    func concurrentWritesShareFlushes() async throws {
        try await withPostgresSchema { configuration in
            let store = try await openPostgres(configuration)
            let actors = 200
            var tokens: [UInt64] = []
            for index in 0..<actors {
                tokens.append(try await store.activate(key("seat-\(index)"), actorType: "Seat").fencingToken)
            }
            let before = store.flushCount
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, token) in tokens.enumerated() {
                    group.addTask {
                        let revision = try await store.write(
                            key("seat-\(index)"), state: blob("\(index)"), fencingToken: token)
                        #expect(revision == 1)
                    }
                }
                try await group.waitForAll()
            }
            let flushes = store.flushCount - before
            #expect(flushes >= 1)
            #expect(flushes <= actors / 4, "\(actors) concurrent writes took \(flushes) flushes")
            for index in [0, actors / 2, actors - 1] {
                #expect(try await store.read(key("seat-\(index)"))?.state == blob("\(index)"))
            }
            try await store.close()
        }
    }

    @Test(.enabled(if: PostgresTestServer.url != nil))
    func concurrentWritesToOneActorAllApplyInTurn() async throws {
        try await withPostgresSchema { configuration in
            let store = try await openPostgres(configuration)
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            let writes = 20
            let revisions = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for index in 0..<writes {
                    group.addTask {
                        try await store.write(key("seat-1"), state: blob("\(index)"), fencingToken: token)
                    }
                }
                return try await group.reduce(into: [UInt64]()) { $0.append($1) }
            }
            // A batch carries one write per actor, so each write saw the one before it.
            #expect(revisions.sorted() == Array(1...UInt64(writes)))
            #expect(try await store.read(key("seat-1"))?.revision == UInt64(writes))
            try await store.close()
        }
    }

    @Test(.enabled(if: PostgresTestServer.url != nil))
    func fiftyRacingActivationsGetDistinctTokensAndOnlyTheLargestWrites() async throws {
        try await withStore(.postgres) { store in
            let tokens = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for _ in 0..<50 {
                    group.addTask { try await store.activate(key("seat-1"), actorType: "Seat").fencingToken }
                }
                return try await group.reduce(into: [UInt64]()) { $0.append($1) }
            }
            #expect(Set(tokens).count == 50)
            let latest = try #require(tokens.max())
            // Stale writes race each other too, so they also travel through group commit together.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for token in tokens where token != latest {
                    group.addTask {
                        await expectCode(.failedPrecondition) {
                            try await store.write(key("seat-1"), state: blob("stale"), fencingToken: token)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await store.write(key("seat-1"), state: blob("latest"), fencingToken: latest) == 1)
            #expect(try await store.read(key("seat-1"))?.state == blob("latest"))
        }
    }

    @Test func unreachableServerFailsToOpenWithUnavailableAndNoPassword() async throws {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let configuration = PostgresStateStore.Configuration(
            host: "127.0.0.1", port: 1, username: "troupe", password: "s3cret-pw", database: "troupe",
            connectTimeout: .seconds(3))
        let error = await expectCode(.unavailable) {
            try await PostgresStateStore.open(configuration: configuration, logger: PostgresTestServer.logger)
        }
        #expect(error?.message.contains("127.0.0.1:1") == true)
        #expect(error?.message.contains("s3cret-pw") == false)
    }

    @Test func urlIsParsedAndDescriptionHidesThePassword() throws {
        let configuration = try PostgresStateStore.Configuration(
            url: "postgres://troupe:s3cret@db.internal:6543/state?sslmode=disable&schema=tickets")
        #expect(configuration.host == "db.internal")
        #expect(configuration.port == 6543)
        #expect(configuration.username == "troupe")
        #expect(configuration.password == "s3cret")
        #expect(configuration.database == "state")
        #expect(configuration.schema == "tickets")
        #expect(configuration.tls == .disable)
        #expect(configuration.description == "postgres://troupe@db.internal:6543/state (schema tickets)")

        let defaults = try PostgresStateStore.Configuration(url: "postgresql://troupe@db/state")
        #expect(defaults.port == 5432)
        #expect(defaults.schema == "troupe")
        #expect(defaults.tls == .prefer)
        #expect(defaults.maxConnections == 8)
    }

    @Test(arguments: [
        "mysql://troupe@db/state",
        "postgres://troupe:s3cret@db",
        "postgres://troupe:s3cret@db/state?sslmode=verify-everything",
        "postgres://troupe:s3cret@db/state?schema=drop%20table",
        "postgres://troupe:s3cret@db/state?pool=3",
    ])
    func badURLIsInvalidArgumentWithoutThePassword(url: String) async throws {
        let error = await expectCode(.invalidArgument) { try PostgresStateStore.Configuration(url: url) }
        #expect(error?.message.contains("s3cret") == false)
    }
}
