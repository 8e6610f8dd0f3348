import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// A troupe-sidecar process on a private socket and SQLite file.
struct SidecarProcess {
    let directory: TemporaryDirectory
    let socket: String
    let system: String

    init(directory: TemporaryDirectory, system: String = "proc") {
        self.directory = directory
        self.socket = directory.path("troupe.sock")
        self.system = system
    }

    func start(run: Int, extra: [String] = []) async throws -> ChildProcess {
        try? FileManager.default.removeItem(atPath: socket)
        let child = try ChildProcess(
            "troupe-sidecar",
            [
                "--system", system, "--node", "\(system)-node", "--socket", socket, "--data-path",
                directory.path("state.sqlite"),
                "--log-level", "info",
            ] + extra,
            logPath: directory.path("sidecar-\(run).log"))
        do {
            try await waitFor("the sidecar socket") { FileManager.default.fileExists(atPath: socket) }
        } catch {
            child.kill9()
            throw error
        }
        return child
    }

    func startHost(run: Int) throws -> ChildProcess {
        try ChildProcess("troupe-test-host", [socket, system], logPath: directory.path("host-\(run).log"))
    }

    func client() async throws -> TroupeClient {
        try await TroupeClient.connect(system: system, to: .unix(path: socket))
    }

    /// Waits until the host registered `actor` (calls stop failing with notFound/unavailable).
    func waitForHost(_ client: TroupeClient) async throws {
        try await waitFor("the host to register", timeout: .seconds(20)) {
            do {
                let _: String = try await client.invoke("echo", action: "echo", "ready", timeout: .seconds(2))
                return true
            } catch { return false }
        }
    }
}

@Suite("Sidecar and host as real processes", .serialized)
struct ProcessTests {
    @Test func stateSurvivesASidecarRestart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let setup = SidecarProcess(directory: directory)
        let sidecar = try await setup.start(run: 1)
        let host = try setup.startHost(run: 1)
        defer {
            sidecar.kill9()
            host.kill9()
        }
        var client = try await setup.client()
        try await setup.waitForHost(client)
        for amount in [1, 2, 3] { let _: Int = try await client.invoke("counter", action: "add", amount) }
        let _: Int = try await client.invoke("acct-9", action: "deposit", 40, spawnFrom: "account")
        await client.close()

        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0, "sidecar log:\n\(sidecar.log)")

        let restarted = try await setup.start(run: 2)
        defer { restarted.kill9() }
        client = try await setup.client()
        try await setup.waitForHost(client)
        let value: Int = try await client.invoke("counter", action: "get")
        let balance: Int = try await client.invoke("acct-9", action: "balance")
        #expect(value == 6)
        #expect(balance == 40)
        await client.close()
        restarted.signal(SIGTERM)
        #expect(try await restarted.waitForExit() == 0)
        host.signal(SIGTERM)
        try await host.waitForExit()
    }

    @Test func hostKilledMidCallFailsTheCallerWithUnavailableBeforeItsDeadline() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let setup = SidecarProcess(directory: directory)
        let sidecar = try await setup.start(run: 1)
        let host = try setup.startHost(run: 1)
        defer {
            sidecar.kill9()
            host.kill9()
        }
        let client = try await setup.client()
        try await setup.waitForHost(client)
        let started = ContinuousClock.now
        let slow = inBackground {
            try await client.invoke("sleeper", action: "sleep", 20_000, as: Int.self, timeout: .seconds(15))
        }
        try await Task.sleep(for: .milliseconds(300))
        host.signal(SIGKILL)
        let outcome = await slow.value
        await expectCode(.unavailable) { _ = try outcome.get() }
        #expect(ContinuousClock.now - started < .seconds(10))
        // New calls for its actors are refused at once, not left hanging.
        await expectCode(.unavailable) {
            let _: Int = try await client.invoke("counter", action: "get", timeout: .seconds(10))
        }
        await client.close()
        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0)
    }

    @Test func secondSidecarOnTheSameStateFileIsRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let setup = SidecarProcess(directory: directory)
        let first = try await setup.start(run: 1)
        defer { first.kill9() }
        let second = try ChildProcess(
            "troupe-sidecar",
            [
                "--system", "proc", "--socket", directory.path("other.sock"), "--data-path",
                directory.path("state.sqlite"),
            ],
            logPath: directory.path("second.log"))
        defer { second.kill9() }
        let status = try await second.waitForExit()
        #expect(status != 0)
        #expect(second.log.contains("in use"), "log:\n\(second.log)")
        first.signal(SIGTERM)
        try await first.waitForExit()
    }

    @Test func badConfigurationIsRefusedWithTheSettingNamed() async throws {
        let (status, output) = try await runToCompletion("troupe-sidecar", ["--mailbox-capacity", "lots"])
        #expect(status != 0)
        #expect(output.contains("mailbox-capacity"))
    }
}
