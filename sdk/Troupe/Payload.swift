import Foundation
import SwiftProtobuf
import TroupeProto
import TroupeWire

/// The empty payload: for actions that take or return nothing.
public struct NoPayload: Codable, Sendable, Hashable {
    public init() {}
}

/// The state type of stateless actors.
public struct Stateless: Codable, Sendable, Hashable {
    public init() {}
}

/// Encodes and decodes payloads: SwiftProtobuf messages as binary protobuf
/// (`type.googleapis.com/<full name>`), `Codable` values as JSON (`application/json`).
///
/// The choice is made from the value's type, so any `Codable` or `SwiftProtobuf.Message` type
/// can be an action's input, output or state.
enum PayloadCoding {
    static let jsonTypeURL = "application/json"
    // Shared: making coders per call shows up in the invocation profile. Both are thread-safe.
    static let jsonEncoder = JSONEncoder()
    static let jsonDecoder = JSONDecoder()
    static let protobufPrefix = "type.googleapis.com/"

    static func encode<T>(_ value: T) throws(TroupeError) -> WirePayload {
        var payload = WirePayload()
        // Comparing type metadata first: a dynamic cast per call shows up in the invocation profile.
        if T.self == String.self, let json = JSONString.encode(unsafeBitCast(value, to: String.self)) {
            payload.typeURL = jsonTypeURL
            payload.value = json
            return payload
        }
        if T.self == NoPayload.self || value is NoPayload { return payload }
        do {
            if let message = value as? any SwiftProtobuf.Message {
                payload.typeURL = protobufPrefix + type(of: message).protoMessageName
                payload.value = try message.serializedData()
            } else if let encodable = value as? any Encodable {
                payload.typeURL = jsonTypeURL
                payload.value = try jsonEncoder.encode(encodable)
            } else {
                throw TroupeError.invalidArgument("\(T.self) is neither Codable nor a SwiftProtobuf message")
            }
        } catch let error as TroupeError {
            throw error
        } catch {
            throw .invalidArgument("cannot encode \(T.self): \(error)")
        }
        return payload
    }

    static func decode<T>(_ type: T.Type, from payload: WirePayload) throws(TroupeError) -> T {
        if T.self == String.self, payload.typeURL.isEmpty || payload.typeURL.hasPrefix(jsonTypeURL),
            let text = JSONString.decode(payload.value)
        {
            return unsafeBitCast(text, to: T.self)
        }
        if let empty = NoPayload() as? T { return empty }
        do {
            if let messageType = T.self as? any SwiftProtobuf.Message.Type {
                guard payload.typeURL.isEmpty || payload.typeURL == protobufPrefix + messageType.protoMessageName else {
                    throw TroupeError.invalidArgument(
                        "expected \(messageType.protoMessageName), got payload of type '\(payload.typeURL)'")
                }
                return try messageType.init(serializedBytes: payload.value) as! T
            } else if let decodableType = T.self as? any Decodable.Type {
                guard payload.typeURL.isEmpty || payload.typeURL.hasPrefix(jsonTypeURL) else {
                    throw TroupeError.invalidArgument(
                        "expected JSON for \(T.self), got payload of type '\(payload.typeURL)'")
                }
                let bytes = payload.value.isEmpty ? Data("{}".utf8) : payload.value
                return try jsonDecoder.decode(decodableType, from: bytes) as! T
            }
            throw TroupeError.invalidArgument("\(T.self) is neither Codable nor a SwiftProtobuf message")
        } catch let error as TroupeError {
            throw error
        } catch {
            throw .invalidArgument("payload is not a valid \(T.self): \(error)")
        }
    }
}

/// JSON strings without escapes, coded without Foundation: a `String` is the most common payload,
/// and `JSONEncoder` and `JSONDecoder` cost microseconds per call for it. Anything that needs an
/// escape (or is not a plain JSON string) is left to Foundation, so the bytes and the errors stay
/// what Foundation produces.
enum JSONString {
    /// `text` as a JSON string, or nil if it contains a byte Foundation escapes (`"`, `\`, `/`,
    /// control characters).
    static func encode(_ text: String) -> Data? {
        var text = text
        return text.withUTF8 { utf8 -> Data? in
            for byte in utf8 where needsEscape(byte) { return nil }
            var data = Data(capacity: utf8.count + 2)
            data.append(quote)
            data.append(utf8)
            data.append(quote)
            return data
        }
    }

    /// The string `json` holds if it is exactly one JSON string without escapes (no surrounding
    /// whitespace); nil otherwise, for Foundation to decode or to reject.
    static func decode(_ json: Data) -> String? {
        json.withUnsafeBytes { raw -> String? in
            guard raw.count >= 2, raw[0] == quote, raw[raw.count - 1] == quote else { return nil }
            let inner = UnsafeRawBufferPointer(rebasing: raw[1..<(raw.count - 1)])
            for byte in inner where byte == quote || byte == backslash || byte < 0x20 { return nil }
            return String(validating: inner, as: UTF8.self)
        }
    }

    private static let quote = UInt8(ascii: "\"")
    private static let backslash = UInt8(ascii: "\\")

    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == quote || byte == backslash || byte == UInt8(ascii: "/")
    }
}
