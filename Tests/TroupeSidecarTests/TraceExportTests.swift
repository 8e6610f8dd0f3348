import Logging
import Testing
import TroupeWire

@testable import TroupeSidecar

@Suite("Tracing settings and the OTLP exporter's configuration")
struct TraceExportTests {
    @Test func tracingSettingsRefuseWhatIsNotAnHTTPURLAProtocolOrARatioNamingTheSetting() {
        var configuration = SidecarConfiguration()
        for (key, value) in [
            ("otlp-endpoint", "otel-collector:4318"), ("otlp-endpoint", "ftp://collector:21"),
            ("otlp-endpoint", "http://"), ("otlp-protocol", "thrift"), ("trace-sample-ratio", "1.5"),
            ("trace-sample-ratio", "-0.1"), ("trace-sample-ratio", "half"),
        ] {
            let error = #expect(throws: TroupeError.self) { try configuration.set(key, to: value) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(key) == true, "\(String(describing: error))")
        }
        #expect(configuration == SidecarConfiguration(), "a refused value changed the configuration")
    }

    @Test func withoutAnEndpointThereIsNoExporterAndOffTurnsItOff() throws {
        var configuration = SidecarConfiguration()
        #expect(try TraceExport.make(configuration, logger: Logger(label: "test")) == nil)
        try configuration.set("otlp-endpoint", to: "http://127.0.0.1:4318")
        #expect(configuration.otlpEndpoint == "http://127.0.0.1:4318")
        try configuration.set("otlp-endpoint", to: "off")
        #expect(configuration.otlpEndpoint == nil)
    }

    @Test func httpExportsGoToV1TracesUnderTheEndpointAndGRPCUsesItAsItIs() throws {
        var configuration = SidecarConfiguration()
        try configuration.set("otlp-endpoint", to: "http://collector:4318/")
        try configuration.set("trace-sample-ratio", to: "0.25")
        let logger = Logger(label: "test")
        let http = try #require(TraceExport.otelConfiguration(configuration, logger: logger))
        #expect(http.traces.otlpExporter.endpoint == "http://collector:4318/v1/traces")
        #expect(http.traces.otlpExporter.protocol == .httpProtobuf)
        #expect(!http.metrics.enabled && !http.logs.enabled && http.traces.enabled)
        #expect(http.resourceAttributes["troupe.system"] == configuration.system)
        #expect(TraceExport.tracesURL("https://c:4318/v1/traces") == "https://c:4318/v1/traces")

        try configuration.set("otlp-protocol", to: "grpc")
        try configuration.set("otlp-endpoint", to: "http://collector:4317")
        let grpc = try #require(TraceExport.otelConfiguration(configuration, logger: logger))
        #expect(grpc.traces.otlpExporter.endpoint == "http://collector:4317")
        #expect(grpc.traces.otlpExporter.protocol == .grpc)
    }
}
