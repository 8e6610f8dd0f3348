import Foundation
import Testing
import Troupe
import TroupeStore
import TroupeTestActors
import TroupeTestSupport

@Suite("Write-behind durability", .serialized)
struct DurabilityTests {
    @Test func writeBehindAnswersBeforeStoringAndCoalescesChanges() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            for _ in 0..<20 { let _: Int = try await client.invoke("quick-tally", action: "add", 1) }
            let key = ActorKey(system: "test", name: "quick-tally")
            try await waitFor("the snapshot") {
                try await sidecar.sidecar.directory.store.read(key)?.revision ?? 0 > 0
            }
            let record = try #require(try await sidecar.sidecar.directory.store.read(key))
            // Twenty changes, far fewer writes: only the newest state of each interval is stored.
            #expect(record.revision < 20)
            try await waitFor("the last change to be stored") {
                let stored = try await sidecar.sidecar.directory.store.read(key)
                return stored.map { String(decoding: $0.state?.bytes ?? [], as: UTF8.self).contains("20") } ?? false
            }
            await client.close()
        }
    }

    @Test func idleDeactivationStoresUnsavedStateFirst() async throws {
        try await withSidecar(configure: { $0.idleTimeoutMs = 200 }) { sidecar in
            let client = try await sidecar.client()
            let _: Int = try await client.invoke("tally", action: "add", 5)
            let key = ActorKey(system: "test", name: "tally")
            #expect(try await sidecar.sidecar.directory.store.read(key)?.revision == 0)
            try await waitFor("the tally to be deactivated", timeout: .seconds(10)) {
                try await !client.activeActors().contains { $0.name == "tally" }
            }
            #expect(try await sidecar.sidecar.directory.store.read(key)?.revision == 1)
            let value: Int = try await client.invoke("tally", action: "get")
            #expect(value == 5)
            await client.close()
        }
    }

    @Test func hostLossStoresUnsavedState() async throws {
        try await withSidecar(host: false) { sidecar in
            let host = try TroupeHost(
                system: "test", endpoint: sidecar.endpoint, actors: [Tally.self], name: "short-lived")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await host.run() }
                let client = try await host.connected()
                let _: Int = try await client.invoke("tally", action: "add", 3)
                group.cancelAll()
            }
            let key = ActorKey(system: "test", name: "tally")
            try await waitFor("the state of the host's actor to be stored") {
                try await sidecar.sidecar.directory.store.read(key)?.revision == 1
            }
        }
    }

    @Test func gracefulShutdownStoresUnsavedState() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socket = directory.path("troupe.sock")
        let arguments = ["--system", "wb", "--socket", socket, "--data-path", directory.path("state.sqlite")]
        let sidecar = try ChildProcess("troupe-sidecar", arguments, logPath: directory.path("sidecar-1.log"))
        let host = try ChildProcess("troupe-test-host", [socket, "wb"], logPath: directory.path("host.log"))
        defer {
            sidecar.kill9()
            host.kill9()
        }
        try await waitFor("the sidecar socket") { FileManager.default.fileExists(atPath: socket) }
        var client = try await TroupeClient.connect(system: "wb", to: .unix(path: socket))
        try await waitFor("the host to register", timeout: .seconds(20)) {
            (try? await client.invoke("echo", action: "echo", "ready", as: String.self, timeout: .seconds(2))) != nil
        }
        let _: Int = try await client.invoke("tally", action: "add", 7)
        await client.close()
        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0)

        let restarted = try ChildProcess("troupe-sidecar", arguments, logPath: directory.path("sidecar-2.log"))
        defer { restarted.kill9() }
        try await waitFor("the sidecar socket") { FileManager.default.fileExists(atPath: socket) }
        client = try await TroupeClient.connect(system: "wb", to: .unix(path: socket))
        try await waitFor("the host to register again", timeout: .seconds(20)) {
            (try? await client.invoke("echo", action: "echo", "ready", as: String.self, timeout: .seconds(2))) != nil
        }
        let value: Int = try await client.invoke("tally", action: "get")
        #expect(value == 7)
        await client.close()
        restarted.signal(SIGTERM)
        try await restarted.waitForExit()
        host.signal(SIGTERM)
        try await host.waitForExit()
    }
}
