public import InMemoryTracing
public import Tracing
public import TroupeTracing

/// A real tracer for tests: its spans are swift-distributed-tracing's `InMemoryTracer` spans,
/// collected as they end, and its trace context travels as W3C `traceparent` headers, as
/// swift-otel's does, so hosts and other sidecars can continue a trace it started.
public struct W3CTestTracer: Tracer {
    public typealias Span = InMemorySpan

    /// Holds the spans.
    public let recorder: InMemoryTracer

    public init() {
        recorder = InMemoryTracer(
            idGenerator: .init(
                nextTraceID: { randomHex(bytes: 16) }, nextSpanID: { randomHex(bytes: 8) }))
    }

    /// The spans that have ended, in the order they ended.
    public var finishedSpans: [FinishedInMemorySpan] { recorder.finishedSpans }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> InstrumentationContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> InMemorySpan {
        recorder.startSpan(
            operationName, context: context(), ofKind: kind, at: instant(), function: function, file: fileID,
            line: line)
    }

    public func forceFlush() {}

    public func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier, into context: inout InstrumentationContext, using extractor: Extract
    ) where Extract.Carrier == Carrier {
        guard let header = extractor.extract(key: TraceHeaders.traceparent, from: carrier),
            let parent = TraceParent(header)
        else { return }
        context.inMemorySpanContext = InMemorySpanContext(
            traceID: parent.traceID, spanID: parent.spanID, parentSpanID: nil)
    }

    public func inject<Carrier, Inject: Injector>(
        _ context: InstrumentationContext, into carrier: inout Carrier, using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject(
            TraceParent(traceID: span.traceID, spanID: span.spanID).header, forKey: TraceHeaders.traceparent,
            into: &carrier)
    }
}

extension TraceParent {
    /// A new trace with a random trace id and parent span id.
    public static func random() -> TraceParent {
        TraceParent(traceID: randomHex(bytes: 16), spanID: randomHex(bytes: 8))
    }
}

private func randomHex(bytes: Int) -> String {
    (0..<bytes).map { _ in
        let byte = UInt8.random(in: 0...255)
        return (byte < 16 ? "0" : "") + String(byte, radix: 16)
    }.joined()
}
