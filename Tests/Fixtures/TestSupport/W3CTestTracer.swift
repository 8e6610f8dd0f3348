public import InMemoryTracing
public import Tracing
import TroupeTracing

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

/// A W3C `traceparent` header: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
public struct TraceParent: Sendable, Hashable, CustomStringConvertible {
    public var traceID: String
    public var spanID: String
    public var sampled = true

    public init(traceID: String, spanID: String, sampled: Bool = true) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
    }

    /// A new trace with a random trace id and parent span id.
    public static func random() -> TraceParent {
        TraceParent(traceID: randomHex(bytes: 16), spanID: randomHex(bytes: 8))
    }

    /// Parses a version-00 header; nil if it is not one.
    public init?(_ header: String) {
        let parts = header.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[0] == "00", parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
            parts[1...3].allSatisfy({ $0.allSatisfy(\.isHexDigit) })
        else { return nil }
        self.init(traceID: parts[1], spanID: parts[2], sampled: (UInt8(parts[3], radix: 16) ?? 0) & 1 == 1)
    }

    public var header: String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }
    public var description: String { header }
}

private func randomHex(bytes: Int) -> String {
    (0..<bytes).map { _ in
        let byte = UInt8.random(in: 0...255)
        return (byte < 16 ? "0" : "") + String(byte, radix: 16)
    }.joined()
}
