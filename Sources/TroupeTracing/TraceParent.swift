/// A W3C `traceparent` header: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
///
/// ```swift
/// let parent = TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
/// parent?.traceID   // "4bf92f3577b34da6a3ce929d0e0e4736"
/// ```
public struct TraceParent: Sendable, Hashable, CustomStringConvertible {
    public var traceID: String
    public var spanID: String
    public var sampled = true

    public init(traceID: String, spanID: String, sampled: Bool = true) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
    }

    /// Parses a version-00 header; nil if it is not one.
    public init?(_ header: String) {
        let parts = header.utf8.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].elementsEqual("00".utf8), parts[1].count == 32, parts[2].count == 16,
            parts[3].count == 2, parts[1...3].allSatisfy({ $0.allSatisfy(Self.isHexDigit) }),
            let flags = UInt8(String(decoding: parts[3], as: UTF8.self), radix: 16)
        else { return nil }
        self.init(
            traceID: String(decoding: parts[1], as: UTF8.self), spanID: String(decoding: parts[2], as: UTF8.self),
            sampled: flags & 1 == 1)
    }

    public var header: String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }
    public var description: String { header }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
            UInt8(ascii: "A")...UInt8(ascii: "F"):
            true
        default: false
        }
    }
}
