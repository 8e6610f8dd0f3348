import Foundation
import Logging
import Testing
import TroupeTestSupport
import Troupe
import TroupePostgres
import TroupeSidecar
import TroupeStateEncryption
import TroupeStore
import TroupeTestActors
import TroupeWire

/// The shared server scripts/test.sh starts (`TROUPE_TEST_PG_URL`), with a schema per test.
private let sharedServer = ProcessInfo.processInfo.environment["TROUPE_TEST_PG_URL"].flatMap { $0.isEmpty ? nil : $0 }

/// Runs `body` with a fresh schema on the shared server, dropped afterwards.
func withSharedSchema<T>(_ body: (String) async throws -> T) async throws -> T {
    let server = try #require(sharedServer, "TROUPE_TEST_PG_URL is not set: run scripts/test.sh")
    let schema = "s_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
    let url = server + (server.contains("?") ? "&" : "?") + "sslmode=disable&schema=\(schema)"
    let configuration = try PostgresStateStore.Configuration(url: url)
    let outcome: Result<T, any Error>
    do { outcome = .success(try await body(url)) } catch { outcome = .failure(error) }
    try? await PostgresStateStore.dropSchema(configuration: configuration, logger: Logger(label: "test"))
    return try outcome.get()
}

@Suite("Sidecar on PostgreSQL", .serialized)
struct PostgresSidecarTests {
    @Test func stateOfEveryDurabilityIsInPostgresAfterARestart() async throws {
        try await withSharedSchema { url in
            try await withSidecar(store: "postgres", configure: { $0.postgres.url = url }) { sidecar in
                let client = try await sidecar.client()
                for amount in [1, 2, 3] { let _: Int = try await client.invoke("counter", action: "add", amount) }
                let _: Int = try await client.invoke("quick-tally", action: "add", 7)
                try await waitFor("the write-behind snapshot") {
                    let state = try await sidecar.sidecar.directory.store.read(ActorKey(system: "test", name: "quick-tally"))
                    return state?.revision ?? 0 > 0
                }
                await client.close()
            }
            // A new sidecar on the same schema.
            try await withSidecar(store: "postgres", configure: { $0.postgres.url = url }) { sidecar in
                let client = try await sidecar.client()
                #expect(try await client.invoke("counter", action: "get", as: Int.self) == 6)
                #expect(try await client.invoke("quick-tally", action: "add", 0, as: Int.self) == 7)
                await client.close()
            }
        }
    }

    @Test func encryptedSidecarStoresSealedStateThatOnlyItsKeysOpen() async throws {
        let key = Data(repeating: 0x5A, count: 32).base64EncodedString()
        try await withSharedSchema { url in
            try await withSidecar(
                store: "postgres",
                configure: {
                    $0.postgres.url = url
                    $0.encryptionKeys = "k1:\(key)"
                }
            ) { sidecar in
                let client = try await sidecar.client()
                let _: Int = try await client.invoke("counter", action: "add", 41)
                let store = try #require(sidecar.sidecar.directory.store as? EncryptingStateStore)
                let raw = try #require(try await store.base.read(ActorKey(system: "test", name: "counter"))?.state)
                #expect(!String(decoding: raw.bytes, as: UTF8.self).contains("41"))
                await client.close()
            }
            // Without the key the actor cannot activate, and the caller is told why.
            try await withSidecar(store: "postgres", configure: { $0.postgres.url = url }) { sidecar in
                let client = try await sidecar.client()
                let error = await #expect(throws: TroupeError.self) {
                    let _: Int = try await client.invoke("counter", action: "get")
                }
                #expect(error?.code == .failedPrecondition)
                #expect(error?.message.contains("'k1'") == true)
                await client.close()
            }
        }
    }

    @Test func postgresGoingAwayFailsCallsWithUnavailableAndLosesNothingAcknowledged() async throws {
        let server = try await TestPostgresServer.start()
        defer { server.remove() }
        try await withSidecar(onFailingPostgres: server) { sidecar in
            let client = try await sidecar.client()
            let _: Int = try await client.invoke("counter", action: "add", 5)
            let _: Int = try await client.invoke("quick-tally", action: "add", 1)
            let store = sidecar.sidecar.directory.store
            try await waitFor("the write-behind tally to be stored") {
                try await store.read(ActorKey(system: "test", name: "quick-tally"))?.revision ?? 0 > 0
            }

            try server.crash()
            // Write-through needs the store: unavailable, well within the call's deadline.
            let refused = await #expect(throws: TroupeError.self) {
                let _: Int = try await client.invoke("counter", action: "add", 100, timeout: .seconds(20))
            }
            #expect(refused?.code == .unavailable, "got \(String(describing: refused))")
            // Activating a new actor needs the store too.
            let notActivated = await #expect(throws: TroupeError.self) {
                let _: Int = try await client.invoke("acct-1", action: "deposit", 1, spawnFrom: "account", timeout: .seconds(20))
            }
            #expect(notActivated?.code == .unavailable, "got \(String(describing: notActivated))")
            // Write-behind answers from memory and keeps retrying its snapshot.
            #expect(try await client.invoke("quick-tally", action: "add", 10, as: Int.self) == 11)

            try server.startAgain()
            try await waitFor("the sidecar to use the store again", timeout: .seconds(60)) {
                (try? await client.invoke("counter", action: "get", as: Int.self, timeout: .seconds(5))) != nil
            }
            // The refused add never landed; the acknowledged one did.
            #expect(try await client.invoke("counter", action: "get", as: Int.self) == 5)
            try await waitFor("the retried write-behind snapshot", timeout: .seconds(30)) {
                let state = try? await store.read(ActorKey(system: "test", name: "quick-tally"))?.state
                return state.map { String(decoding: $0.bytes, as: UTF8.self).contains("11") } ?? false
            }
            await client.close()
        }
    }

    @Test func postgresSettingsComeFromAURLAndDiscreteOverrides() throws {
        var configuration = SidecarConfiguration()
        try configuration.apply(environment: [
            "TROUPE_STORE": "postgres",
            "TROUPE_PG_URL": "postgres://troupe@db.internal:5433/state?sslmode=require",
            "TROUPE_PG_PASSWORD": "from-a-secret",
            "TROUPE_PG_POOL_SIZE": "16",
        ])
        try configuration.set("pg-schema", to: "tickets")
        let postgres = try configuration.postgresConfiguration()
        #expect(postgres.host == "db.internal")
        #expect(postgres.port == 5433)
        #expect(postgres.password == "from-a-secret")
        #expect(postgres.schema == "tickets")
        #expect(postgres.tls == .require)
        #expect(postgres.maxConnections == 16)

        var discrete = SidecarConfiguration()
        try discrete.apply(yaml: "store: postgres\npg-host: db\npg-user: troupe\npg-database: state\npg-port: 6000\n")
        #expect(try discrete.postgresConfiguration().port == 6000)

        var missing = SidecarConfiguration()
        try missing.set("store", to: "postgres")
        let error = #expect(throws: TroupeError.self) { try missing.postgresConfiguration() }
        #expect(error?.message.contains("pg-url") == true)
        #expect(throws: TroupeError.self) { try missing.set("pg-sslmode", to: "verify-nothing") }
        #expect(throws: TroupeError.self) { try missing.set("encryption-keys", to: "k1:short") }
    }
}
