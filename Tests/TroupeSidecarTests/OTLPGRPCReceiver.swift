import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import TroupeTestSupport
import TroupeWire

/// An OTLP/gRPC collector in the test process on 127.0.0.1 (port 0): it serves
/// `opentelemetry.proto.collector.trace.v1.TraceService/Export` with grpc-swift over HTTP/2
/// without TLS, and keeps every span of the protobuf `ExportTraceServiceRequest`s it receives.
final class OTLPGRPCReceiver: SpanCollector, Sendable {
    private let received = Mutex<[ExportedSpan]>([])
    private let bound = Mutex<Int?>(nil)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var spans: [ExportedSpan] { received.withLock { $0 } }
    var port: Int? { bound.withLock { $0 } }

    static func start() async throws -> OTLPGRPCReceiver {
        let receiver = OTLPGRPCReceiver()
        let server = GRPCServer(
            transport: HTTP2ServerTransport.Posix(
                address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
            services: [TraceService(receiver: receiver)])
        receiver.task.withLock { $0 = Task { try await server.serve() } }
        let address = try await server.listeningAddress
        receiver.bound.withLock { $0 = address?.ipv4?.port }
        try await waitFor("the OTLP/gRPC receiver to listen") { receiver.port != nil }
        return receiver
    }

    func stop() { task.withLock { $0?.cancel() } }

    fileprivate func keep(_ spans: [ExportedSpan]) { received.withLock { $0 += spans } }
}

/// The one method of OTLP's trace service, on raw bytes: the test decodes them itself.
private struct TraceService: RegistrableRPCService {
    let receiver: OTLPGRPCReceiver

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: MethodDescriptor(
                fullyQualifiedService: "opentelemetry.proto.collector.trace.v1.TraceService", method: "Export"),
            deserializer: RawBytes(), serializer: RawBytes()
        ) { request, _ in
            for try await message in request.messages {
                receiver.keep(try OTLPProtobuf.spans(inExport: message[...]))
            }
            // An empty ExportTraceServiceResponse: every span accepted.
            return StreamingServerResponse(single: ServerResponse(message: []))
        }
    }
}

/// Messages as their serialized bytes.
private struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// Reads the spans out of a protobuf `ExportTraceServiceRequest` by field number (from OTLP's
/// `trace.proto`), so the test depends on the wire format, not on generated types.
enum OTLPProtobuf {
    static func spans(inExport bytes: ArraySlice<UInt8>) throws -> [ExportedSpan] {
        var spans: [ExportedSpan] = []
        // ExportTraceServiceRequest.resource_spans = 1 → ResourceSpans.scope_spans = 2 → ScopeSpans.spans = 2
        for resource in try fields(bytes, 1) {
            for scope in try fields(resource, 2) {
                for span in try fields(scope, 2) {
                    var attributes: [String: String] = [:]
                    // Span.attributes = 9: KeyValue { key = 1; AnyValue value = 2 { string_value = 1 } }
                    for attribute in try fields(span, 9) {
                        guard let key = try fields(attribute, 1).first, let value = try fields(attribute, 2).first,
                            let text = try fields(value, 1).first
                        else { continue }
                        attributes[String(decoding: key, as: UTF8.self)] = String(decoding: text, as: UTF8.self)
                    }
                    // trace_id = 1, span_id = 2, parent_span_id = 4, name = 5
                    spans.append(
                        ExportedSpan(
                            name: String(decoding: try fields(span, 5).first ?? [], as: UTF8.self),
                            traceID: hex(try fields(span, 1).first), spanID: hex(try fields(span, 2).first),
                            parentSpanID: hex(try fields(span, 4).first), attributes: attributes))
                }
            }
        }
        return spans
    }

    /// The length-delimited fields numbered `number` of a message, in order; other fields are skipped.
    static func fields(_ message: ArraySlice<UInt8>, _ number: UInt64) throws -> [ArraySlice<UInt8>] {
        var found: [ArraySlice<UInt8>] = []
        var index = message.startIndex
        while index < message.endIndex {
            let tag = try varint(message, &index)
            switch tag & 7 {
            case 0: _ = try varint(message, &index)
            case 1: index += 8
            case 5: index += 4
            case 2:
                let length = Int(try varint(message, &index))
                guard length <= message.endIndex - index else { throw malformed }
                if tag >> 3 == number { found.append(message[index..<index + length]) }
                index += length
            default: throw malformed
            }
        }
        guard index == message.endIndex else { throw malformed }
        return found
    }

    private static func varint(_ bytes: ArraySlice<UInt8>, _ index: inout Int) throws -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            guard index < bytes.endIndex else { throw malformed }
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
        }
        throw malformed
    }

    private static var malformed: TroupeError { .invalidArgument("not a protobuf ExportTraceServiceRequest") }

    private static func hex(_ bytes: ArraySlice<UInt8>?) -> String {
        (bytes ?? []).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
