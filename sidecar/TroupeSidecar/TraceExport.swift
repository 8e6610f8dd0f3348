public import Logging
import OTel
public import ServiceLifecycle
public import Tracing
public import TroupeWire

/// The OTLP span exporter (swift-otel), made from the sidecar's `otlp-*` settings.
///
/// The executable makes it once, bootstraps `InstrumentationSystem` with its tracer, hands the
/// tracer to ``Sidecar/start(configuration:logger:metrics:tracer:)`` and runs its service with
/// the sidecar's (``Sidecar/run(signals:alongside:)``), so spans still queued are exported
/// during graceful shutdown. Standard `OTEL_*` variables override these settings, as swift-otel
/// reads them.
public struct TraceExport: Sendable {
    /// Starts the spans; W3C `traceparent`/`tracestate` propagation.
    public let tracer: any Tracer
    /// Batches finished spans and sends them to the collector.
    public let service: any Service

    /// The exporter the configuration asks for, or nil when `otlp-endpoint` is not set.
    ///
    /// - Throws: `invalidArgument` when swift-otel refuses the configuration.
    public static func make(_ configuration: SidecarConfiguration, logger: Logger) throws(TroupeError) -> TraceExport? {
        guard let otel = otelConfiguration(configuration, logger: logger) else { return nil }
        do {
            let (tracer, service) = try OTel.makeTracingBackend(configuration: otel)
            return TraceExport(tracer: tracer, service: service)
        } catch {
            throw .invalidArgument("otlp-endpoint: the span exporter cannot start: \(error)")
        }
    }

    /// swift-otel's configuration: traces only (metrics stay with Prometheus, logs with swift-log).
    static func otelConfiguration(_ configuration: SidecarConfiguration, logger: Logger) -> OTel.Configuration? {
        guard let endpoint = configuration.otlpEndpoint else { return nil }
        var otel = OTel.Configuration.default
        otel.serviceName = "troupe-sidecar"
        otel.resourceAttributes = [
            "troupe.system": configuration.system, "troupe.node": configuration.node,
            "service.instance.id": configuration.node,
        ]
        otel.diagnosticLogger = .custom(logger)
        otel.propagators = [.traceContext]
        otel.metrics.enabled = false
        otel.logs.enabled = false
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        // Parent-based: a call that arrives with a trace keeps its caller's decision.
        otel.traces.sampler = .parentBasedTraceIDRatio(ratio: configuration.traceSampleRatio) ?? .parentBasedAlwaysOn
        switch configuration.otlpProtocol {
        case "grpc":
            otel.traces.otlpExporter.protocol = .grpc
            otel.traces.otlpExporter.endpoint = endpoint
        case let http:
            otel.traces.otlpExporter.protocol = http == "http/json" ? .httpJSON : .httpProtobuf
            otel.traces.otlpExporter.endpoint = tracesURL(endpoint)
        }
        return otel
    }

    /// The OTLP/HTTP traces URL of a collector: `/v1/traces` is appended unless the endpoint names it.
    static func tracesURL(_ endpoint: String) -> String {
        if endpoint.hasSuffix("/v1/traces") { return endpoint }
        return (endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint) + "/v1/traces"
    }
}
