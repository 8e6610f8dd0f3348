import Foundation
import Metrics
public import NIOCore
import SwiftProtobuf
import TroupeProto
import TroupeStore
import TroupeWire

/// What marks a call as a timer's or reminder's firing.
public struct TimerFiring: Sendable {
    /// The timer's name, passed to the host in `ActorInvocation.timer`.
    public var name: String
    /// When it was due: the fire lag is measured from here to the start of its turn.
    public var due: NIODeadline
    /// A reminder (kept in the store), not an activation timer.
    public var durable: Bool

    public init(name: String, due: NIODeadline, durable: Bool) {
        self.name = name
        self.due = due
        self.durable = durable
    }

    /// The due time on the wall clock, for the host (`ActorInvocation.timer_due_unix_micros`):
    /// `due` is on the monotonic clock, which means nothing outside this process.
    func dueUnixMicros(now: NIODeadline) -> Int64 {
        let wallMicros = Int64((Date().timeIntervalSince1970 * 1_000_000).rounded(.down))
        return wallMicros - (now - due).nanoseconds / 1000
    }
}

/// A timer of one activation, as the directory keeps it with the actor's mailbox.
struct ActiveTimer: Sendable {
    var generation: UInt64
    var action: String
    var payload: WirePayload
    /// nil for a one-shot timer.
    var period: TimeAmount?
}

/// The timer and reminder metrics.
enum TimerMeters {
    static let timerFires = Counter(label: "troupe_timer_fires_total")
    /// Firings dropped because the previous one was still running or the mailbox was full.
    static let timerSkips = Counter(label: "troupe_timer_skipped_total")
    static let timerFailures = Counter(label: "troupe_timer_failures_total")
    /// Rate of the `timer firing failed` log lines; `timerFailures` counts them all.
    static let failureLog = LogRateLimit()
    static let reminderFires = Counter(label: "troupe_reminder_fires_total")
    static let reminderFailures = Counter(label: "troupe_reminder_failures_total")
    static let timerLag = Timer(
        label: "troupe_timer_fire_lag_seconds", dimensions: [("kind", "timer")], preferredDisplayUnit: .seconds)
    static let reminderLag = Timer(
        label: "troupe_timer_fire_lag_seconds", dimensions: [("kind", "reminder")], preferredDisplayUnit: .seconds)

    /// Records how late a firing's turn started.
    static func recordLag(_ firing: TimerFiring, startedAt started: NIODeadline) {
        let lag = max(0, (started - firing.due).nanoseconds)
        (firing.durable ? reminderLag : timerLag).recordNanoseconds(lag)
    }
}

enum TimerRules {
    /// Checks an actor type's declared timers at registration.
    static func validate(_ definition: WireActorDefinition) throws(TroupeError) {
        for timer in definition.timers {
            guard !timer.action.isEmpty else {
                throw .invalidArgument("actor type '\(definition.name)' declares a timer without an action")
            }
            guard timer.periodMs > 0 else {
                throw .invalidArgument(
                    "timer '\(timer.action)' of actor type '\(definition.name)' needs a period of at least 1 ms")
            }
            guard definition.actions.isEmpty || definition.actions.contains(timer.action) else {
                throw .invalidArgument(
                    "timer '\(timer.action)' of actor type '\(definition.name)' names an action the type does not declare"
                )
            }
        }
    }

    /// Checks the timer commands of an action's result before anything of it is applied.
    static func validate(_ commands: [WireTimerCommand], type: ActorTypeInfo) throws(TroupeError) {
        for command in commands {
            guard !command.name.isEmpty else { throw .invalidArgument("a timer command has no name") }
            if command.cancel { continue }
            guard !command.action.isEmpty else {
                throw .invalidArgument("timer '\(command.name)' names no action")
            }
            guard type.actions.isEmpty || type.actions.contains(command.action) else {
                throw .invalidArgument(
                    "timer '\(command.name)' names action '\(command.action)', which actor type '\(type.name)' does not have"
                )
            }
        }
    }
}

/// Reminders and delayed calls as the store keeps them: a `StoredReminder` message in the row's body.
enum StoredReminders {
    /// The reminder that `command` sets on `key`.
    static func reminder(_ command: WireTimerCommand, of key: ActorKey, nowMillis: Int64) throws(TroupeError)
        -> Reminder
    {
        var call = WireInvokeRequest()
        call.actor.system = key.system
        call.actor.name = key.name
        call.action = command.action
        call.payload = command.payload
        var stored = WireStoredReminder()
        stored.call = call
        stored.timer = command.name
        return Reminder(
            key: key, name: command.name, body: try encode(stored),
            dueAtMillis: nowMillis + Int64(clamping: command.dueMs), periodMillis: Int64(clamping: command.periodMs))
    }

    /// A delayed call of `request`, due `request.delayMs` from now, under a fresh name.
    static func delayed(_ request: WireInvokeRequest, to key: ActorKey, nowMillis: Int64) throws(TroupeError)
        -> Reminder
    {
        var call = request
        call.delayMs = 0
        call.fireAndForget = false
        call.actor.system = key.system
        call.actor.name = key.name
        var stored = WireStoredReminder()
        stored.call = call
        let name = "delayed/\(nowMillis)-\(UInt64.random(in: 0...UInt64.max))"
        return Reminder(
            key: key, name: name, body: try encode(stored), dueAtMillis: nowMillis + Int64(clamping: request.delayMs),
            periodMillis: 0)
    }

    /// The call a claimed reminder makes.
    static func invocation(
        _ claim: ClaimedReminder, nowMillis: Int64, defaultTimeout: TimeAmount
    ) throws(TroupeError) -> Invocation {
        let stored: WireStoredReminder
        do { stored = try WireStoredReminder(serializedBytes: claim.reminder.body) } catch {
            throw TroupeError(
                .dataLoss, "reminder \(claim.reminder.name) of \(claim.reminder.key) is unreadable: \(error)")
        }
        let call = stored.call
        let now = NIODeadline.now()
        let timeout = call.timeoutMs == 0 ? defaultTimeout : .milliseconds(Int64(call.timeoutMs))
        var invocation = Invocation(
            actor: claim.reminder.key, action: call.action, payload: call.payload, metadata: call.metadata,
            caller: call.hasCaller ? call.caller : nil, deadline: now + timeout, spawnFrom: call.spawnFrom)
        if !stored.timer.isEmpty {
            invocation.firing = TimerFiring(
                name: stored.timer, due: now - .milliseconds(max(0, nowMillis - claim.reminder.dueAtMillis)),
                durable: true)
        }
        return invocation
    }

    private static func encode(_ stored: WireStoredReminder) throws(TroupeError) -> [UInt8] {
        do { return try stored.serializedBytes() } catch {
            throw .internalError("cannot encode a reminder: \(error)")
        }
    }
}
