import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// Fire-and-forget and delayed calls, against a real sidecar and SDK host.
@Suite("Fire-and-forget and delayed calls", .serialized)
struct AsyncInvocationTests {
    @Test func fireAndForgetIsAnsweredOnceQueuedBeforeTheActionFinishes() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let key = "async-\(UUID().uuidString.prefix(8))"
            // The gate holds the action until the test opens it: had `send` waited for the
            // action, it could never return.
            try await client.send("gate", action: "pass", key, timeout: .seconds(20))
            try await waitFor("the action to start") { Gate.visits.withLock { $0[key] != nil } }
            #expect(Gate.visits.withLock { $0[key]?.passed } == false)
            Gate.latches.open(key)
            try await waitFor("the action to finish") { Gate.visits.withLock { $0[key]?.passed == true } }
            await client.close()
        }
    }

    @Test func fireAndForgetThatCannotBeQueuedIsRefusedWithItsTypedError() async throws {
        try await withSidecar(configure: { $0.mailboxCapacity = 1 }) { sidecar in
            let client = try await sidecar.client()
            await expectCode(.notFound) { try await client.send("nobody-here", action: "x", "y") }
            await expectCode(.notFound) { try await client.send("acct-missing", action: "deposit", 1) }
            // One call runs and one waits: the next one finds the mailbox full.
            let key = "full-\(UUID().uuidString.prefix(8))"
            try await client.send("gate", action: "pass", key, timeout: .seconds(20))
            try await waitFor("the first call to run") { Gate.visits.withLock { $0[key] != nil } }
            try await client.send("gate", action: "pass", key + "-2", timeout: .seconds(20))
            await expectCode(.resourceExhausted) { try await client.send("gate", action: "pass", key + "-3") }
            Gate.latches.open(key)
            Gate.latches.open(key + "-2")
            try await waitFor("the queued call to finish") { Gate.visits.withLock { $0[key + "-2"]?.passed == true } }
            #expect(Gate.visits.withLock { $0[key + "-3"] } == nil)
            await client.close()
        }
    }

    @Test func fireAndForgetToAnUnknownActionIsAcceptedAndItsFailureOnlyCounted() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            // The action is checked when the call runs, after it was accepted.
            try await client.send("echo", action: "no-such-action", "x")
            #expect(try await client.invoke("echo", action: "echo", "still here", as: String.self) == "still here")
            await client.close()
        }
    }

    @Test func delayedCallIsStoredThenRunsOnItsActor() async throws {
        try await withSidecar(store: "sqlite") { sidecar in
            let client = try await sidecar.client()
            let name = try await client.schedule("counter", action: "add", 5, after: .milliseconds(300))
            #expect(name.hasPrefix("delayed/"))
            let reminders = try #require(sidecar.sidecar.directory.reminders)
            try await waitFor("the delayed call to run") {
                try await client.invoke("counter", action: "get", as: Int.self) == 5
            }
            #expect(try await reminders.reminders(of: .init(system: "test", name: "counter")).isEmpty)
            await expectCode(.invalidArgument) {
                try await client.schedule("counter", action: "add", 1, after: .zero)
            }
            await client.close()
        }
    }
}
