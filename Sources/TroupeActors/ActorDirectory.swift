import Foundation
public import Logging
import Metrics
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import SwiftProtobuf
import Synchronization
public import Tracing
public import TroupeProto
public import TroupeStore
public import TroupeTracing
public import TroupeWire

/// Where an actor lives when the sidecar is one node of a cluster.
public protocol InvocationRouter: Sendable {
    /// The node that owns `actor` when that is another node; nil to serve the call here.
    /// `spawnFrom` is the call's unnamed actor type, if it names one. Must not block: it runs on
    /// the thread that read the call.
    func remoteOwner(of actor: ActorKey, spawnFrom: String) -> String?

    /// Another node where `actor` may still be active although this node owns it now (placement
    /// moved it here: this node joined, or started serving its type). The directory asks that
    /// node to release the actor, letting its running and queued calls finish and storing its
    /// state, before activating it here. Nil when no hand-off is needed. Must not block.
    func handOffSource(of actor: ActorKey, spawnFrom: String) -> String?
}

extension InvocationRouter {
    public func handOffSource(of actor: ActorKey, spawnFrom: String) -> String? { nil }
}

/// The directory of a sidecar's actors: registered types, their hosts, and every activation with
/// its mailbox.
///
/// ``invoke(_:reply:)`` is synchronous and never waits: it queues the call in the actor's mailbox
/// (activating the actor first if needed) or refuses it with a typed error. Calls made one after
/// another from one thread, as a connection's frames are, therefore keep their order. The work
/// that must wait (loading state, talking to the host) runs in the directory's own task group,
/// which ``run()`` owns, so no task outlives the service.
public final class ActorDirectory: Service, Sendable {
    public struct Configuration: Sendable {
        public var system: String
        public var node: String
        public var defaultIdleTimeout: TimeAmount = .seconds(300)
        public var defaultMailboxCapacity: Int = 1024
        /// How long graceful shutdown waits for running and queued calls.
        public var drainTimeout: TimeAmount = .seconds(10)
        /// The deadline of each listener's invocation of a broadcast.
        public var broadcastTimeout: TimeAmount = .seconds(30)
        /// The deadline of a side effect that sets none of its own.
        public var sideEffectTimeout: TimeAmount = .seconds(30)
        /// Starts a span per hop of each call (docs/observability.md); nil = no spans, and the
        /// calls' trace headers pass through unchanged.
        public var tracer: (any Tracer)?
        /// How many forwards, pipes, side effects and broadcast effects one call chain may go
        /// through; a call beyond them is refused with `resourceExhausted`, so a loop ends.
        public var maxForwardHops: UInt32 = 32
        /// How many actors one call chain may pass through (its path), so a reentrant actor that
        /// calls itself without end is refused with `resourceExhausted` instead of recursing
        /// until its deadline.
        public var maxCallDepth: Int = 64
        /// The event loop the activation timers run on; nil = one of NIO's shared loops. Given
        /// the loop of the host connections, a pass of due timers starts its turns and fills the
        /// host's batch without a thread switch.
        public var timerLoop: (any EventLoop)?

        public init(system: String, node: String) {
            self.system = system
            self.node = node
        }
    }

    private typealias ActivationCause = (action: String, trace: [String: String])

    private enum Work: Sendable {
        /// `cause`: the action and headers of the call that found the actor inactive; its span is
        /// the activation's parent.
        case activate(ActorKey, activationID: UInt64, spawnFrom: String, cause: ActivationCause)
        /// Store the unsaved write-behind state of an activation that is going away.
        case flush(ActorProcess)
        /// Let go of an actor another node owns now, then answer that node (``StableTargets/directoryRelease``).
        case release(ActorKey, deadline: NIODeadline, reply: @Sendable (Result<Data?, TroupeError>) -> Void)
    }

    struct TypeEntry {
        var info: ActorTypeInfo
        var hosts: [any ActorHost]
        var nextHost = 0
    }

    struct Slot {
        var activationID: UInt64
        var queue: CircularBuffer<Call>?
        var running = false
        var process: ActorProcess?
        var loop: (any EventLoop)?
        var type: ActorTypeInfo?
        var host: ObjectIdentifier?
        var lastActivity: NIODeadline
        var revision: UInt64 = 0
        /// Write-behind state not stored yet: the activation must flush before it goes away.
        var dirty = false
        /// The call chain of the turn in progress, while its action runs: a call of the same
        /// chain arriving now comes back into that turn (A → B → A) and would wait for ever.
        var turnChain: String?
        /// The tags the actor set.
        var tags: [String: String] = [:]
        /// The activation's timers by name; they end with the slot.
        var timers: [String: ActiveTimer] = [:]
        /// Whether the running call (if any) is a timer's firing: its end does not count as activity.
        var runningTimer: Bool?
        /// The activation timer whose firing is the running call, if it is one.
        var runningFiring: String?

        var depth: Int { (queue?.count ?? 0) + (running ? 1 : 0) }

        /// Active, with nothing waiting or running: it may be let go.
        var isQuiet: Bool { type != nil && process != nil && depth == 0 }

        /// Quiet for longer than its type's idle timeout.
        func isIdle(at now: NIODeadline) -> Bool {
            guard let type, isQuiet else { return false }
            return now - lastActivity >= type.idleTimeout
        }

        /// Queues `call`; returns the process to start pumping if it was idle.
        mutating func enqueue(_ call: Call) -> (ActorProcess, any EventLoop)? {
            if queue == nil { queue = CircularBuffer(initialCapacity: 4) }
            queue!.append(call)
            // Timer firings do not keep an actor active, as in Orleans: only calls do.
            if call.invocation.firing == nil { lastActivity = .now() }
            guard let process, let loop, !running else { return nil }
            running = true
            return (process, loop)
        }

        /// The next call, or nil (and the slot counts as idle) when none is waiting.
        mutating func dequeue() -> Call? {
            // A call (not a firing) that just ended, or one that starts now, is activity.
            if runningTimer == false { lastActivity = .now() }
            guard let call = queue?.popFirst() else {
                running = false
                turnChain = nil
                runningTimer = nil
                runningFiring = nil
                queue = nil
                return nil
            }
            turnChain = call.invocation.chain.id
            runningTimer = call.invocation.firing != nil
            runningFiring = call.invocation.firing.flatMap { $0.durable ? nil : $0.name }
            if runningTimer == false { lastActivity = .now() }
            return call
        }

        /// Whether activation timer `name` has a firing waiting or running. Read from the mailbox
        /// itself, so a firing's end needs no bookkeeping of its own.
        func hasFiring(of name: String) -> Bool {
            if running, runningFiring == name { return true }
            return queue?.contains { call in
                guard let firing = call.invocation.firing else { return false }
                return !firing.durable && firing.name == name
            } ?? false
        }

        /// What to do with `call` of the same chain as the turn in progress, if it is one.
        func reentry(of call: Call) -> Reentry? {
            guard running, let turnChain, !turnChain.isEmpty, turnChain == call.invocation.chain.id,
                let type, let process, let loop
            else { return nil }
            return type.reentrant ? .interleave(process, loop) : .refuse(type.name)
        }
    }

    enum Reentry {
        case interleave(ActorProcess, any EventLoop)
        /// The actor type's name.
        case refuse(String)
    }

    struct State {
        var types: [String: TypeEntry] = [:]
        var slots: [ActorKey: Slot] = [:]
        /// The pools of pooled types, by type name. Kept apart from `slots`: pool instances are
        /// not activations of an actor id, and they are counted by the pool metrics instead.
        var pools: [String: ActorPool] = [:]
        var nextActivationID: UInt64 = 1
        var stopping = false

        /// Changes the slot of `key` in place if it still belongs to activation `activationID`.
        /// In place: reading `slots[key]` first would copy the slot, retaining each of its references.
        mutating func updateSlot(_ key: ActorKey, _ activationID: UInt64, _ change: (inout Slot) -> Void) {
            guard let index = slots.index(forKey: key), slots.values[index].activationID == activationID else {
                return
            }
            change(&slots.values[index])
        }
    }

    public let configuration: Configuration
    public let actorSystem: TroupeActorSystem
    private let router = Mutex<(any InvocationRouter)?>(nil)
    public let store: any StateStore
    /// The spans of each call's hops, when the configuration names a tracer.
    public let tracing: InvocationTracer?
    /// Where reminders and delayed calls are kept, if anywhere.
    public let reminders: (any ReminderStore)?
    /// Every activation timer of this node.
    let timerWheel: TimerWheel
    let logger: Logger
    let state = Mutex(State())
    private let work: AsyncStream<Work>
    private let workInput: AsyncStream<Work>.Continuation
    private let activations = Counter(label: "troupe_activations_total")
    private let deactivations = Counter(label: "troupe_deactivations_total")
    private let activeGauge = Gauge(label: "troupe_active_actors")
    private let snapshotFailures = Counter(label: "troupe_snapshot_failures_total")
    private let broadcastFailures = Counter(label: "troupe_broadcast_failures_total")
    private let sideEffectFailures = Counter(label: "troupe_side_effect_failures_total")
    private let asyncFailures = Counter(label: "troupe_async_failures_total")
    private let bridge = Mutex<(any SystemBridge)?>(nil)
    private let forwarded = Counter(label: "troupe_forwarded_calls_total")
    private let reentrantCalls = Counter(
        label: "troupe_reentrant_calls_total", dimensions: [("outcome", "interleaved")])
    private let refusedReentrantCalls = Counter(
        label: "troupe_reentrant_calls_total", dimensions: [("outcome", "refused")])
    private let hopLimitRefusals = Counter(label: "troupe_hop_limit_refusals_total")
    private let depthLimitRefusals = Counter(label: "troupe_call_depth_refusals_total")
    /// Actors that moved here and that the node which had them released first, or did not.
    private let handOffs = Counter(label: "troupe_actor_handoffs_total", dimensions: [("outcome", "released")])
    private let handOffFailures = Counter(
        label: "troupe_actor_handoffs_total", dimensions: [("outcome", "unconfirmed")])
    /// How long this node took to let go of an actor another node asked for.
    private let handOffWaits = Metrics.Timer(label: "troupe_actor_release_seconds", preferredDisplayUnit: .seconds)
    /// Numbers the call chains this node starts, after a prefix unique to this directory (the
    /// node name alone could repeat the ids of a previous run whose calls are still in flight).
    private let chainCounter = Atomic<UInt64>(0)
    /// Placement may have moved active actors to another node since the idle sweep last looked.
    private let placementMayHaveMoved = Atomic<Bool>(true)
    /// Set once the first pooled type registers (pools are never removed), so that calls on a
    /// sidecar without pools do not take the state lock an extra time to look for one.
    private let hasPools = Atomic<Bool>(false)
    private let chainPrefix: String
    /// The calls an actor holds (running and waiting) as each new one joins them.
    private let mailboxDepth = Recorder(label: "troupe_mailbox_depth", aggregate: true)

    /// - Parameter reminders: where reminders and delayed calls are kept; without one, setting a
    ///   reminder fails with `failedPrecondition`.
    public init(
        configuration: Configuration, store: any StateStore, reminders: (any ReminderStore)? = nil, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.timerWheel = TimerWheel(loop: configuration.timerLoop ?? DeadlineTimers.loop)
        self.tracing = configuration.tracer.map {
            InvocationTracer(tracer: $0, system: configuration.system, node: configuration.node)
        }
        self.chainPrefix = "\(configuration.node)-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))-"
        self.reminders = reminders
        self.actorSystem = TroupeActorSystem(node: configuration.node)
        var logger = logger
        logger[metadataKey: "troupe.system"] = "\(configuration.system)"
        logger[metadataKey: "troupe.node"] = "\(configuration.node)"
        self.logger = logger
        (self.work, self.workInput) = AsyncStream.makeStream(of: Work.self)
        timerWheel.onFire { [weak self] entries in self?.fire(entries) }
        actorSystem.serve(stableTarget: StableTargets.actorProcessInvoke) { [weak self] call, deadline, reply in
            guard let self else { return reply(.failure(.unavailable("the sidecar is shutting down"))) }
            self.serveRemote(call, deadline: deadline, reply: reply)
        }
        actorSystem.serve(stableTarget: StableTargets.directoryRelease) { [weak self] call, deadline, reply in
            guard let self else { return reply(.failure(.unavailable("the sidecar is shutting down"))) }
            guard let key = ActorKey(path: call.recipient.path) else {
                return reply(.failure(.invalidArgument("recipient path '\(call.recipient.path)' is not SYSTEM/ACTOR")))
            }
            self.workInput.yield(.release(key, deadline: deadline, reply: reply))
        }
        actorSystem.serve(stableTarget: StableTargets.directoryList) { [weak self] call, _, reply in
            guard let self else { return reply(.failure(.unavailable("the sidecar is shutting down"))) }
            do {
                let request = try WireListActorsRequest(serializedBytes: Array(call.arguments.first ?? Data()))
                let (actors, truncated) = self.list(
                    actorType: request.actorType, tags: request.tags,
                    limit: request.limit == 0 ? 1000 : Int(request.limit))
                var response = WireListActorsResponse()
                response.actors = actors
                response.truncated = truncated
                reply(.success(Data(try response.serializedBytes() as [UInt8])))
            } catch {
                reply(.failure(.invalidArgument("\(StableTargets.directoryList) takes a ListActorsRequest: \(error)")))
            }
        }
    }

    /// Decides, per call, whether an actor lives on another node. Nil (a single node) serves every call here.
    public func route(with router: (any InvocationRouter)?) {
        self.router.withLock { $0 = router }
        placementChanged()
    }

    // MARK: Registration

    /// Registers actor types served by `host`. A type registered by several hosts is spread over them.
    ///
    /// - Throws: `invalidArgument` for an empty name or an unknown kind, `failedPrecondition` when a
    ///   name is registered again with another kind or statefulness.
    @discardableResult
    public func register(_ definitions: [WireActorDefinition], host: any ActorHost) throws(TroupeError) -> [String] {
        for definition in definitions {
            guard !definition.name.isEmpty else { throw .invalidArgument("an actor definition has an empty name") }
            guard definition.kind == .named || definition.kind == .unnamed || definition.kind == .pooled else {
                throw .invalidArgument("actor '\(definition.name)' has no kind (named, unnamed or pooled)")
            }
            if definition.kind == .pooled { try Self.validatePool(definition) }
            guard definition.channels.isEmpty || definition.kind == .named else {
                throw .invalidArgument(
                    "actor type '\(definition.name)' is unnamed: only named actors can listen to channels")
            }
            if let channel = definition.channels.first(where: { $0.isEmpty }) {
                throw .invalidArgument("actor type '\(definition.name)' listens to an empty channel name '\(channel)'")
            }
            try TimerRules.validate(definition)
        }
        var growths: [ActorPool.Growth] = []
        let names = try state.withLock { (state) throws(TroupeError) -> [String] in
            for definition in definitions {
                if let existing = state.types[definition.name]?.info.definition,
                    existing.kind != definition.kind || existing.stateful != definition.stateful
                {
                    throw .failedPrecondition(
                        "actor type '\(definition.name)' is already registered with another kind or statefulness")
                }
            }
            for definition in definitions {
                let info = ActorTypeInfo(
                    definition: definition, defaultIdleTimeout: configuration.defaultIdleTimeout,
                    defaultMailboxCapacity: configuration.defaultMailboxCapacity)
                var entry = state.types[definition.name] ?? TypeEntry(info: info, hosts: [])
                entry.info = info
                if !entry.hosts.contains(where: { $0 === host }) { entry.hosts.append(host) }
                state.types[definition.name] = entry
                if info.pooled {
                    state.pools[definition.name, default: ActorPool(info: info)].update(info)
                    growths += state.pools[definition.name]!.refill(hosts: entry.hosts)
                    hasPools.store(true, ordering: .releasing)
                }
            }
            return definitions.map(\.name)
        }
        for growth in growths { createInstance(growth) }
        return names
    }

    /// A pooled type is stateless and listens to no channel, and its sizes make sense.
    private static func validatePool(_ definition: WireActorDefinition) throws(TroupeError) {
        let name = definition.name
        guard !definition.stateful else {
            throw .invalidArgument("pooled actor type '\(name)' must be stateless: its instances are interchangeable")
        }
        let maximum = definition.poolMax == 0 ? ActorTypeInfo.defaultPoolMax : Int(definition.poolMax)
        guard maximum <= 100_000 else {
            throw .invalidArgument("pooled actor type '\(name)' asks for \(maximum) instances; at most 100000")
        }
        guard !definition.hasPoolMin || Int(definition.poolMin) <= maximum else {
            throw .invalidArgument(
                "pooled actor type '\(name)' keeps at least \(definition.poolMin) instances "
                    + "but grows to at most \(maximum)")
        }
    }

    /// Forgets `host`: its actors are deactivated and their waiting calls fail with `unavailable`.
    public func hostDisconnected(_ host: any ActorHost) {
        let id = ObjectIdentifier(host)
        var flushes: [ActorProcess] = []
        var growths: [ActorPool.Growth] = []
        let orphaned = state.withLock { state -> [Call] in
            for name in Array(state.types.keys) {
                state.types[name]?.hosts.removeAll { $0 === host }
            }
            var calls: [Call] = []
            for name in Array(state.pools.keys) {
                let hosts = state.types[name]?.hosts ?? []
                calls += state.pools[name]!.remove(host: id, hostsLeft: !hosts.isEmpty)
                growths += state.pools[name]!.refill(hosts: hosts)
            }
            for (key, slot) in state.slots where slot.host == id {
                calls.append(contentsOf: slot.queue ?? [])
                if slot.dirty, let process = slot.process { flushes.append(process) }
                state.slots.removeValue(forKey: key)
                deactivations.increment()
            }
            return calls
        }
        // The store needs no host: unsaved write-behind state is written all the same.
        for process in flushes { workInput.yield(.flush(process)) }
        for growth in growths { createInstance(growth) }
        activeGauge.record(activeCount)
        let error = TroupeError.unavailable("the actor host \(host.hostName) disconnected")
        for call in orphaned { call.fail(error) }
        logger.info(
            "host disconnected",
            metadata: ["troupe.host": "\(host.hostName)", "troupe.failed_calls": "\(orphaned.count)"])
    }

    /// The types some connected host serves now.
    public var registeredTypes: [WireActorDefinition] {
        state.withLock { $0.types.values.filter { !$0.hosts.isEmpty }.map(\.info.definition) }.sorted {
            $0.name < $1.name
        }
    }

    // MARK: Invocation

    /// Hands calls to actors of other systems to `bridge` from now on. Without a bridge they are
    /// refused with `unavailable`.
    public func attach(bridge: any SystemBridge) {
        self.bridge.withLock { $0 = bridge }
    }

    /// Queues a call. The outcome reaches `reply`, exactly once, by the caller's deadline at the latest.
    /// A call to an actor of another system goes to the attached ``SystemBridge``.
    ///
    /// When a router names another node as the actor's owner, the call goes there instead, as a
    /// remote call of ``ActorProcess/invoke(request:)``, started before this returns so calls
    /// keep their order. A call that was forwarded already is not forwarded again: nodes that
    /// disagree about the owner answer `unavailable` rather than pass a call around.
    ///
    /// - Parameter acceptance: for a fire-and-forget call, completed as soon as the call is in the
    ///   mailbox of a live activation (with an empty payload), or with the error that kept it out.
    ///   A call that goes to another node or system, or to a pool, is accepted when it is answered.
    public func invoke(_ invocation: Invocation, reply: Reply, acceptance: Reply? = nil) {
        if let acceptance, !isServedHere(invocation) {
            let both = Reply { result in
                acceptance.complete(result.map { _ in WirePayload() })
                reply.complete(result)
            }
            invoke(invocation, reply: both)
            return
        }
        var invocation = invocation
        if invocation.chain.id.isEmpty {
            invocation.chain.id = chainPrefix + String(chainCounter.wrappingAdd(1, ordering: .relaxed).newValue)
        }
        if let refusal = chainLimitRefusal(of: invocation) {
            acceptance?.complete(.failure(refusal))
            reply.complete(.failure(refusal))
            return
        }
        if invocation.actor.system != configuration.system {
            guard let bridge = bridge.withLock({ $0 }) else {
                reply.complete(
                    .failure(
                        .unavailable(
                            "system '\(invocation.actor.system)' is not reachable from this sidecar of '\(configuration.system)' (no bridge is configured)",
                            details: ["system": invocation.actor.system])))
                return
            }
            bridge.forward(invocation, reply: reply)
            return
        }
        if invokePooled(invocation, reply: reply) { return }
        if let router = router.withLock({ $0 }),
            let owner = router.remoteOwner(of: invocation.actor, spawnFrom: invocation.spawnFrom)
        {
            forward(invocation, to: owner, reply: reply)
            return
        }
        var activate: Work?
        var pump: (ActorProcess, any EventLoop)?
        var interleave: (ActorProcess, any EventLoop)?
        var depth = 1
        var accepted = false
        let call = Call(invocation: invocation, reply: reply, acceptance: acceptance)
        let refusal = state.withLock { state -> TroupeError? in
            if state.stopping { return .unavailable("the sidecar is shutting down") }
            let key = invocation.actor
            if let index = state.slots.index(forKey: key) {
                switch state.slots.values[index].reentry(of: call) {
                case .interleave(let process, let loop)?:
                    interleave = (process, loop)
                    return nil
                case .refuse(let type)?:
                    return .failedPrecondition(
                        "reentrant call \(invocation.chain.rendered(then: key)) refused: actor type '\(type)' is not reentrant, and \(key.name) is busy in a turn of the same call chain",
                        details: ["actor": key.name, "actor_type": type, "chain": invocation.chain.id])
                case nil: break
                }
                depth = state.slots.values[index].depth + 1
                // In place: a copy of the slot would share its queue, and every append would copy it.
                let capacity = state.slots.values[index].type?.mailboxCapacity ?? configuration.defaultMailboxCapacity
                if (state.slots.values[index].queue?.count ?? 0) >= capacity {
                    return .resourceExhausted(
                        "mailbox of \(key) is full (\(capacity) calls waiting)", details: ["actor": key.name])
                }
                pump = state.slots.values[index].enqueue(call)
                accepted = state.slots.values[index].process != nil
            } else {
                let id = state.nextActivationID
                state.nextActivationID += 1
                var queue = CircularBuffer<Call>(initialCapacity: 4)
                queue.append(call)
                state.slots[key] = Slot(activationID: id, queue: queue, lastActivity: .now())
                activate = .activate(
                    key, activationID: id, spawnFrom: invocation.spawnFrom,
                    cause: (invocation.action, invocation.metadata))
            }
            return nil
        }
        if let refusal {
            if refusal.code == .failedPrecondition { refusedReentrantCalls.increment() }
            acceptance?.complete(.failure(refusal))
            reply.complete(.failure(refusal))
            return
        }
        if let (process, loop) = interleave {
            reentrantCalls.increment()
            acceptance?.complete(.success(WirePayload()))
            process.scheduleInterleaved(call, on: loop)
            return
        }
        if accepted { acceptance?.complete(.success(WirePayload())) }
        mailboxDepth.record(depth)
        if let (process, loop) = pump {
            process.schedulePump(on: loop)
        } else if let activate {
            workInput.yield(activate)
        }
    }

    // MARK: Pools

    /// Serves a call to a pooled type: false if `invocation.actor` names no pooled type known
    /// here, and the call goes on as any other.
    ///
    /// Each node keeps its own pool of each pooled type its hosts serve, and a call is served by
    /// the pool of the node that received it. A node none of whose hosts serves the type hands
    /// the call to the node placement picks for the type name.
    private func invokePooled(_ invocation: Invocation, reply: Reply) -> Bool {
        enum Step {
            case notPooled
            case noLocalHost
            case admitted(ActorPool.Admission)
        }
        guard hasPools.load(ordering: .acquiring) else { return false }
        let name = invocation.actor.name
        let step = state.withLock { state -> Step in
            guard state.pools[name] != nil else { return .notPooled }
            if state.stopping { return .admitted(.refused(.unavailable("the sidecar is shutting down"))) }
            let hosts = state.types[name]?.hosts ?? []
            if hosts.isEmpty { return .noLocalHost }
            return .admitted(state.pools[name]!.admit(Call(invocation: invocation, reply: reply), hosts: hosts))
        }
        switch step {
        case .notPooled:
            return false
        case .noLocalHost:
            if let router = router.withLock({ $0 }),
                let owner = router.remoteOwner(of: invocation.actor, spawnFrom: "")
            {
                forward(invocation, to: owner, reply: reply)
            } else {
                reply.complete(
                    .failure(
                        .unavailable("no host is registered for actor type '\(name)'", details: ["actor_type": name])))
            }
        case .admitted(.wake(let process, let loop)):
            process.schedulePump(on: loop)
        case .admitted(.grow(let growth)):
            createInstance(growth)
        case .admitted(.queued):
            break
        case .admitted(.refused(let error)):
            reply.complete(.failure(error))
        }
        return true
    }

    /// Creates the process of a new pool instance, pinned to its host's event loop, and starts
    /// it on the call it was handed, if any. Pooled types are stateless: nothing is loaded.
    private func createInstance(_ growth: ActorPool.Growth) {
        let type = growth.info
        let key = ActorKey(system: configuration.system, name: "\(type.name)#\(growth.id)")
        let id = TroupeActorID(node: configuration.node, path: key.description)
        let loop = growth.host.eventLoop
        actorSystem.pin(id, to: loop.executor.asUnownedSerialExecutor())
        let process = TroupeActorSystem.$preassignedID.withValue(id) {
            ActorProcess(
                actorSystem: actorSystem, key: key, activationID: growth.id, type: type, host: growth.host,
                store: store, directory: self, activation: nil)
        }
        let start = state.withLock { state in
            state.pools[type.name]?.created(growth.id, process: process, loop: loop) ?? false
        }
        if start { process.schedulePump(on: loop) }
    }

    /// The next call for instance `instanceID` of pooled type `type`, or nil when there is none
    /// (the instance is idle from now on) or the instance was retired.
    func nextPooled(_ type: String, _ instanceID: UInt64) -> Call? {
        state.withLock { $0.pools[type]?.next(for: instanceID) }
    }

    /// The pools of this sidecar, sorted by type: sizes, busy instances and waiting calls.
    public var pools: [WireActorPoolInfo] {
        state.withLock { $0.pools.values.map(\.wireInfo) }.sorted { $0.actorType < $1.actorType }
    }

    /// Whether `invocation` runs in an activation on this node (not on another node or system,
    /// and not in a pool, whose calls are accepted when answered).
    private func isServedHere(_ invocation: Invocation) -> Bool {
        guard invocation.actor.system == configuration.system else { return false }
        if hasPools.load(ordering: .acquiring), state.withLock({ $0.pools[invocation.actor.name] != nil }) {
            return false
        }
        guard let router = router.withLock({ $0 }) else { return true }
        return router.remoteOwner(of: invocation.actor, spawnFrom: invocation.spawnFrom) == nil
    }

    /// Why a call's chain may not go on: past `max-forward-hops` or `max-call-depth`.
    private func chainLimitRefusal(of invocation: Invocation) -> TroupeError? {
        if invocation.chain.hops > configuration.maxForwardHops {
            hopLimitRefusals.increment()
            return .resourceExhausted(
                "call chain \(invocation.chain.rendered(then: invocation.actor)) went through \(invocation.chain.hops) forwards, pipes and effects, more than max-forward-hops (\(configuration.maxForwardHops))",
                details: ["actor": invocation.actor.name, "max_forward_hops": "\(configuration.maxForwardHops)"])
        }
        if invocation.chain.path.count >= configuration.maxCallDepth {
            depthLimitRefusals.increment()
            return .resourceExhausted(
                "call chain \(invocation.chain.rendered(then: invocation.actor)) is \(invocation.chain.path.count + 1) calls deep, more than max-call-depth (\(configuration.maxCallDepth))",
                details: ["actor": invocation.actor.name, "max_call_depth": "\(configuration.maxCallDepth)"])
        }
        return nil
    }

    private func forward(_ invocation: Invocation, to owner: String, reply: Reply) {
        var invocation = invocation
        guard invocation.hops == 0 else {
            reply.complete(
                .failure(
                    .unavailable(
                        "\(invocation.actor) was forwarded here, but node \(configuration.node) places it on \(owner); placement is settling, retry",
                        details: ["actor": invocation.actor.name, "owner": owner])))
            return
        }
        let span = tracing?.startSpan(
            TroupeSpan.clusterForward, kind: .client, metadata: &invocation.metadata, actorID: invocation.actor.name,
            action: invocation.action)
        span?.attributes[TroupeSpanAttribute.peer] = owner
        let request: Data
        do { request = try invocation.remoteRequest() } catch {
            span?.end(reporting: error)
            reply.complete(.failure(error))
            return
        }
        let call = RemoteCallEnvelope(
            recipient: TroupeActorID(node: owner, path: invocation.actor.description),
            target: StableTargets.actorProcessInvoke, arguments: [request], hops: invocation.hops + 1)
        forwarded.increment()
        actorSystem.start(call, deadline: invocation.deadline).whenComplete { result in
            let outcome: Result<WirePayload, TroupeError>
            switch result {
            case .success(let bytes):
                do {
                    outcome = .success(try WirePayload(serializedBytes: bytes ?? Data()))
                } catch {
                    outcome = .failure(.internalError("node \(owner) answered with an unreadable payload: \(error)"))
                }
            case .failure(let error):
                outcome = .failure(TroupeError(wrapping: error))
            }
            span?.end(reporting: outcome)
            reply.complete(outcome)
        }
    }

    /// Serves a call another node sent to the stable target ``StableTargets/actorProcessInvoke``:
    /// synchronously, so calls from one connection keep their order.
    private func serveRemote(
        _ call: RemoteCallEnvelope, deadline: NIODeadline,
        reply: @escaping @Sendable (Result<Data?, TroupeError>) -> Void
    ) {
        guard let bytes = call.arguments.first, call.arguments.count == 1 else {
            return reply(.failure(.invalidArgument("\(StableTargets.actorProcessInvoke) takes one argument")))
        }
        guard let recipient = ActorKey(path: call.recipient.path) else {
            return reply(.failure(.invalidArgument("recipient path '\(call.recipient.path)' is not SYSTEM/ACTOR")))
        }
        var invocation: Invocation
        do {
            invocation = try Invocation(remote: bytes, defaultActor: recipient, hops: call.hops)
        } catch {
            return reply(.failure(error))
        }
        invocation.deadline = min(invocation.deadline, deadline)
        let span = tracing?.startSpan(
            TroupeSpan.clusterServe, kind: .server, metadata: &invocation.metadata, actorID: invocation.actor.name,
            action: invocation.action)
        let answer = Reply { result in
            span?.end(reporting: result)
            reply(
                result.flatMap { payload in
                    do { return .success(try payload.serializedBytes() as Data) } catch {
                        return .failure(.internalError("cannot encode a reply: \(error)"))
                    }
                })
        }
        // No timer of its own: the calling node's connection fails the call at its deadline and
        // drops a late reply, and the activation refuses a call whose deadline passed in the
        // mailbox. A timer here cost a scheduled task and its cancellation for every call.
        invoke(invocation, reply: answer)
    }

    /// Queues a call and waits for its outcome.
    public func invoke(_ invocation: Invocation) async throws -> WirePayload {
        try await withCheckedThrowingContinuation { continuation in
            let reply = Reply { continuation.resume(with: $0.mapError { $0 as any Error }) }
            reply.arm(deadline: invocation.deadline, on: DeadlineTimers.loop)
            invoke(invocation, reply: reply)
        }
    }

    // MARK: Broadcast

    /// Invokes `broadcast.action` once on every named actor whose type listens to the channel and
    /// has a connected host; the replies are dropped. A broadcast of this system is also handed to
    /// the bridge for the other systems.
    ///
    /// - Returns: how many local listeners it was queued for, and whether the bridge took it.
    @discardableResult
    public func broadcast(_ original: Broadcast) -> (listeners: Int, bridged: Bool) {
        var traced = original
        let span = tracing?.startSpan(
            TroupeSpan.broadcast, kind: traced.originSystem == configuration.system ? .producer : .consumer,
            metadata: &traced.metadata, actorID: traced.sender?.name ?? "", action: traced.action)
        // With the span's context in its metadata: the listeners' turns are children of the span.
        let broadcast = traced
        if let span {
            span.attributes[TroupeSpanAttribute.channel] = broadcast.channel
            // A client's broadcast comes from no actor.
            if broadcast.sender == nil { span.attributes[TroupeSpanAttribute.actorID] = nil }
        }
        let listeners = state.withLock { state in
            state.types.values.compactMap { entry -> String? in
                guard !entry.hosts.isEmpty, entry.info.definition.kind == .named,
                    entry.info.definition.channels.contains(broadcast.channel)
                else { return nil }
                return entry.info.name
            }
        }
        var caller = WireActorId()
        caller.system = broadcast.originSystem
        if let sender = broadcast.sender { caller = WireActorId(sender) }
        let deadline = NIODeadline.now() + configuration.broadcastTimeout
        for name in listeners {
            var call = Invocation(
                actor: ActorKey(system: configuration.system, name: name), action: broadcast.action,
                payload: broadcast.payload, metadata: broadcast.metadata, caller: caller, deadline: deadline)
            // A chain of its own per listener: listeners run side by side and may call each other.
            call.chain = broadcast.chain
            call.chain.id = ""
            let invocation = call
            let reply = Reply { [self] result in
                guard case .failure(let error) = result else { return }
                broadcastFailures.increment()
                logger.debug(
                    "broadcast not delivered",
                    metadata: TraceLogMetadata.metadata(of: invocation.metadata).merging([
                        "troupe.actor_id": "\(invocation.actor)", "troupe.channel": "\(broadcast.channel)",
                        "troupe.error": "\(error)",
                    ]) { $1 })
            }
            reply.arm(deadline: deadline, on: DeadlineTimers.loop)
            invoke(invocation, reply: reply)
        }
        var bridged = false
        if broadcast.originSystem == configuration.system, let bridge = bridge.withLock({ $0 }) {
            do {
                try bridge.publish(broadcast)
                bridged = true
            } catch {
                logger.warning(
                    "broadcast not published to other systems",
                    metadata: ["troupe.channel": "\(broadcast.channel)", "troupe.error": "\(error)"])
            }
        }
        span?.attributes[TroupeSpanAttribute.listeners] = listeners.count
        span?.end(reporting: nil)
        return (listeners.count, bridged)
    }

    // MARK: Side effects

    /// Starts a side effect of an action: nobody waits for its reply, and a failure is logged and
    /// counted (`troupe_side_effect_failures_total`), never sent to the original caller.
    func startSideEffect(_ invocation: Invocation, on loop: any EventLoop) {
        let reply = droppedOutcome(of: invocation, "side effect failed", counter: sideEffectFailures)
        reply.arm(deadline: invocation.deadline, on: loop)
        invoke(invocation, reply: reply)
    }

    /// Queues a fire-and-forget call: `acceptance` learns whether it reached a mailbox; its
    /// outcome is dropped, and a failure logged and counted (`troupe_async_failures_total`).
    public func send(_ invocation: Invocation, acceptance: Reply, on loop: any EventLoop) {
        let outcome = droppedOutcome(of: invocation, "fire-and-forget call failed", counter: asyncFailures)
        outcome.arm(deadline: invocation.deadline, on: loop)
        invoke(invocation, reply: outcome, acceptance: acceptance)
    }

    /// The reply slot of a call whose outcome nobody waits for: a failure is logged and counted.
    private func droppedOutcome(of invocation: Invocation, _ message: Logger.Message, counter: Counter) -> Reply {
        Reply { [self] result in
            guard case .failure(let error) = result else { return }
            counter.increment()
            logger.warning(
                message,
                metadata: TraceLogMetadata.metadata(of: invocation.metadata).merging([
                    "troupe.actor_id": "\(invocation.caller.map { "\($0.system)/\($0.name)" } ?? "-")",
                    "troupe.target": "\(invocation.actor)", "troupe.action": "\(invocation.action)",
                    "troupe.error": "\(error)",
                ]) { $1 })
        }
    }

    /// Creates unnamed actors of `actorType` that do not exist yet; returns the ones created.
    public func spawn(names: [String], actorType: String) async throws -> [String] {
        let info = state.withLock { $0.types[actorType]?.info }
        guard let info, info.definition.kind == .unnamed else {
            throw TroupeError.notFound(
                "no unnamed actor type '\(actorType)' is registered", details: ["actor_type": actorType])
        }
        guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty }) else {
            throw TroupeError.invalidArgument("spawn needs at least one non-empty name")
        }
        let keys = names.map { ActorKey(system: configuration.system, name: $0) }
        let created = try await store.spawn(keys, actorType: info.name)
        return created.map(\.name)
    }

    /// The next call for activation `activationID` of `key`, or nil when its mailbox is empty
    /// (the activation then counts as idle) or the activation was removed.
    func next(_ key: ActorKey, _ activationID: UInt64) -> Call? {
        state.withLock { state -> Call? in
            guard let index = state.slots.index(forKey: key), state.slots.values[index].activationID == activationID
            else {
                return nil
            }
            return state.slots.values[index].dequeue()
        }
    }

    /// Removes an activation that must stop serving, failing its waiting calls with `error`.
    func deactivate(_ key: ActorKey, _ activationID: UInt64, because error: TroupeError) {
        let calls = state.withLock { state -> [Call] in
            guard let slot = state.slots[key], slot.activationID == activationID else { return [] }
            state.slots.removeValue(forKey: key)
            return Array(slot.queue ?? [])
        }
        deactivations.increment()
        logger.warning("actor deactivated", metadata: ["troupe.actor_id": "\(key)", "troupe.error": "\(error)"])
        for call in calls { call.fail(error) }
    }

    // MARK: Activation

    private func activate(
        _ key: ActorKey, activationID: UInt64, spawnFrom: String, cause: ActivationCause
    ) async {
        var trace = cause.trace
        let span = tracing?.startSpan(
            TroupeSpan.actorActivate, kind: .internal, metadata: &trace, actorID: key.name, action: cause.action)
        do {
            if let router = router.withLock({ $0 }), let source = router.handOffSource(of: key, spawnFrom: spawnFrom) {
                await handOff(key, from: source)
            }
            let (info, host) = try await resolve(key, spawnFrom: spawnFrom)
            span?.attributes[TroupeSpanAttribute.actorType] = info.name
            var activation: Activation?
            if info.stateful || info.definition.kind == .unnamed {
                activation = try await store.activate(key, actorType: info.name)
            }
            let id = TroupeActorID(node: configuration.node, path: key.description)
            actorSystem.pin(id, to: host.eventLoop.executor.asUnownedSerialExecutor())
            let process = TroupeActorSystem.$preassignedID.withValue(id) {
                ActorProcess(
                    actorSystem: actorSystem, key: key, activationID: activationID, type: info, host: host,
                    store: store, directory: self, activation: activation)
            }
            var timers: [TimerWheel.Entry] = []
            var waiting: [Call] = []
            let start = state.withLock { state -> Bool in
                guard var slot = state.slots[key], slot.activationID == activationID else { return false }
                defer { state.slots[key] = slot }
                slot.process = process
                slot.loop = host.eventLoop
                slot.type = info
                slot.host = ObjectIdentifier(host)
                slot.revision = activation?.record.revision ?? 0
                timers = installDeclaredTimers(info.definition, in: &slot, key: key)
                waiting = Array(slot.queue ?? [])
                guard !(slot.queue?.isEmpty ?? true) else { return false }
                slot.running = true
                return true
            }
            timerWheel.schedule(timers)
            for call in waiting { call.acceptance?.complete(.success(WirePayload())) }
            activations.increment()
            activeGauge.record(activeCount)
            logger.debug(
                "actor activated", metadata: ["troupe.actor_id": "\(key)", "troupe.actor_type": "\(info.name)"])
            span?.end(reporting: nil)
            if start { process.schedulePump(on: host.eventLoop) }
        } catch {
            let error = TroupeError(wrapping: error)
            span?.end(reporting: error)
            let calls = state.withLock { state -> [Call] in
                guard let slot = state.slots[key], slot.activationID == activationID else { return [] }
                state.slots.removeValue(forKey: key)
                return Array(slot.queue ?? [])
            }
            if error.code != .notFound {
                logger.warning(
                    "activation failed", metadata: ["troupe.actor_id": "\(key)", "troupe.error": "\(error)"])
            }
            for call in calls { call.fail(error) }
        }
    }

    /// Finds the type of `key` and the host to run it on.
    private func resolve(_ key: ActorKey, spawnFrom: String) async throws -> (ActorTypeInfo, any ActorHost) {
        guard key.system == configuration.system else {
            throw TroupeError.unavailable(
                "system '\(key.system)' is not reachable from this sidecar of '\(configuration.system)'",
                details: ["system": key.system])
        }
        if let named = try pickHost(for: key.name, requireKind: .named) {
            return named
        }
        var typeName: String?
        if !spawnFrom.isEmpty {
            guard try pickHost(for: spawnFrom, requireKind: .unnamed, dryRun: true) != nil else {
                throw TroupeError.notFound(
                    "no unnamed actor type '\(spawnFrom)' is registered", details: ["actor_type": spawnFrom])
            }
            _ = try await store.spawn([key], actorType: spawnFrom)
            typeName = spawnFrom
        } else if let record = try await store.read(key) {
            typeName = record.actorType
        }
        guard let typeName else {
            throw TroupeError.notFound("no actor '\(key.name)' in system '\(key.system)'", details: ["actor": key.name])
        }
        guard let found = try pickHost(for: typeName, requireKind: .unnamed) else {
            throw TroupeError.unavailable(
                "no host is registered for actor type '\(typeName)'", details: ["actor_type": typeName])
        }
        return found
    }

    /// The type `name` and its next host (round robin), nil if no such type of that kind is registered.
    ///
    /// - Throws: `unavailable` if the type is registered but no host serves it now.
    private func pickHost(for name: String, requireKind kind: WireActorKind, dryRun: Bool = false) throws
        -> (ActorTypeInfo, any ActorHost)?
    {
        try state.withLock { (state) throws -> (ActorTypeInfo, any ActorHost)? in
            guard var entry = state.types[name], entry.info.definition.kind == kind else { return nil }
            guard !entry.hosts.isEmpty else {
                throw TroupeError.unavailable(
                    "no host is registered for actor type '\(name)'", details: ["actor_type": name])
            }
            let host = entry.hosts[entry.nextHost % entry.hosts.count]
            if !dryRun {
                entry.nextHost &+= 1
                state.types[name] = entry
            }
            return (entry.info, host)
        }
    }

    // MARK: Introspection

    /// The actor type a call to `key` (with `spawnFrom`) runs on, as far as this node can tell
    /// without reading the store, following the order activation uses: the type of the actor's
    /// running activation, a named or pooled type called `key.name`, then `spawnFrom`. Nil when it cannot
    /// tell: an activation still resolving its type, or an unnamed actor called without
    /// `spawnFrom` (its type is in the store).
    public func typeOfCall(to key: ActorKey, spawnFrom: String) -> String? {
        state.withLock { state -> String? in
            // A named or pooled type is called by its type name.
            let kind = state.types[key.name]?.info.definition.kind
            let byTypeName = kind == .named || kind == .pooled
            if let slot = state.slots[key] {
                if let type = slot.type { return type.name }
                return byTypeName ? key.name : nil
            }
            if byTypeName { return key.name }
            return spawnFrom.isEmpty ? nil : spawnFrom
        }
    }

    /// Number of active actors.
    public var activeCount: Int { state.withLock { $0.slots.count } }

    /// The active actors, sorted by name, at most `limit` of them.
    ///
    /// - Parameter tags: only actors that carry each of these tags with the same value.
    public func list(actorType: String = "", tags: [String: String] = [:], limit: Int = 1000) -> (
        actors: [WireActorInfo], truncated: Bool
    ) {
        let now = NIODeadline.now()
        var infos = state.withLock { state -> [WireActorInfo] in
            state.slots.compactMap { key, slot in
                guard let type = slot.type, actorType.isEmpty || type.name == actorType,
                    tags.allSatisfy({ slot.tags[$0.key] == $0.value })
                else { return nil }
                var info = WireActorInfo()
                info.actor.system = key.system
                info.actor.name = key.name
                info.actorType = type.name
                info.node = configuration.node
                info.revision = slot.revision
                info.mailboxDepth = UInt32(clamping: slot.depth)
                info.idleMs = UInt64(max(0, (now - slot.lastActivity).nanoseconds / 1_000_000))
                info.tags = slot.tags
                return info
            }
        }
        infos.sort { $0.actor.name < $1.actor.name }
        let truncated = infos.count > limit
        return (Array(infos.prefix(limit)), truncated)
    }

    /// The active actors of this node and of `nodes`, sorted by name, at most `limit`. A node that
    /// does not answer within `timeout` is left out and named in `unreachable`.
    public func list(
        actorType: String, tags: [String: String] = [:], limit: Int, alsoOn nodes: [String],
        timeout: TimeAmount = .seconds(2)
    ) async -> (actors: [WireActorInfo], truncated: Bool, unreachable: [String]) {
        var (actors, truncated) = list(actorType: actorType, tags: tags, limit: limit)
        var request = WireListActorsRequest()
        request.actorType = actorType
        request.tags = tags
        request.limit = UInt32(clamping: limit)
        let argument = Data((try? request.serializedBytes() as [UInt8]) ?? [])
        let deadline = NIODeadline.now() + timeout
        let answers = nodes.filter { $0 != configuration.node }.map { node in
            (
                node,
                actorSystem.start(
                    RemoteCallEnvelope(
                        recipient: TroupeActorID(node: node, path: "directory"), target: StableTargets.directoryList,
                        arguments: [argument]), deadline: deadline)
            )
        }
        var unreachable: [String] = []
        for (node, answer) in answers {
            guard let data = try? await answer.get(),
                let response = try? WireListActorsResponse(serializedBytes: Array(data))
            else {
                unreachable.append(node)
                continue
            }
            actors += response.actors
            truncated = truncated || response.truncated
        }
        actors.sort { $0.actor.name < $1.actor.name }
        return (Array(actors.prefix(limit)), truncated || actors.count > limit, unreachable)
    }

    func noteDirty(_ key: ActorKey, _ activationID: UInt64, _ dirty: Bool) {
        state.withLock { $0.updateSlot(key, activationID) { $0.dirty = dirty } }
    }

    func log(snapshotFailed key: ActorKey, _ error: TroupeError) {
        snapshotFailures.increment()
        logger.warning(
            "write-behind snapshot failed; retrying",
            metadata: ["troupe.actor_id": "\(key)", "troupe.error": "\(error)"])
    }

    func noteTags(_ key: ActorKey, _ activationID: UInt64, _ tags: [String: String]) {
        state.withLock { $0.updateSlot(key, activationID) { $0.tags = tags } }
    }

    /// The running turn's action answered: calls of its chain are no longer calls into it.
    func turnEnded(_ key: ActorKey, _ activationID: UInt64) {
        state.withLock { $0.updateSlot(key, activationID) { $0.turnChain = nil } }
    }

    func noteRevision(_ key: ActorKey, _ activationID: UInt64, _ revision: UInt64) {
        state.withLock { $0.updateSlot(key, activationID) { $0.revision = revision } }
    }

    // MARK: Lifecycle

    /// Runs activations and drains, deactivates idle actors, and on graceful shutdown refuses new
    /// calls, lets queued ones finish (bounded by ``Configuration/drainTimeout``) and deactivates all.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.sweepIdle() }
            group.addTask {
                try? await gracefulShutdown()
                await self.drainAndStop()
            }
            for await item in work {
                group.addTask {
                    switch item {
                    case .activate(let key, let id, let spawnFrom, let cause):
                        await self.activate(key, activationID: id, spawnFrom: spawnFrom, cause: cause)
                    case .flush(let process):
                        await process.whenLocal { await $0.flushForDeactivation() }
                    case .release(let key, let deadline, let reply):
                        reply(await self.release(key, until: deadline))
                    }
                }
            }
            group.cancelAll()
        }
        logger.info("actor directory stopped")
    }

    /// Stops taking calls, waits for the ones queued, then deactivates every actor.
    public func drainAndStop() async {
        state.withLock { $0.stopping = true }
        let deadline = NIODeadline.now() + configuration.drainTimeout
        while NIODeadline.now() < deadline, !Task.isCancelled {
            let busy = state.withLock { state in
                state.slots.values.contains { $0.depth > 0 } || state.pools.values.contains { $0.pendingCount > 0 }
            }
            if !busy { break }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let unsaved = state.withLock { $0.slots.values.compactMap { $0.dirty ? $0.process : nil } }
        for process in unsaved { await process.whenLocal { await $0.flushForDeactivation() } }
        let leftovers = state.withLock { state -> [Call] in
            var calls = state.slots.values.flatMap { Array($0.queue ?? []) }
            state.slots.removeAll()
            for name in Array(state.pools.keys) {
                calls += state.pools[name]!.takeQueue()
                state.pools[name]!.removeAll()
            }
            return calls
        }
        let error = TroupeError.unavailable("the sidecar shut down before the call ran")
        for call in leftovers { call.fail(error) }
        activeGauge.record(0)
        timerWheel.stop()
        workInput.finish()
    }

    private func sweepIdle() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            let now = NIODeadline.now()
            // Actors another node owns now (membership changed) are stored and let go, so the
            // new owner activates them from the store. The router is asked outside the lock.
            // Only after placement changed: asking the router about every actor costs a
            // rendezvous hash each, every sweep, for nothing while the members stay the same.
            var moved: Set<ActorKey> = []
            if let router = self.router.withLock({ $0 }), placementMayHaveMoved.exchange(false, ordering: .relaxed) {
                let candidates = state.withLock { state in
                    // In place, as in `letGo`: iterating the pairs copied every slot.
                    var candidates: [(ActorKey, String)] = []
                    for index in state.slots.indices where state.slots.values[index].process != nil {
                        guard let type = state.slots.values[index].type else { continue }
                        candidates.append((state.slots.keys[index], type.definition.kind == .unnamed ? type.name : ""))
                    }
                    return candidates
                }
                moved = Set(candidates.filter { router.remoteOwner(of: $0.0, spawnFrom: $0.1) != nil }.map(\.0))
            }
            let removed = letGo(idleAt: now, orAmong: moved)
            // A moved actor still busy (or storing its state) is let go by a later sweep.
            if !moved.isEmpty, state.withLock({ state in moved.contains { state.slots[$0] != nil } }) {
                placementMayHaveMoved.store(true, ordering: .relaxed)
            }
            let retired = state.withLock { state in
                var retired = 0
                for name in Array(state.pools.keys) { retired += state.pools[name]!.retireIdle(now: now) }
                return retired
            }
            if retired > 0 { logger.debug("idle pool instances retired", metadata: ["troupe.count": "\(retired)"]) }
            if removed > 0 { logger.debug("idle actors deactivated", metadata: ["troupe.count": "\(removed)"]) }
        }
    }

    /// Ends the quiet activations (active, nothing running or queued) that are idle at `now` or
    /// that another node owns now (`moved`): a clean one at once, one with unsaved write-behind state once it is stored (its snapshot is
    /// started here; a later call removes it).
    ///
    /// - Returns: how many activations ended.
    private func letGo(idleAt now: NIODeadline, orAmong moved: Set<ActorKey>) -> Int {
        endQuiet { state in
            // Every slot is looked at in place, under the lock the event loops wait for: a copy
            // of each one (as `filter`, or a closure taking the slot, makes) retained all its
            // parts and cost a fifth of the sidecar's CPU with 20,000 actors on timers.
            var picked: [ActorKey] = []
            for index in state.slots.indices where state.slots.values[index].isQuiet {
                if state.slots.values[index].isIdle(at: now) || moved.contains(state.slots.keys[index]) {
                    picked.append(state.slots.keys[index])
                }
            }
            return picked
        }
    }

    /// ``letGo(idleAt:orAmong:)`` for one actor, without looking at the others.
    private func letGo(_ key: ActorKey) -> Int {
        endQuiet { state in state.slots[key]?.isQuiet == true ? [key] : [] }
    }

    private func endQuiet(_ pick: (inout State) -> [ActorKey]) -> Int {
        var unsaved: [(ActorProcess, any EventLoop)] = []
        let removed = state.withLock { state -> Int in
            var count = 0
            for key in pick(&state) {
                guard let slot = state.slots[key] else { continue }
                if slot.dirty {
                    if let process = slot.process, let loop = slot.loop { unsaved.append((process, loop)) }
                } else {
                    state.slots.removeValue(forKey: key)
                    count += 1
                }
            }
            return count
        }
        for (process, loop) in unsaved { process.requestSnapshot(on: loop) }
        if removed > 0 {
            deactivations.increment(by: removed)
            activeGauge.record(activeCount)
        }
        return removed
    }

    /// Tells the directory that placement changed (members, or the types their hosts serve):
    /// the next idle sweep lets go of the quiet actors another node owns now, and keeps looking
    /// until the busy ones among them are gone too.
    public func placementChanged() {
        placementMayHaveMoved.store(true, ordering: .relaxed)
    }

    // MARK: Hand-off between nodes

    /// Waits until `key` is not active here, ending its activation as soon as its calls are done
    /// and its state is stored: the node placement moved it to asked for it before activating it.
    private func release(_ key: ActorKey, until deadline: NIODeadline) async -> Result<Data?, TroupeError> {
        let started = NIODeadline.now()
        // Bounded by the asking node's deadline; a turn that outlasts it loses nothing either:
        // the new activation's fencing token refuses this one's later writes.
        while state.withLock({ $0.slots[key] != nil }) {
            if letGo(key) > 0 { break }
            guard NIODeadline.now() < deadline, !Task.isCancelled else {
                return .failure(
                    .deadlineExceeded(
                        "\(key) was still busy on node \(configuration.node) when the hand-off's deadline passed",
                        details: ["actor": key.name, "node": configuration.node]))
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
        handOffWaits.recordNanoseconds((NIODeadline.now() - started).nanoseconds)
        return .success(nil)
    }

    /// Asks `source`, where placement had `key` before, to let go of it, and waits (at most
    /// ``Configuration/drainTimeout``, as a drain would) before this node activates it. A failed
    /// or late answer is logged and counted, and the activation goes on: the store's fencing
    /// still refuses writes of an activation left behind there.
    private func handOff(_ key: ActorKey, from source: String) async {
        let call = RemoteCallEnvelope(
            recipient: TroupeActorID(node: source, path: key.description), target: StableTargets.directoryRelease,
            arguments: [])
        do {
            _ = try await actorSystem.start(call, deadline: .now() + configuration.drainTimeout).get()
            handOffs.increment()
        } catch {
            handOffFailures.increment()
            logger.info(
                "hand-off not confirmed; activating anyway",
                metadata: [
                    "troupe.actor_id": "\(key)", "troupe.peer": "\(source)",
                    "troupe.error": "\(TroupeError(wrapping: error))",
                ])
        }
    }
}

/// The event loop that arms deadlines of calls made from Swift code rather than a connection.
enum DeadlineTimers {
    static var loop: any EventLoop { NIOSingletons.posixEventLoopGroup.any() }
}
