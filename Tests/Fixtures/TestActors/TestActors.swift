import Foundation
import Synchronization
public import Troupe

/// A named counter.
public struct Counter: VirtualActor {
    public struct State: Codable, Sendable { public var value = 0 }
    public static let name = "counter"
    public static func initialState() -> State { State(value: 0) }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("add") { (context, amount: Int) -> Int in
            context.state.value += amount
            return context.state.value
        }
        actions.on("get") { context -> Int in context.state.value }
    }
}

/// One entry of ``Journal``.
public struct JournalEntry: Codable, Sendable, Hashable {
    public var caller: Int
    public var sequence: Int
    public init(caller: Int, sequence: Int) {
        self.caller = caller
        self.sequence = sequence
    }
}

/// Records the order calls ran in, and how many ran at once (turn-based actors: never more than one).
public struct Journal: VirtualActor {
    public struct State: Codable, Sendable {
        public var entries: [JournalEntry] = []
        public var maxConcurrent = 0
    }
    public static let name = "journal"
    public static func initialState() -> State { State() }
    static let running = Atomic<Int>(0)

    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("append") { (context, entry: JournalEntry) -> Int in
            let now = running.wrappingAdd(1, ordering: .relaxed).newValue
            defer { running.wrappingSubtract(1, ordering: .relaxed) }
            context.state.maxConcurrent = max(context.state.maxConcurrent, now)
            // Give another call the chance to run concurrently if the runtime allowed it.
            try await Task.sleep(for: .microseconds(200))
            context.state.entries.append(entry)
            return context.state.entries.count
        }
        actions.on("read") { context -> State in context.state }
    }
}

/// Sleeps for the requested milliseconds: for deadlines, mailboxes and crashes mid-call.
public struct Sleeper: VirtualActor {
    public typealias State = Stateless
    public static let name = "sleeper"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("sleep") { (_, milliseconds: Int) -> Int in
            try await Task.sleep(for: .milliseconds(milliseconds))
            return milliseconds
        }
    }
}

/// Stateless echo.
public struct Echo: VirtualActor {
    public typealias State = Stateless
    public static let name = "echo"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("echo") { (_, text: String) -> String in text }
        actions.on("fail") { (_, code: Int) -> String in
            throw TroupeError(TroupeError.Code(rawValue: code) ?? .unknown, "asked to fail")
        }
        actions.on("caller") { context -> String in "\(context.callerSystem ?? "-")/\(context.caller ?? "-")" }
        actions.on("metadata") { context -> [String: String] in context.metadata }
    }
}

/// What ``Relay`` is asked to call.
public struct RelayRequest: Codable, Sendable {
    public var system: String
    public var actor: String
    public var action: String
    public var text: String
    public init(system: String, actor: String, action: String, text: String) {
        self.system = system
        self.actor = actor
        self.action = action
        self.text = text
    }
}

/// Calls another actor, possibly of another ActorSystem, from inside its action.
public struct Relay: VirtualActor {
    public typealias State = Stateless
    public static let name = "relay"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("call") { (context, request: RelayRequest) -> String in
            try await context.client.invoke(
                request.actor, action: request.action, request.text, as: String.self, system: request.system,
                timeout: .seconds(10))
        }
    }
}

/// An unnamed stateful actor, spawned per account id.
public struct Account: VirtualActor {
    public struct State: Codable, Sendable { public var balance = 0 }
    public static let name = "account"
    public static let kind = ActorKind.unnamed
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("deposit") { (context, amount: Int) -> Int in
            context.state.balance += amount
            return context.state.balance
        }
        actions.on("balance") { context -> Int in context.state.balance }
    }
}

/// A write-behind counter whose snapshots are a minute apart, so in a test only deactivation,
/// host loss or shutdown store its state.
public struct Tally: VirtualActor {
    public struct State: Codable, Sendable { public var value = 0 }
    public static let name = "tally"
    public static let durability = Durability.writeBehind
    public static let snapshotInterval: Duration? = .seconds(60)
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("add") { (context, amount: Int) -> Int in
            context.state.value += amount
            return context.state.value
        }
        actions.on("get") { context -> Int in context.state.value }
        // Adds after a pause: a turn that is still running when placement moves the actor.
        actions.on("add-slowly") { (context, request: SlowAdd) -> Int in
            try await Task.sleep(for: .milliseconds(request.milliseconds))
            context.state.value += request.amount
            return context.state.value
        }
    }
}

/// What ``Tally``'s `add-slowly` adds, and after how long.
public struct SlowAdd: Codable, Sendable {
    public var amount: Int
    public var milliseconds: Int
    public init(amount: Int, milliseconds: Int) {
        self.amount = amount
        self.milliseconds = milliseconds
    }
}

/// The same write-behind counter with a short interval.
public struct QuickTally: VirtualActor {
    public struct State: Codable, Sendable { public var value = 0 }
    public static let name = "quick-tally"
    public static let durability = Durability.writeBehind
    public static let snapshotInterval: Duration? = .milliseconds(50)
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("add") { (context, amount: Int) -> Int in
            context.state.value += amount
            return context.state.value
        }
    }
}

/// Listens to the channel `news` and keeps what it heard, in order.
public struct Listener: VirtualActor {
    public struct State: Codable, Sendable { public var heard: [String] = [] }
    public static let name = "listener"
    public static let channels = ["news"]
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("hear") { (context, text: String) -> Int in
            context.state.heard.append("\(context.callerSystem ?? "-"):\(text)")
            return context.state.heard.count
        }
        actions.on("heard") { context -> [String] in context.state.heard }
    }
}

/// An unnamed actor that reports where it runs: the `TROUPE_TEST_NODE` of its host process
/// (each cluster test node runs its own host), and how many calls this activation answered.
public struct Whereabouts: VirtualActor {
    public struct State: Codable, Sendable { public var calls = 0 }
    public static let name = "whereabouts"
    public static let kind = ActorKind.unnamed
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("where") { context -> String in
            context.state.calls += 1
            return ProcessInfo.processInfo.environment["TROUPE_TEST_NODE"] ?? "unknown"
        }
    }
}

/// What the end of a forward or pipe chain saw.
public struct ChainReport: Codable, Sendable, Hashable {
    public var text: String
    public var caller: String
    public var metadata: [String: String]
    /// The revision of `chain-a` when the chain's end ran, as the sidecar lists it.
    public var firstRevision: UInt64
    /// `chain-a`'s count, read by calling it while the chain's caller still waits.
    public var firstCount: Int
}

/// Start of a forward chain: counts the call in its state, then forwards the request to `chain-b`.
public struct ChainA: VirtualActor {
    public struct State: Codable, Sendable { public var count = 0 }
    public static let name = "chain-a"
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("start") { (context, _: String) -> String in
            context.state.count += 1
            context.forward(to: "chain-b", action: "relay", metadata: ["hop": "a"])
            return "chain-a's own reply is dropped"
        }
        actions.on("start-nowhere") { (context, _: String) -> String in
            context.state.count += 1
            context.forward(to: "", action: "relay")
            return "never sent"
        }
        actions.on("count-and-notify") { (context, key: String) -> Int in
            context.state.count += 1
            try context.sideEffect("gate", action: "pass", key)
            return context.state.count
        }
        actions.on("count") { context -> Int in context.state.count }
    }
}

/// Middle of the forward chain: forwards the request on to `chain-c`.
public struct ChainB: VirtualActor {
    public typealias State = Stateless
    public static let name = "chain-b"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("relay") { (context, _: String) -> NoPayload in
            context.forward(to: "chain-c", action: "end", metadata: ["hop": "b"])
            return NoPayload()
        }
    }
}

/// End of the forward chain: reports what it received and reads `chain-a` from inside its action.
public struct ChainC: VirtualActor {
    public typealias State = Stateless
    public static let name = "chain-c"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("end") { (context, text: String) -> ChainReport in
            let revision = try await context.client.activeActors(ofType: "chain-a").first?.revision ?? 0
            let count: Int = try await context.client.invoke("chain-a", action: "count", timeout: .seconds(5))
            return ChainReport(
                text: text, caller: "\(context.callerSystem ?? "-")/\(context.caller ?? "-")",
                metadata: context.metadata, firstRevision: revision, firstCount: count)
        }
    }
}

/// A pipe chain: `times-ten` pipes its result to `plus-one`, which pipes its result to `describe`.
public struct Pipeline: VirtualActor {
    public typealias State = Stateless
    public static let name = "pipeline"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("times-ten") { (context, value: Int) -> Int in
            context.pipe(to: "pipeline-end", action: "plus-one")
            return value * 10
        }
    }
}

/// The pipe chain's second and last stages.
public struct PipelineEnd: VirtualActor {
    public typealias State = Stateless
    public static let name = "pipeline-end"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("plus-one") { (context, value: Int) -> Int in
            context.pipe(to: "pipeline-end", action: "describe", metadata: ["stage": "plus-one"])
            return value + 1
        }
        actions.on("describe") { (context, value: Int) -> String in
            "\(value) from \(context.caller ?? "-") trace=\(context.metadata["trace"] ?? "-") stage=\(context.metadata["stage"] ?? "-")"
        }
    }
}

/// Where ``Redirect`` sends a call.
public struct RedirectRequest: Codable, Sendable {
    public var actor: String
    public var action: String
    public var system: String?
    /// Pipe `value` instead of forwarding the request.
    public var pipe: Bool
    public var value: Int
    public var spawnFrom: String?
    public init(
        actor: String, action: String, system: String? = nil, pipe: Bool = false, value: Int = 0,
        spawnFrom: String? = nil
    ) {
        self.actor = actor
        self.action = action
        self.system = system
        self.pipe = pipe
        self.value = value
        self.spawnFrom = spawnFrom
    }
}

/// Forwards (or pipes) to wherever the request says: for targets that do not exist.
public struct Redirect: VirtualActor {
    public typealias State = Stateless
    public static let name = "redirect"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("to") { (context, request: RedirectRequest) -> Int in
            if request.pipe {
                context.pipe(
                    to: request.actor, action: request.action, system: request.system, spawnFrom: request.spawnFrom)
            } else {
                context.forward(
                    to: request.actor, action: request.action, system: request.system, spawnFrom: request.spawnFrom)
            }
            return request.value
        }
    }
}

/// Answers at once and leaves a side effect: for `gate`, or for an actor that does not exist.
public struct Notifier: VirtualActor {
    public typealias State = Stateless
    public static let name = "notifier"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("notify") { (context, key: String) -> String in
            try context.sideEffect("gate", action: "pass", key, metadata: ["effect": "yes"])
            return "notified"
        }
        actions.on("notify-nobody") { (context, key: String) -> String in
            try context.sideEffect("nobody-here", action: "pass", key)
            return "notified"
        }
    }
}

/// A latch per key that tests open; ``Gate`` waits on it.
public final class Latches: Sendable {
    private struct Entry {
        var open = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let entries = Mutex<[String: Entry]>([:])

    /// Lets every waiter of `key`, present and future, go on.
    public func open(_ key: String) {
        let waiters = entries.withLock { entries -> [CheckedContinuation<Void, Never>] in
            entries[key, default: Entry()].open = true
            defer { entries[key]?.waiters = [] }
            return entries[key]?.waiters ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until `key` is opened.
    public func wait(_ key: String) async {
        await withCheckedContinuation { continuation in
            let opened = entries.withLock { entries -> Bool in
                if entries[key, default: Entry()].open { return true }
                entries[key, default: Entry()].waiters.append(continuation)
                return false
            }
            if opened { continuation.resume() }
        }
    }
}

/// What ``Gate`` recorded about one key.
public struct GateVisit: Sendable, Hashable {
    public var caller: String
    public var metadata: [String: String]
    public var passed: Bool
}

/// A side-effect target that blocks until the test opens its latch.
public struct Gate: VirtualActor {
    public typealias State = Stateless
    public static let name = "gate"
    public static let latches = Latches()
    public static let visits = Mutex<[String: GateVisit]>([:])
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("pass") { (context, key: String) -> NoPayload in
            let visit = GateVisit(
                caller: "\(context.callerSystem ?? "-")/\(context.caller ?? "-")", metadata: context.metadata,
                passed: false)
            visits.withLock { $0[key] = visit }
            await latches.wait(key)
            visits.withLock { $0[key]?.passed = true }
            return NoPayload()
        }
    }
}

/// A write-behind counter that forwards each `add` to ``CallerReader``, which reads it back.
public struct BehindForwarder: VirtualActor {
    public struct State: Codable, Sendable { public var value = 0 }
    public static let name = "behind-forwarder"
    public static let durability = Durability.writeBehind
    public static let snapshotInterval: Duration? = .seconds(60)
    public static func initialState() -> State { State() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("add") { (context, amount: Int) -> NoPayload in
            context.state.value += amount
            context.forward(to: "caller-reader", action: "read-caller")
            return NoPayload()
        }
        actions.on("get") { context -> Int in context.state.value }
    }
}

/// Replies with its caller's `get`, called from inside the action.
public struct CallerReader: VirtualActor {
    public typealias State = Stateless
    public static let name = "caller-reader"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("read-caller") { context -> Int in
            guard let caller = context.caller else { throw TroupeError.invalidArgument("no caller") }
            return try await context.client.invoke(caller, action: "get", timeout: .seconds(5))
        }
    }
}

/// Calls its caller back: `back` invokes the action it is given on the actor that called it.
public struct Bouncer: VirtualActor {
    public typealias State = Stateless
    public static let name = "bouncer"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("back") { (context, action: String) -> Int in
            guard let caller = context.caller else {
                throw TroupeError.invalidArgument("bouncer needs an actor caller")
            }
            return try await context.client.invoke(
                caller, action: action, system: context.callerSystem, timeout: .seconds(10))
        }
    }
}

/// The state of ``StrictLoop`` and ``ReentrantLoop``.
public struct LoopState: Codable, Sendable {
    public var count = 0
}

/// The actions of an actor whose call to ``Bouncer`` comes back to it (A → B → A).
enum LoopActions {
    static func declare<A: VirtualActor>(_ actions: inout Actions<A>) where A.State == LoopState {
        // Leaves the state alone and replies with what the call back into it answered.
        actions.on("bounce") { (context, action: String) -> Int in
            try await context.client.invoke("bouncer", action: "back", action, timeout: .seconds(10))
        }
        // Changes the state, then has the bouncer call back.
        actions.on("add-one-and-bounce") { (context, action: String) -> Int in
            context.state.count += 1
            return try await context.client.invoke("bouncer", action: "back", action, timeout: .seconds(10))
        }
        // The same through the bouncer of another ActorSystem, over the bridge.
        actions.on("add-one-and-bounce-in") { (context, system: String) -> Int in
            context.state.count += 1
            return try await context.client.invoke(
                "bouncer", action: "back", "count", system: system, timeout: .seconds(10))
        }
        // Calls itself, and so on without end: only a limit stops it.
        actions.on("recurse") { context -> Int in
            try await context.client.invoke(context.name, action: "recurse", timeout: .seconds(10))
        }
        actions.on("add-ten") { context -> Int in
            context.state.count += 10
            return context.state.count
        }
        actions.on("count") { context -> Int in context.state.count }
    }
}

/// Strict turns (the default): a call back into a running turn is refused.
public struct StrictLoop: VirtualActor {
    public typealias State = LoopState
    public static let name = "strict-loop"
    public static func initialState() -> LoopState { LoopState() }
    public static func actions(_ actions: inout Actions<Self>) { LoopActions.declare(&actions) }
}

/// A reentrant actor: a call back into a running turn runs interleaved.
public struct ReentrantLoop: VirtualActor {
    public typealias State = LoopState
    public static let name = "reentrant-loop"
    public static let reentrant = true
    public static func initialState() -> LoopState { LoopState() }
    public static func actions(_ actions: inout Actions<Self>) { LoopActions.declare(&actions) }
}

/// Forwards or pipes to itself for ever, counting each turn: only the hop limit stops it.
public struct Spinner: VirtualActor {
    public typealias State = LoopState
    public static let name = "spinner"
    public static func initialState() -> LoopState { LoopState() }
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("forward-spin") { context -> Int in
            context.state.count += 1
            context.forward(to: "spinner", action: "forward-spin")
            return context.state.count
        }
        actions.on("pipe-spin") { (context, value: Int) -> Int in
            context.state.count += 1
            context.pipe(to: "spinner", action: "pipe-spin")
            return value + 1
        }
        actions.on("count") { context -> Int in context.state.count }
    }
}

/// An unnamed actor that tags itself with the region it joins.
public struct Player: VirtualActor {
    public typealias State = Stateless
    public static let name = "player"
    public static let kind = ActorKind.unnamed
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("join") { (context, region: String) -> [String: String] in
            context.tag("region", region)
            context.tag("kind", context.actorType)
            return context.tags
        }
        actions.on("leave") { context -> [String: String] in
            context.tag("region", nil)
            return context.tags
        }
        actions.on("tags") { context -> [String: String] in context.tags }
        actions.on("whoami") { context -> String in "\(context.system)/\(context.actorType)/\(context.name)" }
    }
}

/// Broadcasts each number it is given on channel `ticks`, as an effect of its action.
public struct Announcer: VirtualActor {
    public typealias State = Stateless
    public static let name = "announcer"
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("announce") { (context, number: Int) -> Int in
            try context.broadcast("ticks", action: "tick", number, metadata: ["announced": "yes"])
            return number
        }
        actions.on("announce-badly") { (context, number: Int) -> Int in
            try context.broadcast("no.such channel", action: "tick", number)
            return number
        }
    }
}

/// What a ``TickCounter`` received.
public struct TickLog: Codable, Sendable, Hashable {
    public var numbers: [Int] = []
    /// "system/actor" of each caller, and the `announced` header each call carried.
    public var callers: Set<String> = []
    public var headers: Set<String> = []
}

/// Listens to channel `ticks` and keeps every number it heard, in order.
enum TickActions {
    static func declare<A: VirtualActor>(_ actions: inout Actions<A>) where A.State == TickLog {
        actions.on("tick") { (context, number: Int) -> Int in
            context.state.numbers.append(number)
            context.state.callers.insert("\(context.callerSystem ?? "-")/\(context.caller ?? "-")")
            context.state.headers.insert(context.metadata["announced"] ?? "-")
            return context.state.numbers.count
        }
        actions.on("log") { context -> TickLog in context.state }
    }
}

/// The first listener of `ticks`.
public struct TickCounterOne: VirtualActor {
    public typealias State = TickLog
    public static let name = "tick-counter-1"
    public static let channels = ["ticks"]
    public static func initialState() -> TickLog { TickLog() }
    public static func actions(_ actions: inout Actions<Self>) { TickActions.declare(&actions) }
}

/// The second listener of `ticks`.
public struct TickCounterTwo: VirtualActor {
    public typealias State = TickLog
    public static let name = "tick-counter-2"
    public static let channels = ["ticks"]
    public static func initialState() -> TickLog { TickLog() }
    public static func actions(_ actions: inout Actions<Self>) { TickActions.declare(&actions) }
}

/// Every test actor type.
/// A pool of 2...8 stateless workers that retire after 300 ms without calls: sleeps for the
/// requested milliseconds and answers with the name it was called by; `where` tells the
/// `TROUPE_TEST_NODE` of its host process.
public struct PoolWorker: VirtualActor {
    public typealias State = Stateless
    public static let name = "pool-worker"
    public static let kind = ActorKind.pooled(min: 2, max: 8)
    public static let idleTimeout: Duration? = .milliseconds(300)
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("work") { (context, milliseconds: Int) -> String in
            try await Task.sleep(for: .milliseconds(milliseconds))
            return context.name
        }
        actions.on("where") { _ -> String in ProcessInfo.processInfo.environment["TROUPE_TEST_NODE"] ?? "unknown" }
    }
}

/// A pool of at most 2 workers with room for 3 waiting calls, to fill its queue.
public struct NarrowPool: VirtualActor {
    public typealias State = Stateless
    public static let name = "narrow-pool"
    public static let kind = ActorKind.pooled(min: 1, max: 2)
    public static let mailboxCapacity: Int? = 3
    public static func actions(_ actions: inout Actions<Self>) {
        actions.on("work") { (_, milliseconds: Int) -> Int in
            try await Task.sleep(for: .milliseconds(milliseconds))
            return milliseconds
        }
    }
}

public let testActorTypes: [any VirtualActor.Type] = [
    Counter.self, Journal.self, Sleeper.self, Echo.self, Account.self, Tally.self, QuickTally.self, Relay.self,
    Listener.self, Whereabouts.self, ChainA.self, ChainB.self, ChainC.self, Pipeline.self, PipelineEnd.self,
    Redirect.self, Notifier.self, Gate.self, BehindForwarder.self, CallerReader.self, Bouncer.self, StrictLoop.self,
    ReentrantLoop.self, Spinner.self, Player.self, Announcer.self, TickCounterOne.self, TickCounterTwo.self,
    PoolWorker.self, NarrowPool.self,
    Ticker.self, Alarm.self, LagProbe.self,
]
