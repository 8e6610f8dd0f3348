import Foundation
import Tracing
import TroupeProto
import TroupeTracing

/// Whether a type has one well-known instance, many spawned at run time, or a pool of
/// interchangeable stateless instances.
public enum ActorKind: Sendable, Equatable {
    /// One instance, named like the type.
    case named
    /// A template: instances are spawned by id.
    case unnamed
    /// A stateless type served by `min...max` interchangeable instances: a call, addressed by the
    /// type name, goes to an idle instance; the pool grows up to `max` under load (then calls
    /// wait, up to the mailbox capacity) and shrinks back to `min` after ``VirtualActor/idleTimeout``
    /// without calls. `max` nil means 8 per core of the sidecar's machine. `State` must be
    /// `Stateless`.
    ///
    /// ```swift
    /// static let kind = ActorKind.pooled(min: 2, max: 32)
    /// ```
    case pooled(min: Int = 1, max: Int? = nil)
}

/// When the sidecar stores the state an action changed.
public enum Durability: Sendable {
    /// The caller gets the reply only after the new state is committed. Nothing acknowledged is
    /// ever lost. The default.
    case writeThrough
    /// The caller gets the reply at once; the newest state is stored every `snapshotInterval`
    /// (several changes in between cost one write), and always before the actor is deactivated,
    /// its host leaves or the sidecar shuts down. A sidecar crash loses at most one interval.
    case writeBehind
}

/// An actor type: its name, its state and its actions.
///
/// The sidecar keeps the state; each action receives it in ``ActorContext/state``, may change it,
/// and returns a reply. A changed state is stored before the caller gets the reply.
///
/// ```swift
/// struct Counter: VirtualActor {
///     struct State: Codable, Sendable { var value = 0 }
///     static let name = "counter"
///     static func initialState() -> State { State() }
///
///     static func actions(_ actions: inout Actions<Self>) {
///         actions.on("add") { (context, amount: Int) -> Int in
///             context.state.value += amount
///             return context.state.value
///         }
///     }
/// }
/// ```
public protocol VirtualActor: Sendable {
    /// `Stateless` for actors without state; any `Codable` or SwiftProtobuf message otherwise.
    associatedtype State: Sendable

    /// The type name (for a named actor, also its instance name).
    static var name: String { get }
    static var kind: ActorKind { get }
    /// The state of a new instance.
    static func initialState() -> State
    /// Declares the actions.
    static func actions(_ actions: inout Actions<Self>)
    /// Deactivate an instance after this long without calls (for a pooled type: retire an
    /// instance above the pool's minimum); nil means the sidecar's default.
    static var idleTimeout: Duration? { get }
    /// Calls that may wait for an instance (its mailbox, or a pool's queue) before more are
    /// refused with `resourceExhausted`; nil means the sidecar's `mailbox-capacity`.
    static var mailboxCapacity: Int? { get }
    /// When changed state is stored.
    static var durability: Durability { get }
    /// For ``Durability/writeBehind``: how often changed state is stored; nil means 1 s.
    static var snapshotInterval: Duration? { get }
    /// Named channels this actor listens to (named actors only): a broadcast on one of them
    /// invokes the broadcast's action on the actor, in this ActorSystem and from the others.
    static var channels: [String] { get }
    /// Whether a call that comes back to the actor while it is in a turn of the same call chain
    /// (A → B → A) runs interleaved (true) or is refused at once with `failedPrecondition`
    /// (false, the default). An interleaved call sees the state from before the running turn;
    /// if it changes the state, the turn it interleaved with may not change it too: that turn's
    /// result is refused with `aborted` rather than silently overwrite the change.
    static var reentrant: Bool { get }
    /// Timers that fire while an instance is active: each invokes its action every period, as a
    /// turn of its own. They stop when the instance is deactivated and do not keep it active.
    static var timers: [ActorTimer] { get }
}

/// A timer an actor type declares: `action` runs every `period` while an instance is active.
///
/// ```swift
/// static let timers = [ActorTimer("flush", every: .seconds(5))]
/// ```
public struct ActorTimer: Sendable {
    public var action: String
    public var period: Duration

    public init(_ action: String, every period: Duration) {
        self.action = action
        self.period = period
    }
}

extension VirtualActor {
    public static var kind: ActorKind { .named }
    public static var reentrant: Bool { false }
    public static var idleTimeout: Duration? { nil }
    public static var mailboxCapacity: Int? { nil }
    public static var durability: Durability { .writeThrough }
    public static var snapshotInterval: Duration? { nil }
    public static var channels: [String] { [] }
    public static var timers: [ActorTimer] { [] }
}

extension VirtualActor where State == Stateless {
    public static func initialState() -> Stateless { Stateless() }
}

/// What an action sees: the state to read and change, who it is, who called, and a client to
/// call other actors with.
public struct ActorContext<State: Sendable>: Sendable {
    /// The actor's state. Changing it makes the sidecar store the new state.
    public var state: State {
        didSet { stateChanged = true }
    }
    /// This actor's instance name.
    public let name: String
    /// This actor's type (for a named actor the same as ``name``).
    public let actorType: String
    /// This actor's ActorSystem.
    public let system: String
    /// The caller, when the caller is an actor.
    public let caller: String?
    /// The caller's ActorSystem, when known. For a call from another system it is the system of
    /// the sidecar that sent it over the bridge, not what the caller claimed.
    public let callerSystem: String?
    /// Headers sent with the call.
    public let metadata: [String: String]
    /// The state's revision when the call started (0 if it was never stored).
    public let revision: UInt64
    /// The name of the timer or reminder whose firing this call is; nil for an ordinary call.
    public let timer: String?
    /// For a firing: how late it reached this action, from when it was due by the sidecar's
    /// clock to when the action started by this host's (on different machines their skew adds
    /// in). nil for an ordinary call, or from a sidecar that does not send the due time.
    public let timerLag: Duration?
    /// Invokes other actors from inside the action.
    public let client: TroupeClient
    /// Forces storing the state even if the action did not change it.
    public var checkpoint = false

    /// The tags this actor carries: those set by earlier calls of this activation, and by this one.
    public private(set) var tags: [String: String]
    /// Tags set by this action, sent with its result ("" removes one).
    var setTags: [String: String] = [:]
    /// Added by ``broadcast(_:action:_:metadata:)``.
    var broadcasts: [WireBroadcastRequest] = []

    var stateChanged = false
    /// Set by ``forward(to:action:system:spawnFrom:metadata:)`` or ``pipe(to:action:system:spawnFrom:metadata:)``.
    var route: WireActorInvocationResult.OneOf_Route?
    /// Added by ``sideEffect(_:action:_:system:spawnFrom:metadata:timeout:)``.
    var sideEffects: [WireSideEffect] = []
    /// Added by the timer and reminder methods, applied in order.
    var timerCommands: [WireTimerCommand] = []

    /// Sets a timer of this activation: `action` runs with `input` once `after` has passed, then
    /// every `every` if given. It lives as long as the activation (use
    /// ``setReminder(_:action:_:after:every:)`` for one that survives it), and a timer of the same
    /// name is replaced. Each firing is a turn of its own, in order with the actor's other calls.
    ///
    /// ```swift
    /// try context.setTimer("poll", action: "poll", after: .seconds(1), every: .seconds(1))
    /// ```
    public mutating func setTimer<Input: Sendable>(
        _ name: String, action: String, _ input: Input, after: Duration, every: Duration? = nil
    ) throws {
        timerCommands.append(try Self.timerCommand(name, action, input, after, every, durable: false))
    }

    /// Sets a timer whose action takes no input.
    public mutating func setTimer(_ name: String, action: String, after: Duration, every: Duration? = nil) throws {
        try setTimer(name, action: action, NoPayload(), after: after, every: every)
    }

    /// Cancels timer `name`; nothing happens if there is none.
    public mutating func cancelTimer(_ name: String) {
        timerCommands.append(Self.cancelCommand(name, durable: false))
    }

    /// Sets a reminder: a durable timer, kept in the state store. It survives deactivation,
    /// sidecar restarts and node failover, and activates the actor when due. It is stored before
    /// the caller gets the reply. Fired at least once per due time; a failed firing is retried.
    ///
    /// ```swift
    /// try context.setReminder("renew", action: "renew", after: .seconds(3600), every: .seconds(3600))
    /// ```
    public mutating func setReminder<Input: Sendable>(
        _ name: String, action: String, _ input: Input, after: Duration, every: Duration? = nil
    ) throws {
        timerCommands.append(try Self.timerCommand(name, action, input, after, every, durable: true))
    }

    /// Sets a reminder whose action takes no input.
    public mutating func setReminder(_ name: String, action: String, after: Duration, every: Duration? = nil) throws {
        try setReminder(name, action: action, NoPayload(), after: after, every: every)
    }

    /// Deletes reminder `name`; nothing happens if there is none.
    public mutating func cancelReminder(_ name: String) {
        timerCommands.append(Self.cancelCommand(name, durable: true))
    }

    private static func timerCommand<Input: Sendable>(
        _ name: String, _ action: String, _ input: Input, _ after: Duration, _ every: Duration?, durable: Bool
    ) throws -> WireTimerCommand {
        var command = WireTimerCommand()
        command.name = name
        command.action = action
        command.payload = try PayloadCoding.encode(input)
        command.dueMs = UInt64(after.milliseconds)
        if let every { command.periodMs = UInt64(max(1, every.milliseconds)) }
        command.durable = durable
        return command
    }

    private static func cancelCommand(_ name: String, durable: Bool) -> WireTimerCommand {
        var command = WireTimerCommand()
        command.name = name
        command.cancel = true
        command.durable = durable
        return command
    }

    /// Hands the call on: once this action returns (and its state is stored), the same request
    /// goes to `action` of `actor`, whose reply becomes the caller's reply. This action's own
    /// return value is dropped. The caller's deadline and metadata carry over, and the target
    /// sees this actor as its caller. This actor takes its next call meanwhile.
    ///
    /// ```swift
    /// actions.on("submit") { (context, order: Order) -> NoPayload in
    ///     context.state.submitted += 1
    ///     context.forward(to: "billing", action: "charge")
    ///     return NoPayload()
    /// }
    /// ```
    ///
    /// A later ``forward(to:action:system:spawnFrom:metadata:)`` or
    /// ``pipe(to:action:system:spawnFrom:metadata:)`` in the same action replaces this one.
    ///
    /// - Parameters:
    ///   - system: another ActorSystem (reached over the sidecar's bridge); nil for this one.
    ///   - spawnFrom: spawn `actor` from this unnamed type if it does not exist.
    ///   - metadata: headers added to (or replacing) the ones the call carried.
    public mutating func forward(
        to actor: String, action: String, system: String? = nil, spawnFrom: String? = nil,
        metadata: [String: String] = [:]
    ) {
        route = .forward(Self.target(actor, action, system, spawnFrom, metadata))
    }

    /// Sends this action's reply on: once it returns (and its state is stored), its return value
    /// goes to `action` of `actor` as the input, and that actor's reply becomes the caller's
    /// reply. Deadline, metadata and caller carry over as for
    /// ``forward(to:action:system:spawnFrom:metadata:)``.
    ///
    /// ```swift
    /// actions.on("price") { (context, item: String) -> Int in
    ///     context.pipe(to: "tax", action: "add-vat")
    ///     return context.state.prices[item] ?? 0
    /// }
    /// ```
    public mutating func pipe(
        to actor: String, action: String, system: String? = nil, spawnFrom: String? = nil,
        metadata: [String: String] = [:]
    ) {
        route = .pipe(Self.target(actor, action, system, spawnFrom, metadata))
    }

    /// Invokes `action` of `actor` with `input` after this action's turn ends (after its state
    /// is stored), without delaying the reply. Nobody waits for its reply; the sidecar logs and
    /// counts its failures. The call's metadata carries over, and `actor` sees this actor as its caller.
    ///
    /// ```swift
    /// try context.sideEffect("audit-log", action: "record", "seat \(seat) booked")
    /// ```
    ///
    /// - Parameter timeout: its deadline, from when it starts; nil for the sidecar's default.
    /// - Throws: if `input` cannot be encoded.
    public mutating func sideEffect<Input: Sendable>(
        _ actor: String, action: String, _ input: Input, system: String? = nil, spawnFrom: String? = nil,
        metadata: [String: String] = [:], timeout: Duration? = nil
    ) throws {
        var effect = WireSideEffect()
        effect.target = Self.target(actor, action, system, spawnFrom, metadata)
        effect.payload = try PayloadCoding.encode(input)
        if let timeout { effect.timeoutMs = max(1, timeout.milliseconds) }
        sideEffects.append(effect)
    }

    /// Tags this actor with `value` under `key` (nil removes the tag) once the action returns.
    /// Tags stay with the activation (they are not stored with the state) and select actors in
    /// ``TroupeClient/activeActors(ofType:tagged:limit:)`` and `GET /v1/actors?tag=KEY=VALUE`.
    ///
    /// ```swift
    /// context.tag("region", "eu")
    /// ```
    public mutating func tag(_ key: String, _ value: String?) {
        tags[key] = value
        setTags[key] = value ?? ""
    }

    /// Sends `input` to every actor that listens to `channel` once this action's turn ends
    /// (after its state is stored), without delaying the reply: each listener's `action` runs
    /// once with it, here and, over the sidecar's bridge, in other ActorSystems. The call's
    /// metadata carries over, and the listeners see this actor as their caller.
    ///
    /// ```swift
    /// try context.broadcast("prices", action: "price-changed", newPrice)
    /// ```
    ///
    /// - Throws: if `input` cannot be encoded.
    public mutating func broadcast<Input: Sendable>(
        _ channel: String, action: String, _ input: Input, metadata: [String: String] = [:]
    ) throws {
        var request = WireBroadcastRequest()
        request.channel = channel
        request.action = action
        request.payload = try PayloadCoding.encode(input)
        request.metadata = metadata
        broadcasts.append(request)
    }

    private static func target(
        _ actor: String, _ action: String, _ system: String?, _ spawnFrom: String?, _ metadata: [String: String]
    ) -> WireEffectTarget {
        var target = WireEffectTarget()
        target.actor.name = actor
        target.actor.system = system ?? ""
        target.action = action
        target.spawnFrom = spawnFrom ?? ""
        target.metadata = metadata
        return target
    }

    init(
        state: State, name: String, actorType: String, system: String, caller: String?, callerSystem: String?,
        metadata: [String: String], tags: [String: String], revision: UInt64, timer: String? = nil,
        timerLag: Duration? = nil, client: TroupeClient
    ) {
        self.timer = timer
        self.timerLag = timerLag
        self.state = state
        self.name = name
        self.actorType = actorType
        self.tags = tags
        self.system = system
        self.caller = caller
        self.callerSystem = callerSystem
        self.metadata = metadata
        self.revision = revision
        self.client = client
    }
}

/// The table of an actor type's actions, filled in ``VirtualActor/actions(_:)``.
public struct Actions<A: VirtualActor>: Sendable {
    typealias Handler = @Sendable (inout ActorContext<A.State>, WirePayload) async throws -> WirePayload
    var handlers: [String: Handler] = [:]

    init() {}

    /// Declares action `name` taking `Input` and replying `Output`; each may be `Codable`, a
    /// SwiftProtobuf message, or `NoPayload`.
    public mutating func on<Input: Sendable, Output: Sendable>(
        _ name: String,
        _ body: @escaping @Sendable (inout ActorContext<A.State>, Input) async throws -> Output
    ) {
        handlers[name] = { context, payload in
            let input = try PayloadCoding.decode(Input.self, from: payload)
            let output = try await body(&context, input)
            return try PayloadCoding.encode(output)
        }
    }

    /// Declares action `name` that takes no input.
    public mutating func on<Output: Sendable>(
        _ name: String,
        _ body: @escaping @Sendable (inout ActorContext<A.State>) async throws -> Output
    ) {
        handlers[name] = { context, _ in
            try PayloadCoding.encode(try await body(&context))
        }
    }
}

/// A registered actor type with its actions, type-erased for the host runtime.
struct RegisteredActor: Sendable {
    let definition: WireActorDefinition
    let run: @Sendable (WireActorInvocation, TroupeClient) async throws -> WireActorInvocationResult

    init<A: VirtualActor>(_ type: A.Type) throws {
        var actions = Actions<A>()
        A.actions(&actions)
        let handlers = actions.handlers
        let stateful = A.State.self != Stateless.self
        var definition = WireActorDefinition()
        definition.name = A.name
        switch A.kind {
        case .named: definition.kind = .named
        case .unnamed: definition.kind = .unnamed
        case .pooled(let min, let max):
            guard !stateful else {
                throw TroupeError.invalidArgument("pooled actor type '\(A.name)' must be stateless (State = Stateless)")
            }
            guard min >= 0, (max ?? 1) >= 1, min <= (max ?? Int(UInt32.max)) else {
                throw TroupeError.invalidArgument(
                    "pooled actor type '\(A.name)' needs 0 <= min <= max and max >= 1 "
                        + "(min \(min), max \(max.map(String.init) ?? "default"))")
            }
            definition.kind = .pooled
            definition.poolMin = UInt32(clamping: min)
            definition.poolMax = UInt32(clamping: max ?? 0)
        }
        definition.stateful = stateful
        definition.actions = handlers.keys.sorted()
        definition.channels = A.channels
        definition.reentrant = A.reentrant
        definition.timers = A.timers.map { timer in
            var declared = WireTimerDefinition()
            declared.action = timer.action
            declared.periodMs = max(1, timer.period.milliseconds)
            return declared
        }
        if stateful { definition.initialState = try PayloadCoding.encode(A.initialState()) }
        definition.durability = A.durability == .writeBehind ? .writeBehind : .writeThrough
        if let interval = A.snapshotInterval { definition.snapshotIntervalMs = interval.milliseconds }
        if let capacity = A.mailboxCapacity {
            guard capacity >= 1 else {
                throw TroupeError.invalidArgument("actor type '\(A.name)' needs a mailbox capacity of at least 1")
            }
            definition.mailboxCapacity = UInt32(clamping: capacity)
        }
        if let idle = A.idleTimeout {
            definition.idleTimeoutMs = UInt32(
                clamping: idle.components.seconds * 1000 + idle.components.attoseconds / 1_000_000_000_000_000)
        }
        self.definition = definition
        self.run = { invocation, client in
            guard let handler = handlers[invocation.action] else {
                throw TroupeError.notFound("actor type '\(A.name)' has no action '\(invocation.action)'")
            }
            let state: A.State =
                stateful && invocation.hasState
                ? try PayloadCoding.decode(A.State.self, from: invocation.state) : A.initialState()
            var context = ActorContext(
                state: state, name: invocation.actor.name, actorType: A.name, system: invocation.actor.system,
                caller: invocation.caller.name.isEmpty ? nil : invocation.caller.name,
                callerSystem: invocation.caller.system.isEmpty ? nil : invocation.caller.system,
                metadata: invocation.metadata, tags: invocation.tags,
                revision: invocation.revision, timer: invocation.timer.isEmpty ? nil : invocation.timer,
                timerLag: TimerClock.lag(sinceDueUnixMicros: invocation.timerDueUnixMicros), client: client)
            var result = WireActorInvocationResult()
            // In the caller's trace: spans the action starts and calls it makes continue it.
            let trace = TracePropagation.context(continuing: invocation.metadata, using: client.tracer)
            let span = TracePropagation.startActionSpan(
                TroupeSpan.hostAction, tracer: client.tracer, context: trace, system: invocation.actor.system,
                actorID: invocation.actor.name, actorType: A.name, action: invocation.action)
            do {
                result.reply = try await ServiceContext.withValue(span?.context ?? trace) {
                    try await handler(&context, invocation.payload)
                }
                span?.end(reporting: nil)
            } catch {
                span?.end(reporting: TroupeError(wrapping: error))
                throw error
            }
            if stateful, context.stateChanged || context.checkpoint {
                result.newState = try PayloadCoding.encode(context.state)
            }
            result.route = context.route
            result.sideEffects = context.sideEffects
            result.broadcasts = context.broadcasts
            result.setTags = context.setTags
            result.timers = context.timerCommands
            return result
        }
    }
}

/// The wall clock that firings' due times are given in.
enum TimerClock {
    /// Now minus the due time; nil when the sidecar sent none (0).
    static func lag(sinceDueUnixMicros due: Int64) -> Duration? {
        guard due != 0 else { return nil }
        let now = Int64((Date().timeIntervalSince1970 * 1_000_000).rounded(.down))
        return .microseconds(now - due)
    }
}
