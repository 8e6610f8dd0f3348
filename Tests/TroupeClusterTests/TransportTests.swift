import Distributed
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeTestSupport
import TroupeActors
import TroupeCluster
import TroupeMembership
import TroupeTestActors
import TroupeWire

/// Reports the node it runs on.
distributed actor Locator {
    typealias ActorSystem = TroupeActorSystem

    distributed func node() -> String { actorSystem.node }
}

/// A stable target whose calls are never answered, to watch deadlines and failures.
final class Silent: Sendable {
    let received = Atomic<Int>(0)
    let replies = Mutex<[@Sendable (Result<Data?, TroupeError>) -> Void]>([])

    func serve(on system: TroupeActorSystem) {
        system.serve(stableTarget: "test.silent") { _, _, reply in
            self.replies.withLock { $0.append(reply) }
            self.received.add(1, ordering: .relaxed)
        }
    }
}

@Suite("Cluster transport over TCP on 127.0.0.1", .serialized)
struct TransportTests {
    @Test func aDistributedActorOnAnotherNodeIsCalledOnlyForAllowedTargets() async throws {
        try await withNodes(["a", "b"]) { nodes in
            let id = TroupeActorID(node: "b", path: "test/locator")
            let locator = TroupeActorSystem.$preassignedID.withValue(id) { Locator(actorSystem: nodes[1].system) }
            let remote = try Locator.resolve(id: id, using: nodes[0].system)
            let refusal = await #expect(throws: TroupeError.self) { try await remote.node() }
            #expect(refusal?.code == .failedPrecondition)
            let target = try #require(refusal?.details["target"])
            nodes[1].system.allowRemoteTarget(target)
            #expect(try await remote.node() == "b")
            withExtendedLifetime(locator) {}
        }
    }

    @Test func stableTargetsAreServedDirectlyAndAnswerInOrder() async throws {
        try await withNodes(["a", "b"]) { nodes in
            nodes[1].system.serve(stableTarget: "test.double") { call, _, reply in
                let value = Int(String(decoding: call.arguments[0], as: UTF8.self)) ?? -1
                reply(.success(Data("\(value * 2)".utf8)))
            }
            let futures = (0..<50).map { index in
                nodes[0].system.start(
                    RemoteCallEnvelope(
                        recipient: TroupeActorID(node: "b", path: "test/x"), target: "test.double",
                        arguments: [Data("\(index)".utf8)]), deadline: .now() + .seconds(10))
            }
            for (index, future) in futures.enumerated() {
                let data = try #require(try await future.get())
                #expect(String(decoding: data, as: UTF8.self) == "\(index * 2)")
            }
        }
    }

    @Test func callsToAnUnknownNodeAreUnavailable() async throws {
        try await withNodes(["a"]) { nodes in
            let error = await #expect(throws: TroupeError.self) {
                try await nodes[0].system.start(
                    RemoteCallEnvelope(recipient: TroupeActorID(node: "nobody", path: "x"), target: "t", arguments: []),
                    deadline: .now() + .seconds(5)
                ).get()
            }
            #expect(error?.code == .unavailable)
        }
    }

    @Test func aCallPastItsDeadlineFailsWithDeadlineExceededAndTheConnectionStaysUsable() async throws {
        try await withNodes(["a", "b"]) { nodes in
            let silent = Silent()
            silent.serve(on: nodes[1].system)
            nodes[1].system.serve(stableTarget: "test.echo") { call, _, reply in reply(.success(call.arguments[0])) }
            let error = await #expect(throws: TroupeError.self) {
                try await nodes[0].system.start(
                    RemoteCallEnvelope(
                        recipient: TroupeActorID(node: "b", path: "x"), target: "test.silent", arguments: []),
                    deadline: .now() + .milliseconds(200)
                ).get()
            }
            #expect(error?.code == .deadlineExceeded)
            // The late answer is dropped on the callee side (the caller sent a cancel); it breaks nothing.
            for reply in silent.replies.withLock({ $0 }) { reply(.success(Data("late".utf8))) }
            let echoed = try await nodes[0].system.start(
                RemoteCallEnvelope(
                    recipient: TroupeActorID(node: "b", path: "x"), target: "test.echo", arguments: [Data("hi".utf8)]),
                deadline: .now() + .seconds(10)
            ).get()
            #expect(echoed == Data("hi".utf8))
        }
    }

    /// The handshake timeout closes only connections that never finished their handshake.
    @Test func anEstablishedConnectionOutlivesTheHandshakeTimeout() async throws {
        // Long enough for a handshake on a loaded machine; the call outlives it five times over.
        try await withNodes(["a", "b"], handshakeTimeout: .milliseconds(250)) { nodes in
            Silent().serve(on: nodes[1].system)
            let error = await #expect(throws: TroupeError.self) {
                try await nodes[0].system.start(
                    RemoteCallEnvelope(
                        recipient: TroupeActorID(node: "b", path: "x"), target: "test.silent", arguments: []),
                    deadline: .now() + .milliseconds(1250)
                ).get()
            }
            #expect(
                error?.code == .deadlineExceeded,
                "the connection was closed under the call: \(String(describing: error))")
        }
    }

    @Test func everyCallWaitingOnANodeFailsAtOnceWhenItIsDeclaredDown() async throws {
        try await withNodes(["a", "b"]) { nodes in
            let silent = Silent()
            silent.serve(on: nodes[1].system)
            let calls = (0..<3).map { _ in
                nodes[0].system.start(
                    RemoteCallEnvelope(
                        recipient: TroupeActorID(node: "b", path: "x"), target: "test.silent", arguments: []),
                    deadline: .now() + .seconds(60))
            }
            try await waitFor("the calls to arrive") { silent.received.load(ordering: .relaxed) == 3 }
            nodes[0].transport.nodeDown(nodes[1].identity)
            for call in calls {
                let error = await #expect(throws: TroupeError.self) { try await call.get() }
                #expect(error?.code == .unavailable)
            }
        }
    }

    @Test func aNodeOfAnotherActorSystemIsRefusedWithAReason() async throws {
        try await withNodes(["a"]) { nodes in
            try await withNodes(["stranger"], system: "other") { others in
                let error = await #expect(throws: TroupeError.self) {
                    try await nodes[0].transport.identify(others[0].identity.address).get()
                }
                #expect(error?.code == .failedPrecondition)
                #expect(error?.message.contains("other") == true || error?.message.contains("cluster") == true)
            }
        }
    }

    @Test func callsWaitingOnAPeerThatStopsFailAndTheLinkReconnectsWhenItIsBack() async throws {
        try await withNodes(["a"]) { nodes in
            let port = try LoopbackPort.free()
            let identity = NodeIdentity(name: "b", address: "127.0.0.1:\(port)", uid: 1)
            nodes[0].transport.setAddress(of: identity)
            let call = RemoteCallEnvelope(
                recipient: TroupeActorID(node: "b", path: "x"), target: "test.echo", arguments: [Data("1".utf8)])
            try await withNodes([identity]) { first in
                first[0].system.serve(stableTarget: "test.silent") { _, _, _ in }
                first[0].system.serve(stableTarget: "test.echo") { call, _, reply in reply(.success(call.arguments[0]))
                }
                let echoed = try await nodes[0].system.start(call, deadline: .now() + .seconds(10)).get()
                #expect(echoed == Data("1".utf8))
                let waiting = nodes[0].system.start(
                    RemoteCallEnvelope(
                        recipient: TroupeActorID(node: "b", path: "x"), target: "test.silent", arguments: []),
                    deadline: .now() + .seconds(60))
                first[0].stop()
                let error = await #expect(throws: TroupeError.self) { try await waiting.get() }
                #expect(error?.code == .unavailable)
            }
            // The same node comes back on the same address; the link reconnects after its backoff.
            try await withNodes([identity]) { second in
                second[0].system.serve(stableTarget: "test.echo") { call, _, reply in reply(.success(call.arguments[0]))
                }
                try await waitFor("the link to reconnect") {
                    (try? await nodes[0].system.start(call, deadline: .now() + .seconds(2)).get()) == Data("1".utf8)
                }
            }
        }
    }
}

// MARK: Harness

struct TestNode: Sendable {
    let identity: NodeIdentity
    let system: TroupeActorSystem
    let transport: ClusterTransport
    let task: Task<Void, any Error>

    func stop() { task.cancel() }
}

func withNodes(
    _ names: [String], system: String = "test", handshakeTimeout: TimeAmount = .seconds(2),
    maxFrameBytes: UInt32 = ClusterProtocol.maxFrameBytes, maxBufferedBytes: Int? = nil,
    _ body: ([TestNode]) async throws -> Void
) async throws {
    // A port found free may be taken by a parallel test before the node binds it: then the
    // nodes start again on new ports, three times at most, before `body` ever runs.
    for attempt in 1...3 {
        var identities: [NodeIdentity] = []
        for (index, name) in names.enumerated() {
            identities.append(
                NodeIdentity(name: name, address: "127.0.0.1:\(try LoopbackPort.free())", uid: UInt64(index + 1)))
        }
        do {
            try await withNodes(
                identities, system: system, handshakeTimeout: handshakeTimeout, maxFrameBytes: maxFrameBytes,
                maxBufferedBytes: maxBufferedBytes, body)
            return
        } catch is PortTaken where attempt < 3 {
            continue
        }
    }
}

/// A node did not come to listen on its port.
struct PortTaken: Error {}

func withNodes(
    _ identities: [NodeIdentity], system: String = "test", handshakeTimeout: TimeAmount = .seconds(2),
    maxFrameBytes: UInt32 = ClusterProtocol.maxFrameBytes, maxBufferedBytes: Int? = nil,
    _ body: ([TestNode]) async throws -> Void
) async throws {
    var logger = Logger(label: "test.cluster")
    logger.logLevel = .warning
    let nodes = identities.map { identity in
        let actorSystem = TroupeActorSystem(node: identity.name)
        let (host, port) = ClusterTransport.split(identity.address)!
        var configuration = ClusterTransport.Configuration(
            system: system, myself: identity, listenHost: host, listenPort: port)
        configuration.handshakeTimeout = handshakeTimeout
        configuration.maxFrameBytes = maxFrameBytes
        configuration.maxBufferedBytes = maxBufferedBytes
        let transport = ClusterTransport(
            configuration: configuration, actorSystem: actorSystem, group: MultiThreadedEventLoopGroup.singleton,
            logger: logger)
        let task = Task { try await transport.run() }
        return TestNode(identity: identity, system: actorSystem, transport: transport, task: task)
    }
    defer { for node in nodes { node.stop() } }
    for node in nodes {
        do {
            try await waitFor("node \(node.identity.name) to listen") { node.transport.boundPort != nil }
        } catch {
            throw PortTaken()
        }
        for other in nodes where other.identity != node.identity {
            node.transport.setAddress(of: other.identity)
        }
    }
    try await body(nodes)
    for node in nodes {
        node.stop()
        _ = await node.task.result
    }
}

/// Polls `condition` every 20 ms for at most `timeout`.
func waitFor(_ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TroupeError.deadlineExceeded("timed out waiting for \(what)")
}
