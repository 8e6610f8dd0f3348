import Foundation
import Testing
import Troupe
import TroupeStore
import TroupeTestActors
import TroupeTestSupport

/// Declared timers, run-time timers and reminders, against a real sidecar and SDK host.
@Suite("Timers and reminders", .serialized)
struct TimerTests {
    @Test func declaredTimerFiresRepeatedlyInTurnsWhileActiveAndStopsOnDeactivation() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let before = Ticker.fired.load(ordering: .relaxed)
            // A call activates the ticker; its declared 50 ms timer starts with the activation.
            for _ in 0..<5 { let _: Ticker.State = try await client.invoke("ticker", action: "work") }
            try await waitFor("three firings") { Ticker.fired.load(ordering: .relaxed) >= before + 3 }
            let state: Ticker.State = try await client.invoke("ticker", action: "work")
            #expect(state.ticks >= 3)
            #expect(state.calls == 6)
            // Firings and calls never overlapped: every one was a turn of its own.
            #expect(state.maxConcurrent == 1)
            #expect(state.timerNames == ["tick"])
            // Firings alone do not keep the actor active: it goes idle and its timer stops with it.
            try await waitFor("the ticker to be deactivated") {
                try await client.activeActors(ofType: "ticker").isEmpty
            }
            let afterDeactivation = Ticker.fired.load(ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(500))
            #expect(Ticker.fired.load(ordering: .relaxed) == afterDeactivation)
            #expect(try await client.activeActors(ofType: "ticker").isEmpty)
            await client.close()
        }
    }

    @Test func oneShotTimerFiresOnceWithItsNameAndPayload() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let _: NoPayload = try await client.invoke(
                "alarm-once", action: "set-timer", AlarmRequest(name: "once", afterMs: 50, note: "hello"),
                spawnFrom: "alarm")
            try await waitFor("the one-shot timer") {
                try await client.invoke("alarm-once", action: "rings", as: [Ring].self).count == 1
            }
            #expect(
                try await client.invoke("alarm-once", action: "rings", as: [Ring].self) == [
                    Ring(timer: "once", note: "hello")
                ])
            let key = ActorKey(system: "test", name: "alarm-once")
            #expect(sidecar.sidecar.directory.activeTimers(of: key).isEmpty)
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await client.invoke("alarm-once", action: "rings", as: [Ring].self).count == 1)
            await client.close()
        }
    }

    @Test func repeatingTimerFiresUntilCancelled() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let key = ActorKey(system: "test", name: "alarm-rep")
            let _: NoPayload = try await client.invoke(
                "alarm-rep", action: "set-timer", AlarmRequest(name: "rep", afterMs: 20, everyMs: 30, note: "r"),
                spawnFrom: "alarm")
            #expect(sidecar.sidecar.directory.activeTimers(of: key) == ["rep"])
            try await waitFor("three firings") {
                try await client.invoke("alarm-rep", action: "rings", as: [Ring].self).count >= 3
            }
            let _: NoPayload = try await client.invoke("alarm-rep", action: "cancel-timer", "rep")
            #expect(sidecar.sidecar.directory.activeTimers(of: key).isEmpty)
            // A firing queued before the cancel ran before this call (one mailbox, in order).
            let settled = try await client.invoke("alarm-rep", action: "rings", as: [Ring].self)
            #expect(settled.allSatisfy { $0 == Ring(timer: "rep", note: "r") })
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await client.invoke("alarm-rep", action: "rings", as: [Ring].self) == settled)
            // Cancelling again, or a name that never existed, does nothing.
            let _: NoPayload = try await client.invoke("alarm-rep", action: "cancel-timer", "rep")
            let _: NoPayload = try await client.invoke("alarm-rep", action: "cancel-timer", "never-set")
            await client.close()
        }
    }

    @Test func timerNamingAnUnknownActionIsRefusedAndNothingOfTheResultApplies() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.invalidArgument) {
                let _: NoPayload = try await client.invoke("alarm-bad", action: "set-bad-timer", spawnFrom: "alarm")
            }
            #expect(try await client.invoke("alarm-bad", action: "rings", as: [Ring].self).isEmpty)
            #expect(sidecar.sidecar.directory.activeTimers(of: ActorKey(system: "test", name: "alarm-bad")).isEmpty)
            await client.close()
        }
    }

    @Test func reminderSurvivesDeactivationAndActivatesTheActorWhenDue() async throws {
        try await withSidecar(store: "sqlite") { sidecar in
            let client = try await sidecar.client()
            let key = ActorKey(system: "test", name: "alarm-rem")
            let _: NoPayload = try await client.invoke(
                "alarm-rem", action: "set-reminder", AlarmRequest(name: "wake", afterMs: 5000, note: "up"),
                spawnFrom: "alarm")
            // Stored before the reply.
            let reminders = try #require(sidecar.sidecar.directory.reminders)
            #expect(try await reminders.reminders(of: key).map(\.name) == ["wake"])
            try await waitFor("the alarm to be deactivated") {
                try await client.activeActors(ofType: "alarm").isEmpty
            }
            // Deactivated before it was due, and nobody calls it: a successful firing (which
            // deletes the one-shot reminder) had to activate it again.
            #expect(try await reminders.reminders(of: key).map(\.name) == ["wake"])
            try await waitFor("the one-shot reminder to fire and be deleted") {
                try await reminders.reminders(of: key).isEmpty
            }
            #expect(
                try await client.invoke("alarm-rem", action: "rings", as: [Ring].self) == [
                    Ring(timer: "wake", note: "up")
                ])
            await client.close()
        }
    }

    @Test func repeatingReminderFiresUntilCancelled() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let key = ActorKey(system: "test", name: "alarm-rrem")
            let _: NoPayload = try await client.invoke(
                "alarm-rrem", action: "set-reminder", AlarmRequest(name: "beat", afterMs: 10, everyMs: 100),
                spawnFrom: "alarm")
            try await waitFor("two firings of the reminder") {
                try await client.invoke("alarm-rrem", action: "rings", as: [Ring].self).count >= 2
            }
            let _: NoPayload = try await client.invoke("alarm-rrem", action: "cancel-reminder", "beat")
            let reminders = try #require(sidecar.sidecar.directory.reminders)
            #expect(try await reminders.reminders(of: key).isEmpty)
            let rings = try await client.invoke("alarm-rrem", action: "rings", as: [Ring].self)
            #expect(rings.allSatisfy { $0.timer == "beat" })
            await client.close()
        }
    }
}
