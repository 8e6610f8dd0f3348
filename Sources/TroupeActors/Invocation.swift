public import Foundation
public import NIOCore
import SwiftProtobuf
import Synchronization
public import TroupeProto
public import TroupeStore
public import TroupeWire

/// How the runtime reaches the process that runs an actor type's code.
///
/// The sidecar implements it over a host-protocol connection. `invoke` must honour the timeout
/// and must fail, not hang, when the host goes away.
public protocol ActorHost: AnyObject, Sendable {
    /// A short name for logs.
    var hostName: String { get }
    /// The event loop the host's answers arrive on; its actors run there.
    var eventLoop: any EventLoop { get }
    /// Runs one action on the host.
    func invoke(_ invocation: WireActorInvocation, timeout: TimeAmount) -> EventLoopFuture<WireActorInvocationResult>
}

/// Carries calls to actors of other ActorSystems (the sidecar's NATS bridge).
public protocol SystemBridge: AnyObject, Sendable {
    /// Sends `invocation`, whose actor belongs to another system, and completes `reply` with
    /// the outcome. Must not block: the directory calls it on the caller's thread.
    func forward(_ invocation: Invocation, reply: Reply)
    /// Publishes a broadcast of this system to the listeners of the other systems.
    ///
    /// - Throws: the typed error of the publish (for example `unavailable` once the connection is closed).
    func publish(_ broadcast: Broadcast) throws(TroupeError)
}

/// A message to every actor that listens to a named channel.
public struct Broadcast: Sendable {
    public var channel: String
    /// The action invoked on each listener.
    public var action: String
    public var payload: WirePayload
    public var metadata: [String: String]
    /// The system it was broadcast in.
    public var originSystem: String
    /// The actor whose action broadcast it (a broadcast effect); nil for a client's broadcast.
    public var sender: ActorKey?
    /// The chain of the action that broadcast it: each listener's call continues it with a new id.
    public var chain = WireCallChain()

    public init(
        channel: String, action: String, payload: WirePayload = WirePayload(), metadata: [String: String] = [:],
        originSystem: String, sender: ActorKey? = nil
    ) {
        self.channel = channel
        self.action = action
        self.payload = payload
        self.metadata = metadata
        self.originSystem = originSystem
        self.sender = sender
    }
}

/// One call to an actor, as the directory queues it.
public struct Invocation: Sendable {
    public var actor: ActorKey
    public var action: String
    public var payload: WirePayload
    public var metadata: [String: String]
    public var caller: WireActorId?
    public var deadline: NIODeadline
    /// Spawn the actor from this unnamed type if it does not exist.
    public var spawnFrom: String
    /// How many nodes forwarded the call already.
    public var hops: UInt32 = 0
    /// The call chain it belongs to; an empty id gets a new one when the call is queued.
    public var chain = WireCallChain()
    /// Set when the call is a timer's or reminder's firing.
    public var firing: TimerFiring?

    public init(
        actor: ActorKey, action: String, payload: WirePayload = WirePayload(), metadata: [String: String] = [:],
        caller: WireActorId? = nil, deadline: NIODeadline, spawnFrom: String = ""
    ) {
        self.actor = actor
        self.action = action
        self.payload = payload
        self.metadata = metadata
        self.caller = caller
        self.deadline = deadline
        self.spawnFrom = spawnFrom
    }
}

extension Invocation {
    /// Reads a call that came from another node: a serialized `InvokeRequest`, whose
    /// `timeout_ms` is what the caller still waits. An empty actor means `defaultActor`.
    ///
    /// - Throws: `invalidArgument` if the bytes are not an `InvokeRequest` or name no action.
    public init(remote bytes: Data, defaultActor: ActorKey, hops: UInt32) throws(TroupeError) {
        let request: WireInvokeRequest
        do { request = try WireInvokeRequest(serializedBytes: bytes) } catch {
            throw .invalidArgument("a remote invocation is not a troupe.host.v1.InvokeRequest: \(error)")
        }
        guard !request.action.isEmpty else { throw .invalidArgument("a remote invocation names no action") }
        let actor =
            request.actor.name.isEmpty
            ? defaultActor : ActorKey(system: request.actor.system, name: request.actor.name)
        self.init(
            actor: actor, action: request.action, payload: request.payload, metadata: request.metadata,
            caller: request.hasCaller ? request.caller : nil,
            deadline: .now() + .milliseconds(Int64(request.timeoutMs == 0 ? 30_000 : request.timeoutMs)),
            spawnFrom: request.spawnFrom)
        self.hops = hops
        self.chain = request.chain
    }

    /// This call as a serialized `InvokeRequest` for another node, with the time left until its deadline.
    public func remoteRequest() throws(TroupeError) -> Data {
        var request = WireInvokeRequest()
        request.actor.system = actor.system
        request.actor.name = actor.name
        request.action = action
        request.payload = payload
        request.metadata = metadata
        if let caller { request.caller = caller }
        request.spawnFrom = spawnFrom
        if !chain.id.isEmpty || !chain.path.isEmpty { request.chain = chain }
        request.timeoutMs = UInt32(clamping: max(1, (deadline - .now()).nanoseconds / 1_000_000))
        do { return try request.serializedBytes() } catch {
            throw .internalError("cannot encode an invocation of \(actor): \(error)")
        }
    }
}

/// The answer slot of one call: completed exactly once, by the reply, by an error or by the
/// caller's deadline, whichever comes first.
public final class Reply: Sendable {
    private struct State {
        var done = false
        var timer: Scheduled<Void>?
    }

    private let state = Mutex(State())
    private let deliver: @Sendable (Result<WirePayload, TroupeError>) -> Void

    /// - Parameter deliver: called once with the outcome, on whichever thread completes it.
    public init(_ deliver: @escaping @Sendable (Result<WirePayload, TroupeError>) -> Void) {
        self.deliver = deliver
    }

    /// Fails the call with `deadlineExceeded` at `deadline` unless it was answered before.
    public func arm(deadline: NIODeadline, on eventLoop: any EventLoop) {
        let timer = eventLoop.scheduleTask(deadline: deadline) { [self] in
            complete(.failure(.deadlineExceeded("the call's deadline passed before the actor answered")))
        }
        let alreadyDone = state.withLock { state -> Bool in
            if state.done { return true }
            state.timer = timer
            return false
        }
        if alreadyDone { timer.cancel() }
    }

    public var isDone: Bool { state.withLock { $0.done } }

    public func complete(_ result: Result<WirePayload, TroupeError>) {
        let timer = state.withLock { state -> Scheduled<Void>?? in
            if state.done { return .none }
            state.done = true
            defer { state.timer = nil }
            return .some(state.timer)
        }
        guard case .some(let pending) = timer else { return }
        pending?.cancel()
        deliver(result)
    }
}

/// A call waiting in an actor's mailbox.
struct Call: Sendable {
    var invocation: Invocation
    var reply: Reply
    /// For a fire-and-forget call: completed once the call is in the mailbox of a live activation,
    /// or with the error that kept it out.
    var acceptance: Reply?

    /// Fails the call, and its acceptance if it was not accepted yet.
    func fail(_ error: TroupeError) {
        acceptance?.complete(.failure(error))
        reply.complete(.failure(error))
    }
}
