public import TroupeProto

/// A failure with a typed status, as it travels between callers, sidecars and hosts.
///
/// Every failure in Troupe reaches the caller as a `TroupeError`: a status ``Code`` for programs
/// and a message for people. The codes are gRPC's, so they map one to one onto gRPC and HTTP.
///
/// ```swift
/// do {
///     let seats: [Int] = try await client.invoke(actor: "event-42", action: "free-seats")
/// } catch let error as TroupeError where error.code == .unavailable {
///     // retry later
/// }
/// ```
public struct TroupeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The status of a failure.
    public enum Code: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16

        public var description: String {
            switch self {
            case .cancelled: "cancelled"
            case .unknown: "unknown"
            case .invalidArgument: "invalidArgument"
            case .deadlineExceeded: "deadlineExceeded"
            case .notFound: "notFound"
            case .alreadyExists: "alreadyExists"
            case .permissionDenied: "permissionDenied"
            case .resourceExhausted: "resourceExhausted"
            case .failedPrecondition: "failedPrecondition"
            case .aborted: "aborted"
            case .outOfRange: "outOfRange"
            case .unimplemented: "unimplemented"
            case .internal: "internal"
            case .unavailable: "unavailable"
            case .dataLoss: "dataLoss"
            case .unauthenticated: "unauthenticated"
            }
        }
    }

    public var code: Code
    public var message: String
    /// Machine-readable context, such as `"actor": "seat-map"`.
    public var details: [String: String]

    public init(_ code: Code, _ message: String, details: [String: String] = [:]) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { "\(code): \(message)" }

    public static func notFound(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.notFound, message, details: details)
    }
    public static func invalidArgument(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.invalidArgument, message, details: details)
    }
    public static func unavailable(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.unavailable, message, details: details)
    }
    public static func deadlineExceeded(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.deadlineExceeded, message, details: details)
    }
    public static func resourceExhausted(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.resourceExhausted, message, details: details)
    }
    public static func failedPrecondition(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.failedPrecondition, message, details: details)
    }
    public static func alreadyExists(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.alreadyExists, message, details: details)
    }
    public static func internalError(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.internal, message, details: details)
    }
    public static func cancelled(_ message: String, details: [String: String] = [:]) -> Self {
        .init(.cancelled, message, details: details)
    }
}

extension TroupeError {
    /// Reads a failure off the wire. An out-of-range or OK code becomes `unknown`, so a
    /// failure frame is never mistaken for success.
    public init(_ failure: WireFailure) {
        let code = Code(rawValue: failure.code.rawValue) ?? .unknown
        self.init(code, failure.message, details: failure.details)
    }

    /// The wire form of this failure.
    public var wire: WireFailure {
        var failure = WireFailure()
        failure.code = WireStatusCode(rawValue: code.rawValue) ?? .unknown
        failure.message = message
        failure.details = details
        return failure
    }

    /// Wraps any error as a `TroupeError`, keeping typed ones as they are.
    public init(wrapping error: any Error) {
        if let error = error as? TroupeError {
            self = error
        } else {
            self.init(.internal, String(describing: error))
        }
    }
}
