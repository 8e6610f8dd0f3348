import Foundation
import Synchronization
public import Troupe

/// Declares a 50 ms timer: each firing counts in its state and in ``fired`` (which the test reads
/// without calling the actor, since a call would keep it active). Goes idle after 600 ms.
public struct Ticker: VirtualActor {
    public struct State: Codable, Sendable {
        public var ticks = 0
        public var calls = 0
        /// The most turns that ever ran at once: 1 if firings take turns with calls.
        public var maxConcurrent = 0
        public var timerNames: Set<String> = []
    }
    public static let name = "ticker"
    public static let idleTimeout: Duration? = .milliseconds(600)
    public static let timers = [ActorTimer("tick", every: .milliseconds(50))]
    public static let fired = Atomic<Int>(0)
    static let running = Atomic<Int>(0)
    public static func initialState() -> State { State() }

    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("tick") { context -> NoPayload in
            let now = running.wrappingAdd(1, ordering: .relaxed).newValue
            defer { running.wrappingSubtract(1, ordering: .relaxed) }
            context.state.maxConcurrent = max(context.state.maxConcurrent, now)
            try await Task.sleep(for: .milliseconds(2))
            context.state.ticks += 1
            context.state.timerNames.insert(context.timer ?? "-")
            fired.wrappingAdd(1, ordering: .relaxed)
            return NoPayload()
        }
        actions.on("work") { context -> State in
            let now = running.wrappingAdd(1, ordering: .relaxed).newValue
            defer { running.wrappingSubtract(1, ordering: .relaxed) }
            context.state.maxConcurrent = max(context.state.maxConcurrent, now)
            try await Task.sleep(for: .milliseconds(20))
            context.state.calls += 1
            return context.state
        }
    }
}

/// What ``Alarm`` is asked to set.
public struct AlarmRequest: Codable, Sendable {
    public var name: String
    public var afterMs: Int
    public var everyMs: Int?
    public var note: String

    public init(name: String, afterMs: Int, everyMs: Int? = nil, note: String = "") {
        self.name = name
        self.afterMs = afterMs
        self.everyMs = everyMs
        self.note = note
    }
}

/// One firing ``Alarm`` recorded.
public struct Ring: Codable, Sendable, Hashable {
    public var timer: String
    public var note: String

    public init(timer: String, note: String) {
        self.timer = timer
        self.note = note
    }
}

/// Sets, cancels and records run-time timers and reminders (unnamed: one instance per test).
public struct Alarm: VirtualActor {
    public struct State: Codable, Sendable { public var rings: [Ring] = [] }
    public static let name = "alarm"
    public static let kind = ActorKind.unnamed
    public static let idleTimeout: Duration? = .seconds(2)
    public static func initialState() -> State { State() }

    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("set-timer") { (context, request: AlarmRequest) -> NoPayload in
            try context.setTimer(
                request.name, action: "ring", request.note, after: .milliseconds(request.afterMs),
                every: request.everyMs.map { .milliseconds($0) })
            return NoPayload()
        }
        actions.on("cancel-timer") { (context, name: String) -> NoPayload in
            context.cancelTimer(name)
            return NoPayload()
        }
        actions.on("set-reminder") { (context, request: AlarmRequest) -> NoPayload in
            try context.setReminder(
                request.name, action: "ring", request.note, after: .milliseconds(request.afterMs),
                every: request.everyMs.map { .milliseconds($0) })
            return NoPayload()
        }
        actions.on("cancel-reminder") { (context, name: String) -> NoPayload in
            context.cancelReminder(name)
            return NoPayload()
        }
        actions.on("ring") { (context, note: String) -> NoPayload in
            context.state.rings.append(Ring(timer: context.timer ?? "-", note: note))
            return NoPayload()
        }
        actions.on("rings") { context -> [Ring] in context.state.rings }
        actions.on("set-bad-timer") { context -> NoPayload in
            try context.setTimer("bad", action: "no-such-action", after: .milliseconds(10))
            context.state.rings.append(Ring(timer: "never", note: "stored"))
            return NoPayload()
        }
    }
}

/// Records how late each firing of its timer reached the action (nil: it came without a due time).
public struct LagProbe: VirtualActor {
    public struct State: Codable, Sendable { public var lagsMicros: [Int64?] = [] }
    public static let name = "lag-probe"
    public static let kind = ActorKind.unnamed
    public static let idleTimeout: Duration? = .seconds(5)
    public static func initialState() -> State { State() }

    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("set") { (context, afterMs: Int) -> NoPayload in
            try context.setTimer("probe", action: "probe", after: .milliseconds(afterMs))
            return NoPayload()
        }
        actions.on("probe") { context -> NoPayload in
            context.state.lagsMicros.append(context.timerLag.map { $0.components.seconds * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000 })
            return NoPayload()
        }
        actions.on("lags") { context -> [Int64?] in context.state.lagsMicros }
    }
}
