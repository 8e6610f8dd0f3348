import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport
import TroupeTracing

/// One span as an OTLP/HTTP JSON export carried it.
struct ExportedSpan: Sendable, Hashable {
    var name: String
    var traceID: String
    var spanID: String
    var parentSpanID: String
    var attributes: [String: String]
}

/// A collector of exported spans in the test process.
protocol SpanCollector: Sendable {
    var spans: [ExportedSpan] { get }
    var port: Int? { get }
    func stop()
}

/// An OTLP/HTTP collector in the test process on 127.0.0.1 (port 0): it takes `POST /v1/traces`
/// in OTLP's JSON encoding and keeps every span.
final class OTLPReceiver: SpanCollector, Sendable {
    private let received = Mutex<[ExportedSpan]>([])
    private let bound = Mutex<Int?>(nil)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var spans: [ExportedSpan] { received.withLock { $0 } }
    var port: Int? { bound.withLock { $0 } }

    static func start() async throws -> OTLPReceiver {
        let receiver = OTLPReceiver()
        let router = Router()
        router.post("v1/traces") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 16 << 20)
            let spans = try Self.spans(inExport: Data(body.readableBytesView))
            receiver.received.withLock { $0 += spans }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        var logger = Logger(label: "test.otlp")
        logger.logLevel = .warning
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in receiver.bound.withLock { $0 = channel.localAddress?.port } },
            logger: logger)
        receiver.task.withLock { $0 = Task { try await application.run() } }
        try await waitFor("the OTLP receiver to listen") { receiver.port != nil }
        return receiver
    }

    func stop() { task.withLock { $0?.cancel() } }

    /// The spans of an `ExportTraceServiceRequest` in protobuf's JSON mapping. Ids are hex (as
    /// OTLP specifies) or base64 (protobuf's default for bytes); both are read as hex.
    static func spans(inExport body: Data) throws -> [ExportedSpan] {
        guard let root = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw TroupeError.invalidArgument("the body is not an OTLP JSON export")
        }
        var spans: [ExportedSpan] = []
        for resource in root["resourceSpans"] as? [[String: Any]] ?? [] {
            for scope in resource["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    var attributes: [String: String] = [:]
                    for attribute in span["attributes"] as? [[String: Any]] ?? [] {
                        if let key = attribute["key"] as? String,
                            let value = (attribute["value"] as? [String: Any])?["stringValue"] as? String
                        {
                            attributes[key] = value
                        }
                    }
                    spans.append(
                        ExportedSpan(
                            name: span["name"] as? String ?? "", traceID: hex(span["traceId"]),
                            spanID: hex(span["spanId"]), parentSpanID: hex(span["parentSpanId"]),
                            attributes: attributes))
                }
            }
        }
        return spans
    }

    private static func hex(_ value: Any?) -> String {
        guard let text = value as? String, !text.isEmpty else { return "" }
        if text.count % 16 == 0, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let bytes = Data(base64Encoded: text) else { return text }
        return bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

@Suite("Trace context and OTLP export of a sidecar process", .serialized)
struct TracingProcessTests {
    @Test func aClientsTraceparentReachesTheActorAsAChildSpanAndTheSpansReachAnOTLPCollector() async throws {
        let collector = try await OTLPReceiver.start()
        defer { collector.stop() }
        try await exportScenario(to: collector, protocol: "http/json")
    }

    @Test func theSpansReachAnOTLPCollectorOverGRPC() async throws {
        let collector = try await OTLPGRPCReceiver.start()
        defer { collector.stop() }
        try await exportScenario(to: collector, protocol: "grpc")
    }
}

/// A sidecar process exporting to `collector` over `otlpProtocol` serves a call with a
/// `traceparent`; its spans of that trace reach the collector, parented as the hops were.
private func exportScenario(to collector: some SpanCollector, protocol otlpProtocol: String) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let port = try #require(collector.port)
    let processes = try await ReadySidecar.start(
        system: "traced", in: directory,
        [
            "--store", "memory", "--otlp-endpoint", "http://127.0.0.1:\(port)", "--otlp-protocol", otlpProtocol,
        ])
    defer { processes.kill9() }
    let client = try await TroupeClient.connect(system: "traced", to: .unix(path: processes.socket))
    let caller = TraceParent.random()
    let seen: [String: String] = try await client.invoke(
        "echo", action: "metadata", NoPayload(), metadata: [TraceHeaders.traceparent: caller.header])
    await client.close()

    // Same trace, and the actor's parent is a span of the sidecar, not the client's.
    let parent = try #require(seen[TraceHeaders.traceparent].flatMap(TraceParent.init), "\(seen)")
    #expect(parent.traceID == caller.traceID)
    #expect(parent.spanID != caller.spanID)

    // Spans still queued are exported while the sidecar stops.
    processes.sidecar.signal(SIGTERM)
    #expect(try await processes.sidecar.waitForExit(timeout: .seconds(30)) == 0, "\(processes.sidecar.log)")
    var spans: [ExportedSpan] = []
    try await waitFor("the sidecar's spans at the collector") {
        spans = collector.spans.filter { $0.traceID == caller.traceID }
        return spans.count >= 2
    }
    let invoke = try #require(spans.first { $0.name == TroupeSpan.invoke }, "\(spans)")
    let turn = try #require(spans.first { $0.name == TroupeSpan.actorTurn }, "\(spans)")
    #expect(invoke.parentSpanID == caller.spanID)
    #expect(turn.parentSpanID == invoke.spanID)
    #expect(turn.spanID == parent.spanID)
    #expect(turn.attributes[TroupeSpanAttribute.actorType] == "echo")
    #expect(turn.attributes[TroupeSpanAttribute.system] == "traced")
    #expect(invoke.attributes[TroupeSpanAttribute.status] == "ok")
    processes.host.signal(SIGTERM)
    try await processes.host.waitForExit()
}
