import Testing
import TroupeStore
import TroupeTestSupport
import TroupeWire

/// The contract of ``ReminderStore``, run against every backend in ``StoreKind``.
@Suite struct ReminderStoreTests {
    private func reminder(_ actor: String, _ name: String, due: Int64, period: Int64 = 0) -> Reminder {
        Reminder(
            key: key(actor), name: name, body: Array("\(actor)/\(name)".utf8), dueAtMillis: due, periodMillis: period)
    }

    private func withReminders(_ kind: StoreKind, _ body: (any ReminderStore) async throws -> Void) async throws {
        try await withStore(kind) { store in
            try await body(try #require(store as? any ReminderStore))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func claimReturnsOnlyDueRemindersEarliestFirstUpToTheLimit(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            try await store.setReminder(reminder("a", "late", due: 3_000))
            try await store.setReminder(reminder("a", "early", due: 1_000))
            try await store.setReminder(reminder("b", "middle", due: 2_000))
            try await store.setReminder(reminder("c", "future", due: 9_000))
            let first = try await store.claimDue(nowMillis: 5_000, leaseMillis: 10_000, limit: 2)
            #expect(first.map(\.reminder.name) == ["early", "middle"])
            #expect(first[0].reminder.body == Array("a/early".utf8))
            #expect(first.allSatisfy { $0.attempts == 0 })
            let second = try await store.claimDue(nowMillis: 5_000, leaseMillis: 10_000, limit: 10)
            #expect(second.map(\.reminder.name) == ["late"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aLeasedReminderIsNotClaimedAgainUntilTheLeaseRunsOut(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            try await store.setReminder(reminder("a", "r", due: 1_000))
            #expect(try await store.claimDue(nowMillis: 1_000, leaseMillis: 500, limit: 10).count == 1)
            #expect(try await store.claimDue(nowMillis: 1_500, leaseMillis: 500, limit: 10).isEmpty)
            let again = try await store.claimDue(nowMillis: 1_501, leaseMillis: 500, limit: 10)
            #expect(again.map(\.reminder.name) == ["r"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func settlingMovesARepeatingReminderAndDeletesAOneShotOne(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            try await store.setReminder(reminder("a", "every", due: 1_000, period: 100))
            try await store.setReminder(reminder("a", "once", due: 1_000))
            let claimed = try await store.claimDue(nowMillis: 1_000, leaseMillis: 10_000, limit: 10)
            #expect(claimed.count == 2)
            for claim in claimed {
                try await store.settle(claim, nextDueAtMillis: claim.reminder.nextDue(afterFiringAt: 1_050))
            }
            #expect(try await store.reminders(of: key("a")).map(\.name) == ["every"])
            #expect(try await store.reminders(of: key("a")).first?.dueAtMillis == 1_100)
            #expect(try await store.claimDue(nowMillis: 1_099, leaseMillis: 10_000, limit: 10).isEmpty)
            #expect(try await store.claimDue(nowMillis: 1_100, leaseMillis: 10_000, limit: 10).count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aFailedFiringIsCountedAndDueAgainAtTheRetryTime(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            try await store.setReminder(reminder("a", "r", due: 1_000))
            let claim = try #require(try await store.claimDue(nowMillis: 1_000, leaseMillis: 10_000, limit: 1).first)
            try await store.retry(claim, atMillis: 2_000)
            #expect(try await store.claimDue(nowMillis: 1_999, leaseMillis: 10_000, limit: 1).isEmpty)
            let retried = try #require(try await store.claimDue(nowMillis: 2_000, leaseMillis: 10_000, limit: 1).first)
            #expect(retried.attempts == 1)
            try await store.settle(retried, nextDueAtMillis: nil)
            #expect(try await store.reminders(of: key("a")).isEmpty)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aReminderSetOrCancelledWhileItFiredKeepsItsNewDefinition(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            try await store.setReminder(reminder("a", "r", due: 1_000))
            try await store.setReminder(reminder("a", "gone", due: 1_000))
            let claims = try await store.claimDue(nowMillis: 1_000, leaseMillis: 10_000, limit: 10)
            // Meanwhile the actor sets "r" again for later and cancels "gone".
            try await store.setReminder(reminder("a", "r", due: 50_000))
            #expect(try await store.cancelReminder(key("a"), name: "gone"))
            #expect(try await store.cancelReminder(key("a"), name: "gone") == false)
            for claim in claims { try await store.settle(claim, nextDueAtMillis: nil) }
            let left = try await store.reminders(of: key("a"))
            #expect(left.map(\.name) == ["r"])
            #expect(left.first?.dueAtMillis == 50_000)
            // The new definition is claimable at its own time, lease or no lease before.
            #expect(try await store.claimDue(nowMillis: 50_000, leaseMillis: 10_000, limit: 10).count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentClaimsNeverHandOutTheSameReminderTwice(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            for index in 0..<200 { try await store.setReminder(reminder("actor-\(index)", "r", due: 1_000)) }
            let batches = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        var names: [String] = []
                        for _ in 0..<50 {
                            let claimed = try await store.claimDue(nowMillis: 1_000, leaseMillis: 60_000, limit: 16)
                            if claimed.isEmpty { break }
                            names += claimed.map(\.reminder.key.name)
                        }
                        return names
                    }
                }
                var all: [[String]] = []
                for try await batch in group { all.append(batch) }
                return all
            }
            let all = batches.flatMap { $0 }
            #expect(all.count == 200)
            #expect(Set(all).count == all.count)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aReminderWithoutANameIsRefused(kind: StoreKind) async throws {
        try await withReminders(kind) { store in
            await expectCode(.invalidArgument) { try await store.setReminder(reminder("a", "", due: 1)) }
            await expectCode(.invalidArgument) { try await store.setReminder(reminder("a", "x", due: 1, period: -1)) }
        }
    }

    @Test func nextDueSkipsPeriodsThatPassedWhileNothingFired() {
        let r = Reminder(key: key("a"), name: "r", body: [], dueAtMillis: 1_000, periodMillis: 100)
        #expect(r.nextDue(afterFiringAt: 1_010) == 1_100)
        #expect(r.nextDue(afterFiringAt: 1_100) == 1_200)
        #expect(r.nextDue(afterFiringAt: 5_050) == 5_100)
        #expect(
            Reminder(key: key("a"), name: "r", body: [], dueAtMillis: 1_000, periodMillis: 0).nextDue(
                afterFiringAt: 2_000) == nil)
    }
}
