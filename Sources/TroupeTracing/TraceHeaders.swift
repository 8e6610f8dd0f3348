public import Tracing

/// The invocation-metadata keys that carry W3C trace context between hosts, sidecars and systems.
public enum TraceHeaders {
    /// W3C `traceparent`: version, trace id, parent span id and flags.
    public static let traceparent = "traceparent"
    /// W3C `tracestate`: vendor-specific entries that travel with the trace.
    public static let tracestate = "tracestate"
    /// Both keys, in the order they are written.
    public static let all = [traceparent, tracestate]
}

/// Reads trace context from invocation metadata (string headers) for a tracer's `extract`.
public struct MetadataExtractor: Extractor {
    public init() {}

    public func extract(key: String, from carrier: [String: String]) -> String? {
        carrier[key]
    }
}

/// Writes trace context into invocation metadata for a tracer's `inject`.
public struct MetadataInjector: Injector {
    public init() {}

    public func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}
