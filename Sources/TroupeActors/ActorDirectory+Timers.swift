import Foundation
import Logging
import NIOCore
import Synchronization
public import TroupeProto
public import TroupeStore
import TroupeWire

/// Generations of activation timers: unique per sidecar, so a stale wheel entry never matches a
/// timer set again under the same name.
private let timerGenerations = Atomic<UInt64>(1)

extension ActorDirectory {
    /// Adds the timers `definition` declares to a fresh activation; returns their first wheel entries.
    func installDeclaredTimers(_ definition: WireActorDefinition, in slot: inout Slot, key: ActorKey)
        -> [TimerWheel.Entry]
    {
        let now = NIODeadline.now()
        return definition.timers.map { declared in
            let period = TimeAmount.milliseconds(Int64(declared.periodMs))
            let generation = timerGenerations.wrappingAdd(1, ordering: .relaxed).newValue
            slot.timers[declared.action] = ActiveTimer(
                generation: generation, action: declared.action, payload: declared.payload, period: period)
            return TimerWheel.Entry(
                at: now + period, key: key, activationID: slot.activationID, name: declared.action,
                generation: generation)
        }
    }

    /// Sets and cancels activation timers of `key` (the non-durable commands of an action's
    /// result). Does nothing if the activation has ended meanwhile: its timers ended with it.
    func applyTimerCommands(_ commands: [WireTimerCommand], key: ActorKey, activationID: UInt64) {
        let now = NIODeadline.now()
        let entries = state.withLock { state -> [TimerWheel.Entry] in
            guard let index = state.slots.index(forKey: key), state.slots.values[index].activationID == activationID
            else { return [] }
            var entries: [TimerWheel.Entry] = []
            for command in commands where !command.durable {
                if command.cancel {
                    state.slots.values[index].timers.removeValue(forKey: command.name)
                    entries.removeAll { $0.name == command.name }
                    continue
                }
                let generation = timerGenerations.wrappingAdd(1, ordering: .relaxed).newValue
                state.slots.values[index].timers[command.name] = ActiveTimer(
                    generation: generation, action: command.action, payload: command.payload,
                    period: command.periodMs == 0 ? nil : .milliseconds(Int64(clamping: command.periodMs)))
                entries.removeAll { $0.name == command.name }
                entries.append(
                    TimerWheel.Entry(
                        at: now + .milliseconds(Int64(clamping: command.dueMs)), key: key, activationID: activationID,
                        name: command.name, generation: generation))
            }
            return entries
        }
        timerWheel.schedule(entries)
    }

    /// Queues the firings of timers that came due, each as a call in its actor's mailbox. A firing
    /// is skipped (and counted) while the timer's previous one is unfinished or the mailbox is full.
    /// One lock for the whole pass, and nothing to do when a firing ends: the mailbox itself says
    /// whether a timer's previous firing is still waiting or running.
    func fire(_ entries: [TimerWheel.Entry]) {
        let now = NIODeadline.now()
        var next: [TimerWheel.Entry] = []
        var pumps: [(ActorProcess, any EventLoop)] = []
        var skipped = 0
        var fired = 0
        state.withLock { state in
            // A draining directory takes no new calls, firings included.
            guard !state.stopping else { return }
            for entry in entries {
                guard let index = state.slots.index(forKey: entry.key),
                    state.slots.values[index].activationID == entry.activationID,
                    state.slots.values[index].process != nil,
                    let timer = state.slots.values[index].timers[entry.name], timer.generation == entry.generation
                else { continue }
                if let period = timer.period {
                    var at = entry.at + period
                    // Behind by more than a period (a stalled loop): fire once, then keep the rhythm.
                    if at <= now { at = now + period }
                    next.append(
                        TimerWheel.Entry(
                            at: at, key: entry.key, activationID: entry.activationID, name: entry.name,
                            generation: entry.generation))
                } else {
                    state.slots.values[index].timers.removeValue(forKey: entry.name)
                }
                let capacity = state.slots.values[index].type?.mailboxCapacity ?? configuration.defaultMailboxCapacity
                guard (state.slots.values[index].queue?.count ?? 0) < capacity,
                    timer.period == nil || !state.slots.values[index].hasFiring(of: entry.name)
                else {
                    skipped += 1
                    continue
                }
                var invocation = Invocation(
                    actor: entry.key, action: timer.action, payload: timer.payload,
                    deadline: now + configuration.sideEffectTimeout)
                invocation.firing = TimerFiring(name: entry.name, due: entry.at, durable: false)
                // Not armed with a deadline timer of its own (one per firing would cost a scheduled
                // task each): the mailbox checks the deadline when the firing starts, the host call
                // has its own timeout, and every way out of the mailbox completes the reply.
                let reply = Reply { [weak self] result in
                    guard case .failure(let error) = result else { return }
                    self?.timerFailed(entry, error)
                }
                if let pump = state.slots.values[index].enqueue(Call(invocation: invocation, reply: reply)) {
                    pumps.append(pump)
                }
                fired += 1
            }
        }
        timerWheel.schedule(next)
        if fired > 0 { TimerMeters.timerFires.increment(by: fired) }
        if skipped > 0 { TimerMeters.timerSkips.increment(by: skipped) }
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, processes: [ActorProcess])] = [:]
        for (process, loop) in pumps {
            byLoop[ObjectIdentifier(loop), default: (loop: loop, processes: [])].processes.append(process)
        }
        for (loop, processes) in byLoop.values { ActorProcess.schedulePumps(processes, on: loop) }
    }

    private func timerFailed(_ entry: TimerWheel.Entry, _ error: TroupeError) {
        TimerMeters.timerFailures.increment()
        // At most a line a second: a host that went away fails the firings of all its actors.
        guard let suppressed = TimerMeters.failureLog.admit() else { return }
        logger.warning(
            "timer firing failed",
            metadata: [
                "troupe.actor_id": "\(entry.key)", "troupe.timer": "\(entry.name)", "troupe.error": "\(error)",
                "troupe.suppressed": "\(suppressed)",
            ])
    }

    /// The names of the activation timers of `key`, if it is active (for tests and tools).
    public func activeTimers(of key: ActorKey) -> [String] {
        state.withLock { $0.slots[key]?.timers.keys.sorted() ?? [] }
    }

    /// Stores and deletes the reminders among `commands`, in order, for actor `key`.
    ///
    /// - Throws: `failedPrecondition` without a reminder store; the store's error otherwise.
    func applyReminderCommands(_ commands: [WireTimerCommand], key: ActorKey) async throws {
        let durable = commands.filter(\.durable)
        guard !durable.isEmpty else { return }
        guard let reminders else {
            throw TroupeError.failedPrecondition("this sidecar's state store keeps no reminders")
        }
        for command in durable {
            if command.cancel {
                try await reminders.cancelReminder(key, name: command.name)
            } else {
                try await reminders.setReminder(
                    try StoredReminders.reminder(command, of: key, nowMillis: ReminderClock.nowMillis()))
            }
        }
    }
}

/// Wall-clock milliseconds, the time base of stored reminders.
enum ReminderClock {
    static func nowMillis() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}

extension ActorDirectory {
    /// Stores `request` as a delayed call to `key`, due `request.delayMs` from now; returns the
    /// reminder name it is stored under. It survives restarts and runs through the reminder
    /// scheduler; its outcome is dropped, and failures are logged and retried.
    ///
    /// - Throws: `failedPrecondition` without a reminder store; the store's error otherwise.
    public func scheduleDelayed(_ request: WireInvokeRequest, to key: ActorKey) async throws -> String {
        guard let reminders else {
            throw TroupeError.failedPrecondition("this sidecar's state store keeps no delayed calls")
        }
        let reminder = try StoredReminders.delayed(request, to: key, nowMillis: ReminderClock.nowMillis())
        try await reminders.setReminder(reminder)
        return reminder.name
    }
}
