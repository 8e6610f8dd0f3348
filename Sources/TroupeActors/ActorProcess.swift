public import Distributed
import Foundation
import Logging
import NIOCore
import Tracing
import TroupeProto
import TroupeStore
import TroupeTracing
import TroupeWire

/// What every activation of one registered actor type shares.
final class ActorTypeInfo: Sendable {
    let definition: WireActorDefinition
    let actions: Set<String>
    let idleTimeout: TimeAmount
    let mailboxCapacity: Int
    /// Answer before the state is stored, and store the latest state every `snapshotInterval`.
    let writeBehind: Bool
    let snapshotInterval: TimeAmount
    /// Calls of the running turn's own chain run interleaved instead of being refused.
    let reentrant: Bool
    /// A pooled type: its instances take calls from the type's ``ActorPool``.
    let pooled: Bool
    /// For a pooled type, the instances kept when idle and the most it grows to.
    let poolMin: Int
    let poolMax: Int
    /// The calls of every activation of the type, counted and timed.
    let meters: InvocationMeters

    /// The largest pool a type gets unless it says otherwise: eight instances per core, as each
    /// mostly waits for its host.
    static var defaultPoolMax: Int { System.coreCount * 8 }

    init(definition: WireActorDefinition, defaultIdleTimeout: TimeAmount, defaultMailboxCapacity: Int) {
        self.definition = definition
        self.actions = Set(definition.actions)
        self.writeBehind = definition.durability == .writeBehind
        self.reentrant = definition.reentrant
        self.snapshotInterval = .milliseconds(Int64(definition.snapshotIntervalMs == 0 ? 1000 : definition.snapshotIntervalMs))
        self.idleTimeout =
            definition.idleTimeoutMs == 0 ? defaultIdleTimeout : .milliseconds(Int64(definition.idleTimeoutMs))
        self.mailboxCapacity =
            definition.mailboxCapacity == 0 ? defaultMailboxCapacity : Int(definition.mailboxCapacity)
        self.pooled = definition.kind == .pooled
        self.poolMax = definition.poolMax == 0 ? Self.defaultPoolMax : Int(definition.poolMax)
        self.poolMin = definition.hasPoolMin ? Int(definition.poolMin) : min(1, poolMax)
        self.meters = InvocationMeters(actorType: definition.name, actions: actions)
    }

    var name: String { definition.name }
    var stateful: Bool { definition.stateful }
}

/// One active actor: a Swift distributed actor that runs its calls one at a time.
///
/// The mailbox lives in the ``ActorDirectory`` (so enqueueing is synchronous and keeps the order
/// in which calls arrived). The process runs on the event loop of the connection to its host: it
/// takes a call, sends it to the host with the current state, and when the answer comes back (on
/// the same loop) stores the new state, answers the caller and takes the next call. No call
/// crosses a thread unless a socket or the store forces it.
public distributed actor ActorProcess {
    public typealias ActorSystem = TroupeActorSystem

    let key: ActorKey
    let activationID: UInt64
    let type: ActorTypeInfo
    let host: any ActorHost
    let store: any StateStore
    let directory: ActorDirectory
    let fencingToken: UInt64
    var state: WirePayload?
    var revision: UInt64
    /// Write-behind: the state in memory is newer than the stored one.
    var dirty = false
    /// Write-behind: the pending snapshot timer, and the write in progress.
    var snapshotTimer: Scheduled<Void>?
    var storing: EventLoopFuture<Void>?
    /// Grows by one each time a new state is accepted. A call remembers it when it starts: a new
    /// state it returns is accepted only if no other call's state was accepted meanwhile, which
    /// only an interleaved (reentrant) call can do.
    private var generation: UInt64 = 0
    /// Write-through writes in flight: while one is, no other new state is accepted.
    private var pendingWrites = 0
    /// The tags the actor set, kept with this activation.
    private var tags: [String: String] = [:]

    /// Runs on the executor the directory pinned this actor to (its host connection's event loop).
    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        // The directory pins every activation before creating it; the fallback only serves a
        // process created some other way, which must still run on some serial executor.
        actorSystem.executor(for: id) ?? NIOSingletons.posixEventLoopGroup.next().executor.asUnownedSerialExecutor()
    }

    init(
        actorSystem: TroupeActorSystem, key: ActorKey, activationID: UInt64, type: ActorTypeInfo,
        host: any ActorHost, store: any StateStore, directory: ActorDirectory, activation: Activation?
    ) {
        self.actorSystem = actorSystem
        self.key = key
        self.activationID = activationID
        self.type = type
        self.host = host
        self.store = store
        self.directory = directory
        self.fencingToken = activation?.fencingToken ?? 0
        self.revision = activation?.record.revision ?? 0
        if let stored = activation?.record.state {
            var payload = WirePayload()
            payload.typeURL = stored.typeURL
            payload.value = .init(stored.bytes)
            self.state = payload
        } else if type.definition.hasInitialState {
            self.state = type.definition.initialState
        }
    }

    /// Starts taking calls from the mailbox; the directory calls it when a call arrives for an
    /// idle activation. Runs inline when already on `loop`, the loop the actor is pinned to.
    nonisolated func schedulePump(on loop: any EventLoop) {
        if loop.inEventLoop {
            assumeIsolated { $0.pump() }
        } else {
            loop.execute { self.assumeIsolated { $0.pump() } }
        }
    }

    /// Starts the pumps of many activations pinned to `loop`: one task on the loop for all of
    /// them (a timer heap's pass starts thousands of turns at once), inline when already there.
    static func schedulePumps(_ processes: [ActorProcess], on loop: any EventLoop) {
        if loop.inEventLoop {
            for process in processes { process.assumeIsolated { $0.pump() } }
        } else {
            loop.execute {
                for process in processes { process.assumeIsolated { $0.pump() } }
            }
        }
    }

    /// Runs `call` now, next to the turn in progress: a reentrant call of the turn's own chain,
    /// which the directory hands over instead of queueing it (it would wait for ever).
    nonisolated func scheduleInterleaved(_ call: Call, on loop: any EventLoop) {
        if loop.inEventLoop {
            assumeIsolated { _ = $0.start(call, interleaved: true) }
        } else {
            loop.execute { self.assumeIsolated { _ = $0.start(call, interleaved: true) } }
        }
    }

    /// Takes calls until one has to wait for the host or the mailbox is empty.
    private func pump() {
        while let call = type.pooled
            ? directory.nextPooled(type.name, activationID) : directory.next(key, activationID)
        {
            if start(call, interleaved: false) { return }
        }
    }

    /// What a started call remembers until its answer is applied.
    private struct Turn {
        /// Runs next to the mailbox's turn: it neither takes the next call nor ends the turn.
        var interleaved: Bool
        /// ``generation`` when it started.
        var generation: UInt64
        var started: NIODeadline
    }

    /// Starts one call. Returns true if it is now waiting for the host; false if it was answered
    /// at once (unknown action, deadline already passed, caller gone).
    private func start(_ call: Call, interleaved: Bool) -> Bool {
        var call = call
        let invocation = call.invocation
        guard !call.reply.isDone else { return false }
        let started = NIODeadline.now()
        guard type.actions.isEmpty || type.actions.contains(invocation.action) else {
            complete(
                call,
                .failure(
                    .notFound(
                        "actor type '\(type.name)' has no action '\(invocation.action)'",
                        details: ["actor": key.name, "action": invocation.action])),
                since: started)
            return false
        }
        let remaining = invocation.deadline - started
        guard remaining > .zero else {
            complete(
                call, .failure(.deadlineExceeded("the call's deadline passed while it waited in the mailbox")),
                since: started)
            return false
        }
        // The turn's span becomes the parent of what the host does and of the turn's effects.
        let span = directory.tracing?.startSpan(
            TroupeSpan.actorTurn, kind: .client, metadata: &call.invocation.metadata, actorID: key.name,
            action: invocation.action, actorType: type.name)
        var wire = WireActorInvocation()
        wire.actor.system = key.system
        // Pool instances are interchangeable: the host sees the type name, the pool's address.
        wire.actor.name = type.pooled ? type.name : key.name
        wire.actorType = type.name
        wire.action = invocation.action
        if type.stateful, let state { wire.state = state }
        wire.payload = invocation.payload
        wire.metadata = call.invocation.metadata
        if let caller = invocation.caller { wire.caller = caller }
        wire.timeoutMs = UInt32(clamping: remaining.nanoseconds / 1_000_000)
        wire.revision = revision
        wire.chain = invocation.chain
        wire.chain.path.append(WireActorId(key))
        wire.tags = tags
        // A call that starts while a write is in flight sees the state before it: what it
        // returns is computed from an older state than the one being stored.
        let turn = Turn(
            interleaved: interleaved, generation: pendingWrites > 0 ? generation &- 1 : generation, started: started)
        if let firing = invocation.firing {
            wire.timer = firing.name
            wire.timerDueUnixMicros = firing.dueUnixMicros(now: started)
            TimerMeters.recordLag(firing, startedAt: started)
        }
        let loop = host.eventLoop
        host.invoke(wire, timeout: remaining).hop(to: loop).whenComplete { [call] result in
            span?.end(reporting: result.mapError { TroupeError(wrapping: $0) })
            self.assumeIsolated { $0.finish(call, result, turn) }
        }
        return true
    }

    /// Goes on after a call's answer was applied: the mailbox's turn takes the next call; an
    /// interleaved call leaves that to the turn it ran in.
    private func next(after turn: Turn) {
        if !turn.interleaved { pump() }
    }

    /// Answers `call` and counts the outcome.
    private func complete(_ call: Call, _ outcome: Result<WirePayload, TroupeError>, since started: NIODeadline) {
        let failure: TroupeError? = if case .failure(let error) = outcome { error } else { nil }
        type.meters.record(action: call.invocation.action, failure: failure, since: started)
        call.reply.complete(outcome)
    }

    /// Applies the host's answer: checks its effects, stores a new state first, then answers the
    /// caller (or hands the call on to its forward or pipe target), starts the side effects, and
    /// goes on with the next call.
    private func finish(_ call: Call, _ result: Result<WireActorInvocationResult, any Error>, _ turn: Turn) {
        // The action has returned, so nothing of its chain waits inside it any more: a call of
        // the chain that comes now (say a forward to this actor itself) queues as usual.
        // A call without a chain id (a timer's firing) set no chain to clear: no lock needed.
        if !turn.interleaved, !call.invocation.chain.id.isEmpty { directory.turnEnded(key, activationID) }
        let answer: WireActorInvocationResult
        do {
            answer = try result.get()
            try WorkflowEffects.validate(answer)
            try TimerRules.validate(answer.timers, type: type)
        } catch {
            complete(call, .failure(TroupeError(wrapping: error)), since: turn.started)
            next(after: turn)
            return
        }
        guard type.stateful && answer.hasNewState else {
            conclude(call, answer, turn)
            return
        }
        guard turn.generation == generation, pendingWrites == 0 else {
            // An interleaved call of the same chain changed the state after this call read it:
            // storing this one would silently undo that change. Nothing of this result applies.
            complete(
                call,
                .failure(
                    TroupeError(
                        .aborted,
                        "\(key) changed its state in a reentrant call while this call ran; its new state and effects were not applied",
                        details: ["actor": key.name])), since: turn.started)
            next(after: turn)
            return
        }
        generation &+= 1
        if type.writeBehind {
            state = answer.newState
            markDirty()
            conclude(call, answer, turn)
            return
        }
        pendingWrites += 1
        let blob = StateBlob(typeURL: answer.newState.typeURL, bytes: Array(answer.newState.value))
        let (store, key, token) = (self.store, self.key, fencingToken)
        // A copy: the turn's span stays the parent of the effects that follow the write.
        var traced = call.invocation.metadata
        let span = directory.tracing?.startSpan(
            TroupeSpan.stateWrite, kind: .client, metadata: &traced, actorID: key.name,
            action: call.invocation.action, actorType: type.name)
        host.eventLoop.makeFutureWithTask {
            try await store.write(key, state: blob, fencingToken: token)
        }.whenComplete { written in
            span?.end(reporting: written.map { _ in () }.mapError { TroupeError(wrapping: $0) })
            self.assumeIsolated { $0.stored(call, answer, written, turn) }
        }
    }

    private func stored(
        _ call: Call, _ answer: WireActorInvocationResult, _ written: Result<UInt64, any Error>, _ turn: Turn
    ) {
        pendingWrites -= 1
        switch written {
        case .success(let newRevision):
            revision = newRevision
            state = answer.newState
            directory.noteRevision(key, activationID, newRevision)
            conclude(call, answer, turn)
        case .failure(let error):
            let error = TroupeError(wrapping: error)
            // No effect goes out: they follow from a state change that did not happen.
            complete(call, .failure(error), since: turn.started)
            // Either a newer activation owns the actor (failedPrecondition), or the store could not
            // say whether the write landed (unavailable). Either way this activation's state may
            // no longer be the stored one, so it stops; the next call activates it from the store.
            directory.deactivate(key, activationID, because: error)
        }
    }

    /// Applies the result's timer commands, delivers it and goes on with the next call. Reminders
    /// are stored before the caller is answered, within the turn, so a later call of this actor
    /// always sees them; one that cannot be stored fails the call (its state change stays).
    private func conclude(_ call: Call, _ answer: WireActorInvocationResult, _ turn: Turn) {
        guard !answer.timers.isEmpty else {
            deliver(call, answer, turn)
            next(after: turn)
            return
        }
        directory.applyTimerCommands(answer.timers, key: key, activationID: activationID)
        guard answer.timers.contains(where: \.durable) else {
            deliver(call, answer, turn)
            next(after: turn)
            return
        }
        let (directory, key, commands) = (self.directory, self.key, answer.timers)
        host.eventLoop.makeFutureWithTask {
            try await directory.applyReminderCommands(commands, key: key)
        }.hop(to: host.eventLoop).whenComplete { outcome in
            self.assumeIsolated { process in
                switch outcome {
                case .success: process.deliver(call, answer, turn)
                case .failure(let error):
                    process.complete(call, .failure(TroupeError(wrapping: error)), since: turn.started)
                }
                process.next(after: turn)
            }
        }
    }

    /// Ends the call's turn here: keeps the tags it set, answers the caller, or passes its reply
    /// slot (and so its deadline) to the forward or pipe target, which runs as a call of its own
    /// so this actor takes its next call meanwhile. Then starts the side effects and broadcasts.
    private func deliver(_ call: Call, _ answer: WireActorInvocationResult, _ turn: Turn) {
        let origin = call.invocation
        let started = turn.started
        if !answer.setTags.isEmpty {
            for (name, value) in answer.setTags {
                tags[name] = value.isEmpty ? nil : value
            }
            directory.noteTags(key, activationID, tags)
        }
        switch answer.route {
        case .forward(let target)?:
            type.meters.record(action: origin.action, failure: nil, since: started)
            directory.invoke(
                Invocation(
                    effect: target, of: origin, by: key, payload: origin.payload, deadline: origin.deadline,
                    sameChain: true), reply: call.reply)
        case .pipe(let target)?:
            type.meters.record(action: origin.action, failure: nil, since: started)
            directory.invoke(
                Invocation(
                    effect: target, of: origin, by: key, payload: answer.reply, deadline: origin.deadline,
                    sameChain: true), reply: call.reply)
        case nil:
            complete(call, .success(answer.reply), since: started)
        }
        for effect in answer.sideEffects {
            let timeout =
                effect.timeoutMs == 0
                ? directory.configuration.sideEffectTimeout : .milliseconds(Int64(effect.timeoutMs))
            directory.startSideEffect(
                Invocation(
                    effect: effect.target, of: origin, by: key, payload: effect.payload, deadline: .now() + timeout,
                    sameChain: false), on: host.eventLoop)
        }
        for request in answer.broadcasts {
            var broadcast = Broadcast(
                channel: request.channel, action: request.action, payload: request.payload,
                metadata: origin.metadata.merging(request.metadata) { _, own in own },
                originSystem: directory.configuration.system, sender: key)
            broadcast.chain = origin.chain.continued(by: key, keepingID: false)
            _ = directory.broadcast(broadcast)
        }
    }

    // MARK: Write-behind

    private func markDirty() {
        dirty = true
        directory.noteDirty(key, activationID, true)
        guard snapshotTimer == nil else { return }
        snapshotTimer = host.eventLoop.scheduleTask(in: type.snapshotInterval) {
            self.assumeIsolated { process in
                process.snapshotTimer = nil
                _ = process.storeSnapshot()
            }
        }
    }

    /// Writes the latest state if it changed since the last write; at most one write at a time.
    /// A failed write keeps the state dirty and is retried on the next interval, so nothing
    /// acknowledged is dropped while the store is away.
    private func storeSnapshot() -> EventLoopFuture<Void> {
        let loop = host.eventLoop
        if let storing { return storing }
        guard dirty, let state else { return loop.makeSucceededVoidFuture() }
        dirty = false
        let blob = StateBlob(typeURL: state.typeURL, bytes: Array(state.value))
        let (store, key, token) = (self.store, self.key, fencingToken)
        let write = loop.makeFutureWithTask {
            try await store.write(key, state: blob, fencingToken: token)
        }.hop(to: loop)
        let done = write.map { _ in () }.recover { _ in () }
        storing = done
        write.whenComplete { result in
            self.assumeIsolated { $0.snapshotStored(result) }
        }
        return done
    }

    private func snapshotStored(_ result: Result<UInt64, any Error>) {
        storing = nil
        switch result {
        case .success(let newRevision):
            revision = newRevision
            directory.noteRevision(key, activationID, newRevision)
            if dirty { markDirty() } else { directory.noteDirty(key, activationID, false) }
        case .failure(let error):
            let error = TroupeError(wrapping: error)
            if error.code == .failedPrecondition {
                // A newer activation owns the actor; its state wins and this one must stop.
                directory.deactivate(key, activationID, because: error)
                return
            }
            directory.log(snapshotFailed: key, error)
            markDirty()
        }
    }

    /// Starts storing unsaved state now (for idle deactivation), without waiting.
    nonisolated func requestSnapshot(on loop: any EventLoop) {
        loop.execute { self.assumeIsolated { _ = $0.storeSnapshot() } }
    }

    /// Stores unsaved state before the activation goes away (host left, shutdown). Tries a few
    /// times; what still fails is logged, since the activation is about to end.
    func flushForDeactivation() async {
        snapshotTimer?.cancel()
        snapshotTimer = nil
        for _ in 0..<3 {
            if let storing {
                try? await storing.get()
                continue
            }
            guard dirty else { return }
            try? await storeSnapshot().get()
        }
        if dirty { directory.log(snapshotFailed: key, .unavailable("state not stored before deactivation")) }
    }

    /// Invokes an action and waits for the reply: the entry point for callers that are actors
    /// themselves, and for remote nodes (stable name ``StableTargets/actorProcessInvoke``).
    ///
    /// - Parameter request: a serialized `troupe.host.v1.InvokeRequest`.
    /// - Returns: the reply, a serialized `troupe.host.v1.Payload`.
    public distributed func invoke(request: [UInt8]) async throws -> [UInt8] {
        let invocation = try Invocation(remote: Data(request), defaultActor: key, hops: 0)
        let reply = try await directory.invoke(invocation)
        return try reply.serializedBytes()
    }
}
