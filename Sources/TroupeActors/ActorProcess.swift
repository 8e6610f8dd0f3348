public import Distributed
import Logging
import NIOCore
import TroupeProto
import TroupeStore
import TroupeWire

/// What every activation of one registered actor type shares.
final class ActorTypeInfo: Sendable {
    let definition: WireActorDefinition
    let actions: Set<String>
    let idleTimeout: TimeAmount
    let mailboxCapacity: Int

    init(definition: WireActorDefinition, defaultIdleTimeout: TimeAmount, defaultMailboxCapacity: Int) {
        self.definition = definition
        self.actions = Set(definition.actions)
        self.idleTimeout = definition.idleTimeoutMs == 0 ? defaultIdleTimeout : .milliseconds(Int64(definition.idleTimeoutMs))
        self.mailboxCapacity = definition.mailboxCapacity == 0 ? defaultMailboxCapacity : Int(definition.mailboxCapacity)
    }

    var name: String { definition.name }
    var stateful: Bool { definition.stateful }
}

/// One active actor: a Swift distributed actor that runs its calls one at a time.
///
/// The mailbox lives in the ``ActorDirectory`` (so enqueueing is synchronous and keeps the order
/// in which calls arrived); the process drains it, sending each call to the host with the current
/// state, and stores the state the host returns before the caller is answered.
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

    /// Runs queued calls until the mailbox is empty.
    func drain() async {
        while let call = directory.next(key, activationID) {
            await run(call)
        }
    }

    /// Invokes an action and waits for the reply: the entry point for callers that are actors
    /// themselves, and for remote nodes.
    public distributed func invoke(action: String, payloadType: String, payload: [UInt8], timeoutMillis: Int64) async throws -> [UInt8] {
        var wire = WirePayload()
        wire.typeURL = payloadType
        wire.value = .init(payload)
        let invocation = Invocation(
            actor: key, action: action, payload: wire, deadline: .now() + .milliseconds(timeoutMillis))
        let reply = try await directory.invoke(invocation)
        return Array(reply.value)
    }

    private func run(_ call: Call) async {
        let invocation = call.invocation
        guard !call.reply.isDone else { return }
        guard type.actions.isEmpty || type.actions.contains(invocation.action) else {
            call.reply.complete(
                .failure(.notFound(
                    "actor type '\(type.name)' has no action '\(invocation.action)'",
                    details: ["actor": key.name, "action": invocation.action])))
            return
        }
        let remaining = invocation.deadline - .now()
        guard remaining > .zero else {
            call.reply.complete(.failure(.deadlineExceeded("the call's deadline passed while it waited in the mailbox")))
            return
        }
        var wire = WireActorInvocation()
        wire.actor.system = key.system
        wire.actor.name = key.name
        wire.actorType = type.name
        wire.action = invocation.action
        if type.stateful, let state { wire.state = state }
        wire.payload = invocation.payload
        wire.metadata = invocation.metadata
        if let caller = invocation.caller { wire.caller = caller }
        wire.timeoutMs = UInt32(clamping: remaining.nanoseconds / 1_000_000)
        wire.revision = revision

        let result: WireActorInvocationResult
        do {
            result = try await host.invoke(wire, timeout: remaining)
        } catch {
            call.reply.complete(.failure(TroupeError(wrapping: error)))
            return
        }
        if type.stateful, result.hasNewState {
            do {
                revision = try await store.write(
                    key, state: StateBlob(typeURL: result.newState.typeURL, bytes: Array(result.newState.value)),
                    fencingToken: fencingToken)
                state = result.newState
                directory.noteRevision(key, activationID, revision)
            } catch {
                let error = TroupeError(wrapping: error)
                call.reply.complete(.failure(error))
                if error.code == .failedPrecondition {
                    // A newer activation owns this actor: this one must stop serving at once.
                    directory.deactivate(key, activationID, because: error)
                }
                return
            }
        }
        call.reply.complete(.success(result.reply))
    }

}
