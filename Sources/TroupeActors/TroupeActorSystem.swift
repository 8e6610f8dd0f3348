public import Distributed
public import Foundation
public import NIOCore
import Synchronization
public import TroupeWire

/// The identity of a distributed actor in a Troupe cluster: the node it lives on and a path.
///
/// For an ``ActorProcess`` the path is `system/name`, so the id of an actor is known without
/// asking anyone, which is what placement needs.
public struct TroupeActorID: Hashable, Sendable, Codable, CustomStringConvertible {
    public var node: String
    public var path: String

    public init(node: String, path: String) {
        self.node = node
        self.path = path
    }

    public var description: String { "\(path)@\(node)" }
}

/// Troupe's `DistributedActorSystem`.
///
/// Local calls on a local actor never reach this type: Swift calls the actor directly, with no
/// serialization. Remote calls go through ``remoteCall(on:target:invocation:throwing:returning:)``,
/// which needs a cluster transport; a single-node sidecar has none, so a call on an actor that
/// is not active here fails with `unavailable`. Inbound remote calls are executed by
/// ``executeRemoteCall(_:)`` against an allow-list of targets, since a target name that comes
/// from the network is untrusted input.
public final class TroupeActorSystem: DistributedActorSystem, Sendable {
    public typealias ActorID = TroupeActorID
    public typealias SerializationRequirement = any Codable
    public typealias InvocationEncoder = TroupeInvocationEncoder
    public typealias InvocationDecoder = TroupeInvocationDecoder
    public typealias ResultHandler = TroupeResultHandler

    /// The name of this node (this sidecar process) in the cluster.
    public let node: String
    private let actors = Mutex<[TroupeActorID: WeakActor]>([:])
    private let executors = Mutex<[TroupeActorID: UnownedSerialExecutor]>([:])
    private let transport = Mutex<(any RemoteCallTransport)?>(nil)
    private let allowedTargets: Mutex<Set<String>>
    private let stableTargets = Mutex<[String: StableTargetHandler]>([:])

    /// Serves an inbound call of a stable target synchronously, on the thread that read it, and
    /// answers through `reply` exactly once.
    public typealias StableTargetHandler =
        @Sendable (RemoteCallEnvelope, NIODeadline, @escaping @Sendable (Result<Data?, TroupeError>) -> Void) -> Void

    /// The deadline of remote calls made in this task; 30 s from the call when unset.
    @TaskLocal public static var callDeadline: NIODeadline?

    /// The id ``assignID(_:)`` gives the next actor created in this task, so that actors get the
    /// well-known ids placement computes.
    @TaskLocal public static var preassignedID: TroupeActorID?

    public init(node: String, allowedTargets: Set<String> = []) {
        self.node = node
        self.allowedTargets = Mutex(allowedTargets)
    }

    /// Allows inbound remote calls of `target` (its `RemoteCallTarget.identifier`).
    public func allowRemoteTarget(_ identifier: String) {
        allowedTargets.withLock { _ = $0.insert(identifier) }
    }

    /// Serves inbound calls of the stable target `name` with `handler`, without
    /// `executeDistributedTarget` (see ``StableTargets``).
    public func serve(stableTarget name: String, with handler: @escaping StableTargetHandler) {
        stableTargets.withLock { $0[name] = handler }
    }

    public func resolve<Act>(id: TroupeActorID, as actorType: Act.Type) throws -> Act?
    where Act: DistributedActor, Act.ID == TroupeActorID {
        actors.withLock { $0[id]?.actor } as? Act
    }

    public func assignID<Act>(_ actorType: Act.Type) -> TroupeActorID
    where Act: DistributedActor, Act.ID == TroupeActorID {
        Self.preassignedID ?? TroupeActorID(node: node, path: "anonymous/\(UUID().uuidString)")
    }

    public func actorReady<Act>(_ actor: Act) where Act: DistributedActor, Act.ID == TroupeActorID {
        actors.withLock { $0[actor.id] = WeakActor(actor: actor) }
    }

    public func resignID(_ id: TroupeActorID) {
        actors.withLock { _ = $0.removeValue(forKey: id) }
        executors.withLock { _ = $0.removeValue(forKey: id) }
    }

    /// Pins the actor that will get `id` to `executor` (an event loop, typically), so it runs
    /// where its I/O completes instead of hopping to the global pool. Set it before creating the actor.
    public func pin(_ id: TroupeActorID, to executor: UnownedSerialExecutor) {
        executors.withLock { $0[id] = executor }
    }

    /// The executor an actor was pinned to, if any.
    public func executor(for id: TroupeActorID) -> UnownedSerialExecutor? {
        executors.withLock { $0[id] }
    }

    /// Number of live distributed actors on this node.
    public var localActorCount: Int { actors.withLock { $0.count } }

    public func makeInvocationEncoder() -> TroupeInvocationEncoder { TroupeInvocationEncoder() }

    /// Carries remote calls to other nodes; nil on a single node. The cluster transport attaches
    /// itself here once it is connected.
    public func attach(transport: (any RemoteCallTransport)?) {
        self.transport.withLock { $0 = transport }
    }

    public func remoteCall<Act, Err, Res>(
        on actor: Act,
        target: RemoteCallTarget,
        invocation: inout TroupeInvocationEncoder,
        throwing: Err.Type,
        returning: Res.Type
    ) async throws -> Res where Act: DistributedActor, Act.ID == TroupeActorID, Err: Error, Res: Codable {
        guard let data = try await send(actor.id, target, invocation) else {
            throw TroupeError.internalError("remote target '\(target.identifier)' returned no value")
        }
        if Res.self == [UInt8].self { return Array(data) as! Res }
        do {
            return try JSONDecoder().decode(Res.self, from: data)
        } catch {
            throw TroupeError.internalError("the result of '\(target.identifier)' is not a \(Res.self): \(error)")
        }
    }

    public func remoteCallVoid<Act, Err>(
        on actor: Act,
        target: RemoteCallTarget,
        invocation: inout TroupeInvocationEncoder,
        throwing: Err.Type
    ) async throws where Act: DistributedActor, Act.ID == TroupeActorID, Err: Error {
        _ = try await send(actor.id, target, invocation)
    }

    private func send(_ id: TroupeActorID, _ target: RemoteCallTarget, _ invocation: TroupeInvocationEncoder)
        async throws -> Data?
    {
        let call = RemoteCallEnvelope(
            recipient: id, target: StableTargets.name(of: target.identifier) ?? target.identifier,
            genericSubstitutions: invocation.genericSubstitutions, arguments: invocation.arguments)
        return try await start(call, deadline: Self.callDeadline ?? .now() + .seconds(30)).get()
    }

    /// Sends `call` to the node of its recipient now, so calls started one after another from one
    /// thread leave in that order. Fails with a ``TroupeError``.
    public func start(_ call: RemoteCallEnvelope, deadline: NIODeadline) -> EventLoopFuture<Data?> {
        guard let transport = transport.withLock({ $0 }) else {
            return DeadlineTimers.loop.makeFailedFuture(noTransport(call.recipient))
        }
        return transport.start(call, to: call.recipient.node, deadline: deadline)
    }

    private func noTransport(_ id: TroupeActorID) -> TroupeError {
        .unavailable(
            "actor \(id) is not active on node \(node), and this sidecar has no cluster transport",
            details: ["actor": id.path, "node": id.node])
    }

    /// Serves an inbound call at once if its target is a stable name with a handler; returns false
    /// otherwise, and the caller runs ``executeRemoteCall(_:)`` (which may wait) instead.
    public func receive(
        _ call: RemoteCallEnvelope, deadline: NIODeadline,
        reply: @escaping @Sendable (Result<Data?, TroupeError>) -> Void
    ) -> Bool {
        guard let handler = stableTargets.withLock({ $0[call.target] }) else { return false }
        handler(call, deadline, reply)
        return true
    }

    /// Executes an inbound remote call on a local actor and returns its encoded result.
    ///
    /// Always answers: an unknown actor, a target outside the allow-list, an undecodable argument
    /// or a thrown error all become a failed result, never silence.
    public func executeRemoteCall(_ call: RemoteCallEnvelope) async -> Result<Data?, TroupeError> {
        guard allowedTargets.withLock({ $0.contains(call.target) }) else {
            return .failure(
                .failedPrecondition("remote target '\(call.target)' is not allowed", details: ["target": call.target]))
        }
        guard let actor = actors.withLock({ $0[call.recipient]?.actor }) else {
            return .failure(.notFound("no actor \(call.recipient) on node \(node)"))
        }
        let outcome = Outcome()
        var decoder = TroupeInvocationDecoder(call)
        do {
            try await executeDistributedTarget(
                on: actor, target: RemoteCallTarget(call.target), invocationDecoder: &decoder,
                handler: TroupeResultHandler(outcome: outcome))
        } catch {
            return .failure(TroupeError(wrapping: error))
        }
        return outcome.result ?? .failure(.internalError("remote target '\(call.target)' produced no result"))
    }
}

private struct WeakActor: Sendable {
    weak var actor: (any DistributedActor)?
}

/// Delivers a remote call to the node that hosts its recipient and brings back the outcome that
/// node produced.
public protocol RemoteCallTransport: Sendable {
    /// Sends `call` to `node` before returning (or queues it behind the connection being set up,
    /// in order), and completes with the encoded result or fails with a ``TroupeError`` by
    /// `deadline` at the latest.
    func start(_ call: RemoteCallEnvelope, to node: String, deadline: NIODeadline) -> EventLoopFuture<Data?>
}

/// Stable names of remote-callable methods, so that nodes of different builds agree on them:
/// Swift's mangled target names change when a module, type, method or label is renamed. Inbound
/// calls of a stable name are dispatched directly (``TroupeActorSystem/serve(stableTarget:with:)``);
/// `executeDistributedTarget` is only the allow-listed fallback for other targets.
public enum StableTargets {
    /// `ActorProcess.invoke(request:)`.
    public static let actorProcessInvoke = "troupe.ActorProcess.invoke"
    /// The active actors of a node: one argument, a serialized `ListActorsRequest`; the value is a
    /// serialized `ListActorsResponse`. Served by ``ActorDirectory``; no distributed method behind it.
    public static let directoryList = "troupe.ActorDirectory.list"
    /// Let go of the actor named by the recipient's path (`SYSTEM/ACTOR`): its running and
    /// queued calls finish, its unsaved state is stored, and the activation ends; answered (with
    /// no value) once the actor is not active on that node. No arguments. Served by
    /// ``ActorDirectory`` for the node that placement moved the actor to.
    public static let directoryRelease = "troupe.ActorDirectory.release"

    /// The mangled identifier of each method with a stable name. A test pins every entry against
    /// the identifier the compiler produces, so a rename fails there, not in a rolling upgrade.
    static let byIdentifier: [String: String] = [
        "$s12TroupeActors12ActorProcessC6invoke7requestSays5UInt8VGAH_tYaKFTE": actorProcessInvoke
    ]

    /// The stable name of the method with mangled identifier `identifier`, if it has one.
    public static func name(of identifier: String) -> String? { byIdentifier[identifier] }
}

/// A remote call as it travels between nodes.
public struct RemoteCallEnvelope: Sendable, Codable, Hashable {
    public var recipient: TroupeActorID
    /// The `RemoteCallTarget.identifier` of the distributed method.
    public var target: String
    public var genericSubstitutions: [String]
    /// Each argument, JSON-encoded.
    public var arguments: [Data]
    /// How many nodes forwarded the call already.
    public var hops: UInt32

    public init(
        recipient: TroupeActorID, target: String, genericSubstitutions: [String] = [], arguments: [Data],
        hops: UInt32 = 0
    ) {
        self.recipient = recipient
        self.target = target
        self.genericSubstitutions = genericSubstitutions
        self.arguments = arguments
        self.hops = hops
    }
}

/// Records a distributed call's arguments for a remote node.
public struct TroupeInvocationEncoder: DistributedTargetInvocationEncoder {
    public typealias SerializationRequirement = any Codable

    public var genericSubstitutions: [String] = []
    public var arguments: [Data] = []

    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        guard let name = _mangledTypeName(type) else {
            throw TroupeError.invalidArgument("type \(type) has no mangled name")
        }
        genericSubstitutions.append(name)
    }

    /// Byte arrays (protobuf messages, mostly) travel as they are; everything else as JSON.
    public mutating func recordArgument<Value: Codable>(_ argument: RemoteCallArgument<Value>) throws {
        if let bytes = argument.value as? [UInt8] {
            arguments.append(Data(bytes))
            return
        }
        arguments.append(try JSONEncoder().encode(argument.value))
    }

    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}
    public mutating func recordReturnType<R: Codable>(_ type: R.Type) throws {}
    public mutating func doneRecording() throws {}
}

/// Reads a remote call's arguments back.
public struct TroupeInvocationDecoder: DistributedTargetInvocationDecoder {
    public typealias SerializationRequirement = any Codable

    private let call: RemoteCallEnvelope
    private var next = 0

    public init(_ call: RemoteCallEnvelope) {
        self.call = call
    }

    public mutating func decodeGenericSubstitutions() throws -> [any Any.Type] {
        try call.genericSubstitutions.map { name in
            guard let type = _typeByName(name) else {
                throw TroupeError.invalidArgument("unknown generic substitution \(name)")
            }
            return type
        }
    }

    public mutating func decodeNextArgument<Argument: Codable>() throws -> Argument {
        guard next < call.arguments.count else {
            throw TroupeError.invalidArgument("remote call to \(call.target) has too few arguments")
        }
        defer { next += 1 }
        if Argument.self == [UInt8].self { return Array(call.arguments[next]) as! Argument }
        do {
            return try JSONDecoder().decode(Argument.self, from: call.arguments[next])
        } catch {
            throw TroupeError.invalidArgument("argument \(next) of \(call.target) is not a \(Argument.self): \(error)")
        }
    }

    public mutating func decodeErrorType() throws -> (any Any.Type)? { nil }
    public mutating func decodeReturnType() throws -> (any Any.Type)? { nil }
}

/// Collects the outcome of ``TroupeActorSystem/executeRemoteCall(_:)``.
final class Outcome: Sendable {
    private let box = Mutex<Result<Data?, TroupeError>?>(nil)
    var result: Result<Data?, TroupeError>? { box.withLock { $0 } }
    func set(_ value: Result<Data?, TroupeError>) { box.withLock { $0 = value } }
}

public struct TroupeResultHandler: DistributedTargetInvocationResultHandler {
    public typealias SerializationRequirement = any Codable
    let outcome: Outcome

    public func onReturn<Success: Codable>(value: Success) async throws {
        if let bytes = value as? [UInt8] {
            outcome.set(.success(Data(bytes)))
            return
        }
        outcome.set(.success(try JSONEncoder().encode(value)))
    }

    public func onReturnVoid() async throws {
        outcome.set(.success(nil))
    }

    public func onThrow<Err: Error>(error: Err) async throws {
        outcome.set(.failure(TroupeError(wrapping: error)))
    }
}
