import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// Reminders and delayed calls across a SIGKILL of the sidecar process (troupe-sidecar and
/// troupe-test-host as real processes, one SQLite file).
@Suite("Reminders across sidecar restarts", .serialized)
struct ReminderProcessTests {
    @Test func aReminderFiresAfterTheSidecarWasKilledAndReactivatesItsActor() async throws {
        try await acrossKill9 { client in
            // Repeating, so that a loaded machine, slow to look, still sees one of the activations
            // (the alarm goes idle 2 s after each).
            let _: NoPayload = try await client.invoke(
                "alarm-dur", action: "set-reminder",
                AlarmRequest(name: "wake", afterMs: 3000, everyMs: 1000, note: "after restart"), spawnFrom: "alarm")
        } after: { client in
            // Nobody calls the alarm on the new sidecar: only its reminder can activate it.
            try await waitFor("the reminder to activate the alarm", timeout: .seconds(60)) {
                (try? await client.activeActors(ofType: "alarm").contains { $0.name == "alarm-dur" }) == true
            }
            try await waitFor("the firing to be stored") {
                (try? await client.invoke("alarm-dur", action: "rings", as: [Ring].self).isEmpty == false) == true
            }
            let rings = try await client.invoke("alarm-dur", action: "rings", as: [Ring].self)
            #expect(!rings.isEmpty && rings.allSatisfy { $0 == Ring(timer: "wake", note: "after restart") })
        }
    }

    @Test func aDelayedCallRunsAfterTheSidecarWasKilled() async throws {
        try await acrossKill9 { client in
            #expect(try await client.invoke("counter", action: "add", 1, as: Int.self) == 1)
            try await client.schedule("counter", action: "add", 41, after: .seconds(2))
        } after: { client in
            try await waitFor("the delayed call to run", timeout: .seconds(60)) {
                (try? await client.invoke("counter", action: "get", as: Int.self)) == 42
            }
        }
    }

    /// Runs `before` against a sidecar and host, SIGKILLs the sidecar, starts a new one on the
    /// same state file (the host reconnects by itself), runs `after` against it, and stops both.
    private func acrossKill9(
        _ before: (TroupeClient) async throws -> Void, after: (TroupeClient) async throws -> Void
    ) async throws {
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
        try await before(client)
        await client.close()
        sidecar.signal(SIGKILL)
        _ = try? await sidecar.waitForExit()

        let restarted = try await setup.start(run: 2)
        defer { restarted.kill9() }
        client = try await setup.client()
        try await after(client)
        await client.close()
        restarted.signal(SIGTERM)
        #expect(try await restarted.waitForExit() == 0, "sidecar log:\n\(restarted.log)")
        host.signal(SIGTERM)
        try await host.waitForExit()
    }
}
