import InMemoryTracing
import Testing
import Tracing
import Troupe
import TroupeTestActors
import TroupeTestSupport
import TroupeTracing

@Suite("Client and host spans of the Swift SDK around the sidecar's spans")
struct SDKSpanTests {
    @Test func aClientCallIsAClientSpanThatParentsTheSidecarsSpansAndTheHostsActionSpan() async throws {
        let tracer = W3CTestTracer()
        try await withSidecar(tracer: tracer, hostTracer: tracer) { harness in
            let client = try await harness.client(tracer: tracer)
            let seen: [String: String] = try await client.invoke("echo", action: "metadata", NoPayload())
            let spans = try await finished(
                tracer, [TroupeSpan.clientInvoke, TroupeSpan.invoke, TroupeSpan.actorTurn, TroupeSpan.hostAction])
            let (call, invoke, turn, action) = (spans[0], spans[1], spans[2], spans[3])

            #expect(Set(spans.map(\.traceID)).count == 1, "one trace from the client to the action")
            #expect(call.parentSpanID == nil)
            #expect(call.kind == .client)
            #expect(string(call, TroupeSpanAttribute.actorID) == "echo")
            #expect(string(call, TroupeSpanAttribute.action) == "metadata")
            #expect(string(call, TroupeSpanAttribute.status) == "ok")
            #expect(invoke.parentSpanID == call.spanID)
            #expect(turn.parentSpanID == invoke.spanID)
            #expect(action.parentSpanID == turn.spanID)
            #expect(action.kind == .server)
            #expect(string(action, TroupeSpanAttribute.actorType) == "echo")
            #expect(string(action, TroupeSpanAttribute.system) == "test")
            #expect(string(action, TroupeSpanAttribute.status) == "ok")
            // The action was called with its turn's context.
            #expect(seen[TraceHeaders.traceparent].flatMap(TraceParent.init)?.spanID == turn.spanID)
            await client.close()
        }
    }

    @Test func aClientSpanContinuesATraceparentTheCallerPutIntoTheMetadata() async throws {
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        try await withSidecar(tracer: tracer) { harness in
            let client = try await harness.client(tracer: tracer)
            let _: String = try await client.invoke(
                "echo", action: "echo", "hi", metadata: [TraceHeaders.traceparent: caller.header])
            let spans = try await finished(tracer, [TroupeSpan.clientInvoke, TroupeSpan.invoke])
            #expect(spans[0].traceID == caller.traceID)
            #expect(spans[0].parentSpanID == caller.spanID)
            #expect(spans[1].parentSpanID == spans[0].spanID)
            await client.close()
        }
    }

    @Test func aCallAnActionMakesIsAClientSpanInsideThatActionsHostSpan() async throws {
        let tracer = W3CTestTracer()
        try await withSidecar(tracer: tracer, hostTracer: tracer) { harness in
            let client = try await harness.client(tracer: tracer)
            let answer: String = try await client.invoke(
                "relay", action: "call", RelayRequest(system: "test", actor: "echo", action: "echo", text: "hi"))
            #expect(answer == "hi")
            let spans = try await finished(
                tracer, [TroupeSpan.clientInvoke, TroupeSpan.invoke, TroupeSpan.hostAction], count: 6)
            func span(_ name: String, _ actor: String) throws -> FinishedInMemorySpan {
                try #require(
                    spans.first { $0.operationName == name && string($0, TroupeSpanAttribute.actorID) == actor },
                    "\(name) of \(actor)")
            }
            let relayAction = try span(TroupeSpan.hostAction, "relay")
            let relayCall = try span(TroupeSpan.clientInvoke, "echo")
            let echoInvoke = try span(TroupeSpan.invoke, "echo")
            let echoAction = try span(TroupeSpan.hostAction, "echo")
            #expect(Set(spans.map(\.traceID)).count == 1)
            #expect(relayCall.parentSpanID == relayAction.spanID)
            #expect(echoInvoke.parentSpanID == relayCall.spanID)
            #expect(echoAction.traceID == relayAction.traceID)
            await client.close()
        }
    }

    @Test func aFailedCallEndsTheClientAndHostSpansWithItsStatus() async throws {
        let tracer = W3CTestTracer()
        try await withSidecar(tracer: tracer, hostTracer: tracer) { harness in
            let client = try await harness.client(tracer: tracer)
            await expectCode(.failedPrecondition) {
                try await client.invoke(
                    "echo", action: "fail", TroupeError.Code.failedPrecondition.rawValue, as: String.self)
            }
            let spans = try await finished(tracer, [TroupeSpan.clientInvoke, TroupeSpan.hostAction])
            for span in spans {
                #expect(string(span, TroupeSpanAttribute.status) == "failedPrecondition", "\(span.operationName)")
                #expect(span.status?.code == .error)
            }
            await client.close()
        }
    }
}
