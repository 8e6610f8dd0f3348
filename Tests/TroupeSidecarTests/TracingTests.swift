import InMemoryTracing
import Testing
import Tracing
import Troupe
import TroupeTestActors
import TroupeTestSupport
import TroupeTracing

@Suite("Spans and W3C trace context of calls through an in-process sidecar")
struct TracingTests {
    @Test func aHostCallContinuesTheCallersTraceAsAnInvokeSpanWithTheActorTurnAsItsChild() async throws {
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client()
            let seen: [String: String] = try await client.invoke(
                "echo", action: "metadata", NoPayload(),
                metadata: [TraceHeaders.traceparent: caller.header, TraceHeaders.tracestate: "vendor=1"])
            let spans = try await finished(tracer, [TroupeSpan.invoke, TroupeSpan.actorTurn])
            let (invoke, turn) = (spans[0], spans[1])

            #expect(invoke.traceID == caller.traceID)
            #expect(invoke.parentSpanID == caller.spanID)
            #expect(invoke.kind == .server)
            #expect(turn.traceID == caller.traceID)
            #expect(turn.parentSpanID == invoke.spanID)
            #expect(turn.kind == .client)
            #expect(string(turn, TroupeSpanAttribute.actorType) == "echo")
            #expect(string(turn, TroupeSpanAttribute.actorID) == "echo")
            #expect(string(turn, TroupeSpanAttribute.action) == "metadata")
            #expect(string(turn, TroupeSpanAttribute.system) == "test")
            #expect(string(turn, TroupeSpanAttribute.node) == "test-node")
            #expect(string(invoke, TroupeSpanAttribute.status) == "ok")
            #expect(string(turn, TroupeSpanAttribute.status) == "ok")

            // The actor runs in the same trace, as a child of its turn; tracestate travels unchanged.
            let parent = try #require(seen[TraceHeaders.traceparent].flatMap(TraceParent.init))
            #expect(parent.traceID == caller.traceID)
            #expect(parent.spanID == turn.spanID)
            #expect(seen[TraceHeaders.tracestate] == "vendor=1")
            await client.close()
        }
    }

    @Test func aCallWithoutTraceContextStartsANewTrace() async throws {
        let tracer = W3CTestTracer()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client()
            let seen: [String: String] = try await client.invoke("echo", action: "metadata", NoPayload())
            let spans = try await finished(tracer, [TroupeSpan.invoke, TroupeSpan.actorTurn])
            #expect(spans[0].parentSpanID == nil)
            #expect(spans[1].traceID == spans[0].traceID)
            let parent = try #require(seen[TraceHeaders.traceparent].flatMap(TraceParent.init))
            #expect(parent.traceID == spans[0].traceID)
            #expect(parent.spanID == spans[1].spanID)
            await client.close()
        }
    }

    @Test func aFirstCallShowsTheActivationAndAWriteThroughTurnItsStateWriteAsChildSpans() async throws {
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client()
            let value: Int = try await client.invoke(
                "counter", action: "add", 2, metadata: [TraceHeaders.traceparent: caller.header])
            #expect(value == 2)
            let spans = try await finished(
                tracer, [TroupeSpan.invoke, TroupeSpan.actorActivate, TroupeSpan.actorTurn, TroupeSpan.stateWrite])
            let (invoke, activate, turn, write) = (spans[0], spans[1], spans[2], spans[3])
            #expect(activate.traceID == caller.traceID)
            #expect(activate.parentSpanID == invoke.spanID)
            #expect(string(activate, TroupeSpanAttribute.actorType) == "counter")
            #expect(string(activate, TroupeSpanAttribute.action) == "add")
            #expect(string(activate, TroupeSpanAttribute.status) == "ok")
            #expect(turn.parentSpanID == invoke.spanID)
            #expect(write.traceID == caller.traceID)
            #expect(write.parentSpanID == turn.spanID)
            #expect(write.kind == .client)
            #expect(string(write, TroupeSpanAttribute.actorType) == "counter")
            #expect(string(write, TroupeSpanAttribute.status) == "ok")

            // The actor is active now: the next call writes its state again, and activates nothing.
            let next: Int = try await client.invoke("counter", action: "add", 1)
            #expect(next == 3)
            _ = try await finished(tracer, [TroupeSpan.stateWrite], count: 2)
            #expect(tracer.finishedSpans.filter { $0.operationName == TroupeSpan.actorActivate }.count == 1)
            await client.close()
        }
    }

    @Test func aBroadcastIsASpanBetweenTheBroadcasterAndEachListenersTurn() async throws {
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client()
            let sent = try await client.broadcast(
                "news", action: "hear", "hello", metadata: [TraceHeaders.traceparent: caller.header])
            #expect(sent.localListeners == 1)
            let spans = try await finished(tracer, [TroupeSpan.broadcast, TroupeSpan.actorTurn])
            let (broadcast, turn) = (spans[0], spans[1])
            #expect(broadcast.traceID == caller.traceID)
            #expect(broadcast.parentSpanID == caller.spanID)
            #expect(broadcast.kind == .producer)
            #expect(string(broadcast, TroupeSpanAttribute.channel) == "news")
            #expect(string(broadcast, TroupeSpanAttribute.action) == "hear")
            #expect(string(broadcast, TroupeSpanAttribute.status) == "ok")
            // A client's broadcast comes from no actor.
            #expect(broadcast.attributes[TroupeSpanAttribute.actorID] == nil)
            #expect(broadcast.attributes[TroupeSpanAttribute.listeners]?.toSpanAttribute() == .int64(1))
            #expect(turn.traceID == caller.traceID)
            #expect(turn.parentSpanID == broadcast.spanID)
            #expect(string(turn, TroupeSpanAttribute.actorID) == "listener")
            await client.close()
        }
    }

    @Test func aFailedCallEndsItsSpansWithTheErrorStatus() async throws {
        let tracer = W3CTestTracer()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client()
            await expectCode(.failedPrecondition) {
                try await client.invoke(
                    "echo", action: "fail", TroupeError.Code.failedPrecondition.rawValue, as: String.self)
            }
            let spans = try await finished(tracer, [TroupeSpan.invoke, TroupeSpan.actorTurn])
            for span in spans {
                #expect(string(span, TroupeSpanAttribute.status) == "failedPrecondition")
                #expect(span.status?.code == .error)
            }
            await client.close()
        }
    }

    @Test func callsAnActorMakesFromItsActionContinueItsTrace() async throws {
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client()
            let answer: String = try await client.invoke(
                "relay", action: "call", RelayRequest(system: "test", actor: "echo", action: "echo", text: "hi"),
                metadata: [TraceHeaders.traceparent: caller.header])
            #expect(answer == "hi")
            let spans = try await finished(tracer, [TroupeSpan.invoke, TroupeSpan.actorTurn], count: 4)
            let relayTurn = try #require(
                spans.first {
                    string($0, TroupeSpanAttribute.actorID) == "relay" && $0.operationName == TroupeSpan.actorTurn
                })
            let echoInvoke = try #require(
                spans.first {
                    string($0, TroupeSpanAttribute.actorID) == "echo" && $0.operationName == TroupeSpan.invoke
                })
            let echoTurn = try #require(
                spans.first {
                    string($0, TroupeSpanAttribute.actorID) == "echo" && $0.operationName == TroupeSpan.actorTurn
                })
            #expect(Set(spans.map(\.traceID)) == [caller.traceID])
            // The SDK sent the relay's trace context with its call to echo.
            #expect(echoInvoke.parentSpanID == relayTurn.spanID)
            #expect(echoTurn.parentSpanID == echoInvoke.spanID)
            await client.close()
        }
    }

    @Test func aCallToAnotherSystemIsABridgeCallSpanWhoseChildIsThatSystemsBridgeServeSpan() async throws {
        let tracer = W3CTestTracer()
        let server = try NATSServer()
        defer { server.stop() }
        let caller = TraceParent.random()
        try await withSidecar(system: "alpha", tracer: tracer, configure: bridged(to: server.url)) { alpha in
            try await withSidecar(system: "beta", tracer: tracer, configure: bridged(to: server.url)) { _ in
                let client = try await alpha.client()
                let seen: [String: String] = try await client.invoke(
                    "echo", action: "metadata", NoPayload(), system: "beta",
                    metadata: [TraceHeaders.traceparent: caller.header])
                let spans = try await finished(
                    tracer, [TroupeSpan.invoke, TroupeSpan.bridgeCall, TroupeSpan.bridgeServe, TroupeSpan.actorTurn])
                let (invoke, call, serve, turn) = (spans[0], spans[1], spans[2], spans[3])
                #expect(Set(spans.map(\.traceID)) == [caller.traceID])
                #expect(invoke.parentSpanID == caller.spanID)
                #expect(call.parentSpanID == invoke.spanID)
                #expect(call.kind == .client)
                #expect(string(call, TroupeSpanAttribute.system) == "alpha")
                #expect(string(call, TroupeSpanAttribute.peer) == "beta")
                #expect(serve.parentSpanID == call.spanID)
                #expect(serve.kind == .server)
                #expect(string(serve, TroupeSpanAttribute.system) == "beta")
                #expect(string(serve, TroupeSpanAttribute.peer) == "alpha")
                #expect(turn.parentSpanID == serve.spanID)
                #expect(string(turn, TroupeSpanAttribute.system) == "beta")
                #expect(seen[TraceHeaders.traceparent].flatMap(TraceParent.init)?.spanID == turn.spanID)
                await client.close()
            }
        }
    }

    @Test func aBroadcastThatCrossesSystemsIsAConsumerSpanThereAChildOfTheBroadcastersSpan() async throws {
        let tracer = W3CTestTracer()
        let server = try NATSServer()
        defer { server.stop() }
        let caller = TraceParent.random()
        try await withSidecar(system: "alpha", tracer: tracer, configure: bridged(to: server.url)) { alpha in
            try await withSidecar(system: "beta", tracer: tracer, configure: bridged(to: server.url)) { _ in
                let client = try await alpha.client()
                let sent = try await client.broadcast(
                    "news", action: "hear", "hello", metadata: [TraceHeaders.traceparent: caller.header])
                #expect(sent.bridged)
                let spans = try await finished(tracer, [TroupeSpan.broadcast, TroupeSpan.actorTurn], count: 4)
                func span(_ name: String, in system: String) throws -> FinishedInMemorySpan {
                    try #require(
                        spans.first { $0.operationName == name && string($0, TroupeSpanAttribute.system) == system })
                }
                let sending = try span(TroupeSpan.broadcast, in: "alpha")
                let receiving = try span(TroupeSpan.broadcast, in: "beta")
                #expect(Set(spans.map(\.traceID)) == [caller.traceID])
                #expect(sending.parentSpanID == caller.spanID)
                #expect(sending.kind == .producer)
                #expect(receiving.parentSpanID == sending.spanID)
                #expect(receiving.kind == .consumer)
                #expect(string(receiving, TroupeSpanAttribute.channel) == "news")
                #expect(try span(TroupeSpan.actorTurn, in: "alpha").parentSpanID == sending.spanID)
                #expect(try span(TroupeSpan.actorTurn, in: "beta").parentSpanID == receiving.spanID)
                await client.close()
            }
        }
    }

    @Test func withoutATracerTraceHeadersReachTheActorUnchanged() async throws {
        let caller = TraceParent.random()
        try await withSidecar { harness in
            let client = try await harness.client()
            let seen: [String: String] = try await client.invoke(
                "echo", action: "metadata", NoPayload(),
                metadata: [TraceHeaders.traceparent: caller.header, TraceHeaders.tracestate: "vendor=1"])
            #expect(seen[TraceHeaders.traceparent] == caller.header)
            #expect(seen[TraceHeaders.tracestate] == "vendor=1")
            await client.close()
        }
    }
}

/// The finished spans named `names` (at least `count` of them), once they have all ended.
func finished(_ tracer: W3CTestTracer, _ names: Set<String>, count: Int? = nil) async throws -> [FinishedInMemorySpan] {
    let wanted = count ?? names.count
    var spans: [FinishedInMemorySpan] = []
    try await waitFor("\(wanted) finished spans named \(names.sorted())", timeout: .seconds(10)) {
        spans = tracer.finishedSpans.filter { names.contains($0.operationName) }
        return spans.count >= wanted
    }
    // In the order of `names` where there is one of each: invoke before turn, and so on.
    return spans.sorted { order($0.operationName) < order($1.operationName) }
}

private func order(_ name: String) -> Int {
    [
        TroupeSpan.clientInvoke, TroupeSpan.invoke, TroupeSpan.bridgeCall, TroupeSpan.bridgeServe,
        TroupeSpan.clusterForward, TroupeSpan.clusterServe, TroupeSpan.broadcast, TroupeSpan.actorActivate,
        TroupeSpan.actorTurn,
        TroupeSpan.hostAction, TroupeSpan.stateWrite,
    ].firstIndex(of: name) ?? .max
}

/// A string attribute of a finished span.
func string(_ span: FinishedInMemorySpan, _ key: String) -> String? {
    guard case .string(let value)? = span.attributes[key]?.toSpanAttribute() else { return nil }
    return value
}
