import Logging
import Testing
import Tracing
import Troupe
import TroupeTestActors
import TroupeTestSupport
import TroupeTracing

@Suite("Log lines carry the trace id of the call they are about")
struct TraceLogTests {
    @Test func aFailedCallIsLoggedAtDebugWithTheTraceAndSpanItCameWith() async throws {
        let logs = RecordedLogs()
        let caller = TraceParent.random()
        try await withSidecar(logger: .recording("test.sidecar", into: logs, level: .debug)) { harness in
            let client = try await harness.client()
            await expectCode(.notFound) {
                try await client.invoke(
                    "echo", action: "no-such-action", NoPayload(), as: String.self,
                    metadata: [TraceHeaders.traceparent: caller.header])
            }
            let line = try #require(logs.entries("call failed").first)
            #expect(line.level == .debug)
            #expect(line.metadata[TraceLogMetadata.traceIDKey] == "\(caller.traceID)")
            #expect(line.metadata[TraceLogMetadata.spanIDKey] == "\(caller.spanID)")
            #expect(line.metadata["troupe.status"] == "notFound")
            #expect(line.metadata["troupe.action"] == "no-such-action")
            await client.close()
        }
    }

    @Test func aFailedSideEffectIsLoggedWithTheTraceOfTheTurnThatReturnedIt() async throws {
        let logs = RecordedLogs()
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        try await withSidecar(tracer: tracer, logger: .recording("test.sidecar", into: logs, level: .warning)) {
            harness in
            let client = try await harness.client()
            let answer: String = try await client.invoke(
                "notifier", action: "notify-nobody", "k", metadata: [TraceHeaders.traceparent: caller.header])
            #expect(answer == "notified")
            try await waitFor("the side effect's failure to be logged", timeout: .seconds(10)) {
                !logs.entries("side effect failed").isEmpty
            }
            let line = try #require(logs.entries("side effect failed").first)
            let turn = try #require(
                try await finished(tracer, [TroupeSpan.actorTurn]).first {
                    string($0, TroupeSpanAttribute.actorID) == "notifier"
                })
            #expect(line.metadata[TraceLogMetadata.traceIDKey] == "\(caller.traceID)")
            // The effect was sent from the notifier's turn, so its line names that span.
            #expect(line.metadata[TraceLogMetadata.spanIDKey] == "\(turn.spanID)")
            #expect(line.metadata["troupe.target"] == "test/nobody-here")
            await client.close()
        }
    }

    @Test func theMetadataProviderAddsTheTraceAnActionRunsIn() {
        let caller = TraceParent.random()
        let provider = TraceLogMetadata.provider()
        #expect(provider.get().isEmpty, "outside a trace there is nothing to add")
        let context = TracePropagation.context(continuing: [TraceHeaders.traceparent: caller.header])
        let provided = ServiceContext.withValue(context) { provider.get() }
        #expect(provided[TraceLogMetadata.traceIDKey] == "\(caller.traceID)")
        #expect(provided[TraceLogMetadata.spanIDKey] == "\(caller.spanID)")
    }

    @Test func theMetadataProviderNamesTheInnermostSpanOfATracer() throws {
        let tracer = W3CTestTracer()
        let caller = TraceParent.random()
        let logs = RecordedLogs()
        let logger = Logger.recording(
            "test.provider", into: logs, metadataProvider: TraceLogMetadata.provider(using: tracer))
        let context = TracePropagation.context(continuing: [TraceHeaders.traceparent: caller.header], using: tracer)
        let span = tracer.startSpan("work", context: context)
        ServiceContext.withValue(span.context) { logger.info("inside") }
        span.end()
        let line = try #require(logs.entries("inside").first)
        let finished = try #require(tracer.finishedSpans.first)
        #expect(line.metadata[TraceLogMetadata.traceIDKey] == "\(caller.traceID)")
        #expect(line.metadata[TraceLogMetadata.spanIDKey] == "\(finished.spanID)")
    }

    @Test func aMalformedTraceparentAddsNothing() {
        for header in [
            "", "00-abc-def-01", "01-\(String(repeating: "a", count: 32))-\(String(repeating: "b", count: 16))-01",
            "00-\(String(repeating: "g", count: 32))-\(String(repeating: "b", count: 16))-01",
            "00-\(String(repeating: "a", count: 32))-\(String(repeating: "b", count: 16))-01-extra",
        ] {
            #expect(TraceLogMetadata.metadata(of: [TraceHeaders.traceparent: header]).isEmpty, "\(header)")
        }
        let good = TraceParent.random()
        #expect(TraceParent(good.header) == good)
    }
}
