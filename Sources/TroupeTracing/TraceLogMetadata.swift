public import Logging
public import Tracing

/// The trace of a call as log metadata: `trace_id` and `span_id`, so a log line can be found from
/// its trace and the other way round.
///
/// The keys are OpenTelemetry's names for log records' trace context (what collectors and log
/// stores such as Loki or Elasticsearch link to traces by), not `troupe.`-namespaced ones.
///
/// Two ways in, because Troupe logs from two kinds of code:
/// - code that runs in a task with a `ServiceContext` (an SDK action, a span of a bootstrapped
///   tracer) gets it from ``provider(using:)``, installed on the log handler;
/// - the sidecar's call path runs in event-loop callbacks without a task-local context, so it
///   adds ``metadata(of:)`` of the call's own metadata, whose `traceparent` names the span the
///   call is in.
///
/// ```swift
/// LoggingSystem.bootstrap({ label, provider in StreamLogHandler.standardError(label: label, metadataProvider: provider) },
///                         metadataProvider: TraceLogMetadata.provider())
/// ```
public enum TraceLogMetadata {
    public static let traceIDKey = "trace_id"
    public static let spanIDKey = "span_id"

    /// `trace_id` and `span_id` of the `traceparent` in a call's metadata; empty without one.
    public static func metadata(of callMetadata: [String: String]) -> Logger.Metadata {
        guard let header = callMetadata[TraceHeaders.traceparent] else { return [:] }
        return metadata(header)
    }

    /// `trace_id` and `span_id` of a W3C `traceparent` header; empty if it is not one.
    public static func metadata(_ traceparent: String) -> Logger.Metadata {
        guard let parent = TraceParent(traceparent) else { return [:] }
        return [traceIDKey: "\(parent.traceID)", spanIDKey: "\(parent.spanID)"]
    }

    /// A metadata provider that adds the trace of the current task's `ServiceContext`.
    ///
    /// The context's innermost span is written as W3C headers by `instrument` (by default the
    /// one bootstrapped in `InstrumentationSystem`, looked up when a line is logged); without a
    /// span, the `traceparent` an SDK action's call arrived with is used.
    public static func provider(using instrument: (any Instrument)? = nil) -> Logger.MetadataProvider {
        Logger.MetadataProvider {
            guard let context = ServiceContext.current else { return [:] }
            let headers = TracePropagation.headers(for: context, using: instrument ?? InstrumentationSystem.instrument)
            return metadata(of: headers)
        }
    }
}
