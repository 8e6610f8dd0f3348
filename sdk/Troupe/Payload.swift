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
        if value is NoPayload { return payload }
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
