import Foundation
import Testing
import Troupe
import TroupeSidecar
import TroupeStore
import TroupeTestActors
import TroupeTestSupport

/// Reminder schedulers of several sidecars sharing one PostgreSQL schema.
@Suite("Reminders on a shared PostgreSQL", .serialized)
struct ReminderPostgresTests {
    @Test func twoSidecarsSharingPostgresRunEveryDelayedCallExactlyOnce() async throws {
        try await withSharedSchema { url in
            let settings: @Sendable (inout SidecarConfiguration) -> Void = {
                $0.postgres.url = url
                // Both schedulers poll often, so their claims overlap in time.
                $0.reminderPollMs = 10
            }
            try await withSidecar(store: "postgres", configure: settings) { first in
                try await withSidecar(store: "postgres", configure: settings) { second in
                    let client = try await first.client()
                    let names = (0..<40).map { "acct-once-\($0)" }
                    for name in names {
                        try await client.schedule(
                            name, action: "deposit", 1, after: .milliseconds(300), spawnFrom: "account")
                    }
                    let reminders = try #require(second.sidecar.directory.reminders)
                    try await waitFor("every delayed call to run and be settled", timeout: .seconds(60)) {
                        for name in names {
                            let left = try await reminders.reminders(of: ActorKey(system: "test", name: name))
                            if !left.isEmpty { return false }
                        }
                        return true
                    }
                    // A call fired twice would have deposited twice: the second activation reads the first's write.
                    for name in names {
                        #expect(try await client.invoke(name, action: "balance", as: Int.self) == 1, "\(name)")
                    }
                    await client.close()
                }
            }
        }
    }
}
