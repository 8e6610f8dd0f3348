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

/// Every test actor type.
public let testActorTypes: [any VirtualActor.Type] = [
    Counter.self, Journal.self, Sleeper.self, Echo.self, Account.self, Tally.self, QuickTally.self, Relay.self,
    Listener.self, Whereabouts.self,
]
