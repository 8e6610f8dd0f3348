public import Tracing

/// Trace context across an actor's action in an SDK host: the action runs in the caller's trace,
/// and the calls it makes carry that trace on.
///
/// It works with and without a tracer in the host process. The incoming `traceparent` and
/// `tracestate` are kept as they are and sent on with every call the action makes; when the
/// process has a tracer, the action's context is also what that tracer extracted, so spans the
/// action starts are children of the sidecar's span, and an outgoing call carries the innermost
/// span's context instead.
///
/// `instrument` is the tracer that reads and writes the headers; by default the one bootstrapped
/// in `InstrumentationSystem`.
public enum TracePropagation {
    /// The context an action with `metadata` runs in.
    public static func context(
        continuing metadata: [String: String], using instrument: any Instrument = InstrumentationSystem.instrument
    ) -> ServiceContext {
        var context = ServiceContext.current ?? .topLevel
        var headers: [String: String] = [:]
        for key in TraceHeaders.all {
            if let value = metadata[key] { headers[key] = value }
        }
        // Set also when empty: a call without a trace must not carry on one from an enclosing context.
        context[TraceHeadersKey.self] = headers.isEmpty ? nil : headers
        guard !headers.isEmpty else { return context }
        instrument.extract(metadata, into: &context, using: MetadataExtractor())
        return context
    }

    /// The trace headers a call made in `context` carries; empty outside a trace.
    public static func headers(
        for context: ServiceContext?, using instrument: any Instrument = InstrumentationSystem.instrument
    ) -> [String: String] {
        guard let context else { return [:] }
        var headers = context[TraceHeadersKey.self] ?? [:]
        instrument.inject(context, into: &headers, using: MetadataInjector())
        return headers
    }

    /// `metadata` with the trace headers of the current task's context added; headers the
    /// caller set itself win.
    public static func outgoing(
        _ metadata: [String: String], using instrument: any Instrument = InstrumentationSystem.instrument
    ) -> [String: String] {
        let carried = headers(for: ServiceContext.current, using: instrument)
        guard !carried.isEmpty else { return metadata }
        return carried.merging(metadata) { _, explicit in explicit }
    }

    /// Starts the client span of a call an SDK program sends, and writes the trace headers the
    /// call carries into `metadata`.
    ///
    /// The span's parent is the `traceparent` the caller put into `metadata` itself, or else the
    /// current task's context (inside an action: the action's span). Without a recording tracer
    /// the headers are those of ``outgoing(_:using:)``, so the incoming trace still travels on.
    ///
    /// - Parameters:
    ///   - system: the caller's ActorSystem; `target` the one the call goes to.
    /// - Returns: the span, or nil when `tracer` is the no-op tracer; end it with
    ///   ``Tracing/Span/end(reporting:)`` when the call is answered.
    public static func startClientSpan(
        _ name: String, tracer: any Tracer, metadata: inout [String: String], system: String, target: String,
        actorID: String, action: String
    ) -> (any Span)? {
        // Without a tracer in the process a call pays for no span at all.
        guard !(tracer is NoOpTracer) else {
            metadata = outgoing(metadata, using: tracer)
            return nil
        }
        let explicit = metadata[TraceHeaders.traceparent] != nil
        let parent = explicit ? context(continuing: metadata, using: tracer) : ServiceContext.current ?? .topLevel
        let span = tracer.startAnySpan(name, context: parent, ofKind: .client)
        guard span.isRecording else {
            metadata = outgoing(metadata, using: tracer)
            return span
        }
        var attributes = SpanAttributes.troupe(system: system, actorID: actorID, action: action)
        if target != system { attributes[TroupeSpanAttribute.peer] = target }
        span.attributes = attributes
        // The span's headers replace the caller's: the next hop is this span's child.
        metadata.merge(headers(for: span.context, using: tracer)) { _, span in span }
        return span
    }

    /// Starts the server span of an action an SDK host runs, as a child of `context` (the one
    /// ``context(continuing:using:)`` made from the invocation); run the action in the span's
    /// context so its own spans and calls are the span's children.
    ///
    /// - Returns: the span, or nil when `tracer` is the no-op tracer.
    public static func startActionSpan(
        _ name: String, tracer: any Tracer, context: ServiceContext, system: String, actorID: String,
        actorType: String, action: String
    ) -> (any Span)? {
        guard !(tracer is NoOpTracer) else { return nil }
        let span = tracer.startAnySpan(name, context: context, ofKind: .server)
        if span.isRecording {
            span.attributes = .troupe(system: system, actorID: actorID, action: action, actorType: actorType)
        }
        return span
    }
}

/// The W3C headers of the call an action runs for, as they arrived.
private enum TraceHeadersKey: ServiceContextKey {
    typealias Value = [String: String]
    static var nameOverride: String? { "troupe.trace-headers" }
}
