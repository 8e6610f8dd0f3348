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
        let _: NoPayload = try await client.invoke(
            "alarm-dur", action: "set-reminder", AlarmRequest(name: "wake", afterMs: 3000, note: "after restart"),
            spawnFrom: "alarm")
        await client.close()
        sidecar.signal(SIGKILL)
        _ = try? await sidecar.waitForExit()

        let restarted = try await setup.start(run: 2)
        defer { restarted.kill9() }
        client = try await setup.client()
        // Nobody calls the alarm on the new sidecar: only its reminder can activate it.
        try await waitFor("the reminder to activate the alarm", timeout: .seconds(60)) {
            (try? await client.activeActors(ofType: "alarm").contains { $0.name == "alarm-dur" }) == true
        }
        try await waitFor("the firing to be stored") {
            (try? await client.invoke("alarm-dur", action: "rings", as: [Ring].self).isEmpty == false) == true
        }
        #expect(
            try await client.invoke("alarm-dur", action: "rings", as: [Ring].self) == [
                Ring(timer: "wake", note: "after restart")
            ])
        await client.close()
        restarted.signal(SIGTERM)
        #expect(try await restarted.waitForExit() == 0, "sidecar log:\n\(restarted.log)")
        host.signal(SIGTERM)
        try await host.waitForExit()
    }

    @Test func aDelayedCallRunsAfterTheSidecarWasKilled() async throws {
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
        #expect(try await client.invoke("counter", action: "add", 1, as: Int.self) == 1)
        try await client.schedule("counter", action: "add", 41, after: .seconds(2))
        await client.close()
        sidecar.signal(SIGKILL)
        _ = try? await sidecar.waitForExit()

        let restarted = try await setup.start(run: 2)
        defer { restarted.kill9() }
        client = try await setup.client()
        try await setup.waitForHost(client)
        try await waitFor("the delayed call to run", timeout: .seconds(60)) {
            try await client.invoke("counter", action: "get", as: Int.self) == 42
        }
        await client.close()
        restarted.signal(SIGTERM)
        #expect(try await restarted.waitForExit() == 0, "sidecar log:\n\(restarted.log)")
        host.signal(SIGTERM)
        try await host.waitForExit()
    }
}
