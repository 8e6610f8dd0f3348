import Distributed
import Foundation
import NIOCore
import Synchronization
import Testing
import TroupeActors
import TroupeTestSupport
import TroupeWire

/// A distributed actor for exercising remote calls.
distributed actor Greeter {
    typealias ActorSystem = TroupeActorSystem

    distributed func greet(_ name: String, times: Int) -> String {
        Array(repeating: "hello \(name)", count: times).joined(separator: ", ")
    }

    distributed func refuse() throws {
        throw TroupeError(.permissionDenied, "not for you")
    }
}

/// Hands calls straight to the other system in the same process, recording their targets, so
/// the encoding, the allow-list and `executeDistributedTarget` run exactly as they will over TCP.
final class LoopbackTransport: RemoteCallTransport {
    let systems: [String: TroupeActorSystem]
    let targets = Mutex<[String]>([])

    init(_ systems: [TroupeActorSystem]) {
        self.systems = Dictionary(uniqueKeysWithValues: systems.map { ($0.node, $0) })
    }

    func start(_ call: RemoteCallEnvelope, to node: String, deadline: NIODeadline) -> EventLoopFuture<Data?> {
        targets.withLock { $0.append(call.target) }
        let promise = NIOSingletons.posixEventLoopGroup.any().makePromise(of: Data?.self)
        guard let system = systems[node] else {
            promise.fail(TroupeError.unavailable("no node \(node)"))
            return promise.futureResult
        }
        promise.completeWithTask {
            // Through the bytes a network would carry.
            let wire = try JSONDecoder().decode(RemoteCallEnvelope.self, from: JSONEncoder().encode(call))
            return try await system.executeRemoteCall(wire).get()
        }
        return promise.futureResult
    }
}

@Suite("Remote calls through TroupeActorSystem")
struct RemoteCallTests {
    @Test func aRemoteCallRunsOnlyForAllowedTargetsAndReturnsItsResult() async throws {
        let local = TroupeActorSystem(node: "a")
        let remote = TroupeActorSystem(node: "b")
        let transport = LoopbackTransport([local, remote])
        local.attach(transport: transport)
        let id = TroupeActorID(node: "b", path: "test/greeter")
        let greeter = TroupeActorSystem.$preassignedID.withValue(id) { Greeter(actorSystem: remote) }
        let reference = try Greeter.resolve(id: id, using: local)
        #expect(!isLocal(reference))

        // Targets from the network are untrusted: nothing runs until allowed.
        await expectCode(.failedPrecondition) { _ = try await reference.greet("ann", times: 2) }
        let target = try #require(transport.targets.withLock { $0.first })
        remote.allowRemoteTarget(target)
        #expect(try await reference.greet("ann", times: 2) == "hello ann, hello ann")
        withExtendedLifetime(greeter) {}
    }

    @Test func errorsThrownRemotelyKeepTheirStatus() async throws {
        let local = TroupeActorSystem(node: "a")
        let remote = TroupeActorSystem(node: "b")
        let transport = LoopbackTransport([local, remote])
        local.attach(transport: transport)
        let id = TroupeActorID(node: "b", path: "test/greeter")
        let greeter = TroupeActorSystem.$preassignedID.withValue(id) { Greeter(actorSystem: remote) }
        let reference = try Greeter.resolve(id: id, using: local)
        await expectCode(.failedPrecondition) { try await reference.refuse() }
        remote.allowRemoteTarget(try #require(transport.targets.withLock { $0.last }))
        await expectCode(.permissionDenied) { try await reference.refuse() }
        withExtendedLifetime(greeter) {}
    }

    @Test func callsToAnActorThatIsNotThereAreNotFoundAndWithoutTransportUnavailable() async throws {
        let local = TroupeActorSystem(node: "a")
        let remote = TroupeActorSystem(node: "b")
        let missing = try Greeter.resolve(id: TroupeActorID(node: "b", path: "test/nobody"), using: local)
        await expectCode(.unavailable) { _ = try await missing.greet("x", times: 1) }
        let transport = LoopbackTransport([local, remote])
        local.attach(transport: transport)
        await expectCode(.failedPrecondition) { _ = try await missing.greet("x", times: 1) }
        remote.allowRemoteTarget(try #require(transport.targets.withLock { $0.first }))
        await expectCode(.notFound) { _ = try await missing.greet("x", times: 1) }
    }
}

@Suite("Stable target names")
struct StableTargetTests {
    /// The hand-kept table maps ActorProcess.invoke's mangled identifier to its stable name. If this
    /// fails, the method was renamed or changed: update the identifier in `StableTargets`, never
    /// the stable name, which nodes of other builds rely on.
    @Test func actorProcessInvokeTravelsUnderItsStableName() async throws {
        let local = TroupeActorSystem(node: "a")
        let transport = LoopbackTransport([local, TroupeActorSystem(node: "b")])
        local.attach(transport: transport)
        let process = try ActorProcess.resolve(id: TroupeActorID(node: "b", path: "test/anyone"), using: local)
        _ = try? await process.invoke(request: [])
        let identifier = try #require(transport.targets.withLock { $0.first })
        #expect(identifier == StableTargets.actorProcessInvoke)
    }
}

private func isLocal(_ actor: Greeter) -> Bool {
    __isLocalActor(actor)
}
