import Foundation
import InMemoryTracing
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeActors
import TroupeCluster
import TroupeMembership
import TroupeProto
import TroupeStore
import TroupeTestActors
import TroupeTestSupport
import TroupeTracing
import TroupeWire

/// Places every actor on one node.
private struct FixedOwner: InvocationRouter {
    let owner: String
    func remoteOwner(of actor: ActorKey, spawnFrom: String) -> String? { owner }
}

/// An actor host in the test process: each action replies with the `traceparent` it was invoked
/// with, so the test sees the trace context a host receives.
private final class TraceparentEchoHost: ActorHost {
    let hostName = "traceparent-echo"
    let eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()

    func invoke(_ invocation: WireActorInvocation, timeout: TimeAmount) -> EventLoopFuture<WireActorInvocationResult> {
        var result = WireActorInvocationResult()
        result.reply.typeURL = "text/plain"
        result.reply.value = Data((invocation.metadata[TraceHeaders.traceparent] ?? "").utf8)
        return eventLoop.makeSucceededFuture(result)
    }
}

@Suite("Spans of a call forwarded to the owning node", .serialized)
struct TracingForwardTests {
    @Test func aForwardIsAClientSpanOnTheCallerWhoseChildIsTheOwnersServeSpanAndActorTurn() async throws {
        // The ports are picked before the transports bind them: a parallel test may take one in
        // between, and then the scenario runs again on new ports.
        for attempt in 1...3 {
            do {
                return try await forwardScenario()
            } catch let error as TroupeError where error.message.contains("to listen") && attempt < 3 {
                continue
            }
        }
    }

    private func forwardScenario() async throws {
        let tracer = W3CTestTracer()
        var logger = Logger(label: "test.tracing")
        logger.logLevel = .warning
        let identities = [
            NodeIdentity(name: "a", address: "127.0.0.1:\(try LoopbackPort.free())", uid: 1),
            NodeIdentity(name: "b", address: "127.0.0.1:\(try LoopbackPort.free())", uid: 2),
        ]
        let directories = identities.map { identity in
            var configuration = ActorDirectory.Configuration(system: "test", node: identity.name)
            configuration.tracer = tracer
            return ActorDirectory(configuration: configuration, store: MemoryStateStore(), logger: logger)
        }
        let transports = zip(identities, directories).map { identity, directory in
            let (host, port) = ClusterTransport.split(identity.address)!
            return ClusterTransport(
                configuration: .init(system: "test", myself: identity, listenHost: host, listenPort: port),
                actorSystem: directory.actorSystem, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for transport in transports { group.addTask { try await transport.run() } }
            for directory in directories { group.addTask { try await directory.run() } }
            for (index, transport) in transports.enumerated() {
                try await waitFor("node \(identities[index].name) to listen", timeout: .seconds(10)) {
                    transport.boundPort != nil
                }
                transport.setAddress(of: identities[1 - index])
            }
            var echo = WireActorDefinition()
            echo.name = "echo"
            echo.kind = .named
            echo.actions = ["trace"]
            try directories[1].register([echo], host: TraceparentEchoHost())
            directories[0].route(with: FixedOwner(owner: "b"))

            let caller = TraceParent.random()
            let reply = try await directories[0].invoke(
                Invocation(
                    actor: ActorKey(system: "test", name: "echo"), action: "trace",
                    metadata: [TraceHeaders.traceparent: caller.header], deadline: .now() + .seconds(20)))
            let seen = try #require(TraceParent(String(decoding: reply.value, as: UTF8.self)))

            var spans: [FinishedInMemorySpan] = []
            try await waitFor("three finished spans", timeout: .seconds(10)) {
                spans = tracer.finishedSpans
                return spans.count >= 3
            }
            let forward = try #require(spans.first { $0.operationName == TroupeSpan.clusterForward })
            let serve = try #require(spans.first { $0.operationName == TroupeSpan.clusterServe })
            let turn = try #require(spans.first { $0.operationName == TroupeSpan.actorTurn })
            #expect(Set(spans.map(\.traceID)) == [caller.traceID])
            #expect(forward.parentSpanID == caller.spanID)
            #expect(forward.kind == .client)
            #expect(attribute(forward, TroupeSpanAttribute.node) == "a")
            #expect(attribute(forward, TroupeSpanAttribute.peer) == "b")
            #expect(serve.parentSpanID == forward.spanID)
            #expect(serve.kind == .server)
            #expect(attribute(serve, TroupeSpanAttribute.node) == "b")
            #expect(turn.parentSpanID == serve.spanID)
            #expect(attribute(turn, TroupeSpanAttribute.actorType) == "echo")
            #expect(seen.traceID == caller.traceID)
            #expect(seen.spanID == turn.spanID)
            group.cancelAll()
        }
    }
}

private func attribute(_ span: FinishedInMemorySpan, _ key: String) -> String? {
    guard case .string(let value)? = span.attributes[key]?.toSpanAttribute() else { return nil }
    return value
}
