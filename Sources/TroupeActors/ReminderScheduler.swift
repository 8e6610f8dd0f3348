public import Logging
public import NIOCore
public import ServiceLifecycle
import TroupeProto
public import TroupeStore
import TroupeWire

/// Fires due reminders and delayed calls: claims them from the store with a lease, invokes each
/// through the directory (which activates the actor, or routes the call to the node that owns it),
/// and then moves a repeating reminder to its next due time, deletes a one-shot one, or, after a
/// failed firing, makes it due again with exponential backoff.
///
/// Every sidecar sharing a store runs one; the leases keep them from firing a reminder twice at
/// the same time. Delivery is at least once: a sidecar that dies after invoking but before settling
/// leaves the reminder to fire again once its lease runs out.
public final class ReminderScheduler: Service, Sendable {
    public struct Configuration: Sendable {
        /// How often the store is asked for due reminders when the last claim was not full.
        public var pollInterval: TimeAmount = .milliseconds(250)
        /// How long a claimed reminder is reserved for this sidecar.
        public var lease: TimeAmount = .seconds(30)
        /// Reminders claimed per statement.
        public var batchSize = 256
        /// The longest pause before a failed firing is tried again.
        public var maxBackoff: TimeAmount = .seconds(60)

        public init() {}
    }

    private struct Outcome: Sendable {
        var claim: ClaimedReminder
        var result: Result<WirePayload, TroupeError>
    }

    public let configuration: Configuration
    private let store: any ReminderStore
    private let directory: ActorDirectory
    private let logger: Logger
    private let outcomes: AsyncStream<Outcome>
    private let outcomeInput: AsyncStream<Outcome>.Continuation

    public init(configuration: Configuration, store: any ReminderStore, directory: ActorDirectory, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.directory = directory
        self.logger = logger
        (outcomes, outcomeInput) = AsyncStream.makeStream(of: Outcome.self)
    }

    /// Claims and fires until graceful shutdown. Firings still running then settle nothing: their
    /// leases run out and another claim fires them again.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await outcome in self.outcomes { await self.settle(outcome) }
            }
            await cancelWhenGracefulShutdown { await self.claimLoop() }
            outcomeInput.finish()
            group.cancelAll()
        }
    }

    private func claimLoop() async {
        var failures = 0
        while !Task.isCancelled {
            var claimed = 0
            // Before any host registered, every firing would fail: wait for one.
            if !directory.registeredTypes.isEmpty {
                do {
                    claimed = try await claimAndFire()
                    failures = 0
                } catch {
                    failures += 1
                    if failures == 1 || failures % 100 == 0 {
                        logger.warning(
                            "claiming due reminders failed",
                            metadata: ["troupe.error": "\(TroupeError(wrapping: error))"])
                    }
                }
            }
            if claimed < configuration.batchSize {
                try? await Task.sleep(for: .nanoseconds(configuration.pollInterval.nanoseconds))
            }
        }
    }

    private func claimAndFire() async throws -> Int {
        let now = ReminderClock.nowMillis()
        let claims = try await store.claimDue(
            nowMillis: now, leaseMillis: configuration.lease.nanoseconds / 1_000_000, limit: configuration.batchSize)
        for claim in claims {
            let invocation: Invocation
            do {
                invocation = try StoredReminders.invocation(
                    claim, nowMillis: now, defaultTimeout: directory.configuration.sideEffectTimeout)
            } catch {
                outcomeInput.yield(Outcome(claim: claim, result: .failure(error)))
                continue
            }
            let reply = Reply { [outcomeInput = self.outcomeInput] result in
                outcomeInput.yield(Outcome(claim: claim, result: result))
            }
            reply.arm(deadline: invocation.deadline, on: DeadlineTimers.loop)
            TimerMeters.reminderFires.increment()
            directory.invoke(invocation, reply: reply)
        }
        return claims.count
    }

    private func settle(_ outcome: Outcome) async {
        let claim = outcome.claim
        let now = ReminderClock.nowMillis()
        do {
            switch outcome.result {
            case .success:
                try await store.settle(claim, nextDueAtMillis: claim.reminder.nextDue(afterFiringAt: now))
            case .failure(let error) where error.code == .dataLoss:
                // It can never fire; keeping it would only fail again forever.
                TimerMeters.reminderFailures.increment()
                logger.error(
                    "reminder dropped",
                    metadata: [
                        "troupe.actor_id": "\(claim.reminder.key)", "troupe.reminder": "\(claim.reminder.name)",
                        "troupe.error": "\(error)",
                    ])
                try await store.settle(claim, nextDueAtMillis: nil)
            case .failure(let error):
                TimerMeters.reminderFailures.increment()
                let backoff = backoff(afterAttempts: claim.attempts + 1)
                logger.warning(
                    "reminder firing failed; retrying",
                    metadata: [
                        "troupe.actor_id": "\(claim.reminder.key)", "troupe.reminder": "\(claim.reminder.name)",
                        "troupe.attempts": "\(claim.attempts + 1)", "troupe.retry_in_ms": "\(backoff)",
                        "troupe.error": "\(error)",
                    ])
                try await store.retry(claim, atMillis: now + backoff)
            }
        } catch {
            // The lease runs out and the reminder is claimed again: nothing is lost.
            logger.warning(
                "settling a reminder failed",
                metadata: [
                    "troupe.actor_id": "\(claim.reminder.key)", "troupe.reminder": "\(claim.reminder.name)",
                    "troupe.error": "\(TroupeError(wrapping: error))",
                ])
        }
    }

    /// Milliseconds before the next try: 500 ms doubling per failed attempt, up to the maximum.
    func backoff(afterAttempts attempts: Int) -> Int64 {
        let cap = configuration.maxBackoff.nanoseconds / 1_000_000
        return min(cap, 500 << Int64(min(attempts - 1, 20)))
    }
}
