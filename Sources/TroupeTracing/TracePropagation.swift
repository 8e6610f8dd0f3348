public import Tracing

/// Trace context across an actor's action in an SDK host: the action runs in the caller's trace,
/// and the calls it makes carry that trace on.
///
/// It works with and without a tracer in the host process. The incoming `traceparent` and
/// `tracestate` are kept as they are and sent on with every call the action makes; when the
/// process has bootstrapped a tracer (`InstrumentationSystem`), the action's context is also what
/// that tracer extracted, so spans the action starts are children of the sidecar's span, and an
/// outgoing call carries the innermost span's context instead.
public enum TracePropagation {
    /// The context an action with `metadata` runs in.
    public static func context(continuing metadata: [String: String]) -> ServiceContext {
        var context = ServiceContext.current ?? .topLevel
        var headers: [String: String] = [:]
        for key in TraceHeaders.all {
            if let value = metadata[key] { headers[key] = value }
        }
        // Set also when empty: a call without a trace must not carry on one from an enclosing context.
        context[TraceHeadersKey.self] = headers.isEmpty ? nil : headers
        guard !headers.isEmpty else { return context }
        InstrumentationSystem.instrument.extract(metadata, into: &context, using: MetadataExtractor())
        return context
    }

    /// The trace headers a call made in `context` carries; empty outside a trace.
    public static func headers(for context: ServiceContext?) -> [String: String] {
        guard let context else { return [:] }
        var headers = context[TraceHeadersKey.self] ?? [:]
        InstrumentationSystem.instrument.inject(context, into: &headers, using: MetadataInjector())
        return headers
    }

    /// `metadata` with the trace headers of the current task's context added; headers the
    /// caller set itself win.
    public static func outgoing(_ metadata: [String: String]) -> [String: String] {
        let carried = headers(for: ServiceContext.current)
        guard !carried.isEmpty else { return metadata }
        return carried.merging(metadata) { _, explicit in explicit }
    }
}

/// The W3C headers of the call an action runs for, as they arrived.
private enum TraceHeadersKey: ServiceContextKey {
    typealias Value = [String: String]
    static var nameOverride: String? { "troupe.trace-headers" }
}
