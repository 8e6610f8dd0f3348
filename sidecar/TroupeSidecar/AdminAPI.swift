import Foundation
import Hummingbird
import NIOCore
import SwiftProtobuf
import TroupeActors
import TroupeProto
import TroupeStore
import TroupeTracing
import TroupeWire

/// The JSON API of the admin endpoint, for operators with curl (docs/http-api.md): invoke an
/// actor, spawn unnamed ones, list members and active actors. Requests and answers are the host
/// protocol's messages in protobuf's JSON mapping; errors are typed, as JSON with an HTTP status.
struct AdminAPI: Sendable {
    let view: SidecarView
    let defaultTimeoutMs: UInt32
    let maxBodyBytes: Int
    let eventLoop: any EventLoop

    /// `POST /v1/actors/{actor}/{action}?system=&spawn_from=&timeout_ms=` with an optional JSON
    /// payload: 200 with the reply (JSON as it is, any other type as `{"typeUrl","value"}` with the
    /// bytes in base64), 204 for an empty reply.
    func invoke(_ request: Request, actor: String, action: String) async throws -> Response {
        let query = request.uri.queryParameters
        var payload = WirePayload()
        let body = try await request.body.collect(upTo: maxBodyBytes)
        if body.readableBytes > 0 {
            let bytes = Data(body.readableBytesView)
            guard (try? JSONSerialization.jsonObject(with: bytes, options: [.fragmentsAllowed])) != nil else {
                return Self.failure(.invalidArgument("the request body is not JSON"))
            }
            payload.typeURL = "application/json"
            payload.value = bytes
        }
        var timeoutMs = defaultTimeoutMs
        if let text = query.get("timeout_ms") {
            guard let value = UInt32(text), value > 0 else {
                return Self.failure(.invalidArgument("timeout_ms must be a positive whole number, not '\(text)'"))
            }
            timeoutMs = value
        }
        let system = query.get("system").flatMap { $0.isEmpty ? nil : $0 } ?? view.configuration.system
        let deadline = NIODeadline.now() + .milliseconds(Int64(timeoutMs))
        var invocation = Invocation(
            actor: ActorKey(system: system, name: actor), action: action, payload: payload,
            metadata: ["troupe-caller": "admin-api"], deadline: deadline, spawnFrom: query.get("spawn_from") ?? "")
        // A curl user's W3C trace headers continue their trace, as an invoke frame's metadata does.
        for header in TraceHeaders.all {
            if let field = request.headers.first(where: { $0.name.canonicalName == header }) {
                invocation.metadata[header] = field.value
            }
        }
        let span = view.directory.tracing?.startSpan(
            TroupeSpan.invoke, kind: .server, metadata: &invocation.metadata, actorID: invocation.actor.name,
            action: invocation.action)
        let outcome = await withCheckedContinuation { continuation in
            let reply = Reply {
                span?.end(reporting: $0)
                continuation.resume(returning: $0)
            }
            reply.arm(deadline: deadline, on: eventLoop)
            view.directory.invoke(invocation, reply: reply)
        }
        switch outcome {
        case .failure(let error):
            return Self.failure(error)
        case .success(let reply) where reply.value.isEmpty:
            return Response(status: .noContent)
        case .success(let reply) where reply.typeURL == "application/json" || reply.typeURL.isEmpty:
            return Self.json(.ok, ByteBuffer(bytes: reply.value))
        case .success(let reply):
            return Self.message(reply)
        }
    }

    /// `POST /v1/spawn` with a `SpawnRequest` (`{"actorType": "account", "names": ["a-1"]}`).
    func spawn(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: maxBodyBytes)
        let spawn: WireSpawnRequest
        do { spawn = try WireSpawnRequest(jsonUTF8Bytes: Array(body.readableBytesView)) } catch {
            return Self.failure(.invalidArgument("the request body is not a SpawnRequest in JSON: \(error)"))
        }
        guard !spawn.actorType.isEmpty, !spawn.names.isEmpty else {
            return Self.failure(.invalidArgument("spawn needs an actorType and names"))
        }
        do {
            var response = WireSpawnResponse()
            response.created = try await view.directory.spawn(names: spawn.names, actorType: spawn.actorType)
            return Self.message(response)
        } catch {
            return Self.failure(TroupeError(wrapping: error))
        }
    }

    /// `GET /v1/actors?type=&limit=&tag=KEY=VALUE`: a `ListActorsResponse`, cluster-wide; with
    /// `tag` (repeatable) only the actors that carry each of those tags.
    func actors(_ request: Request) async -> Response {
        let query = request.uri.queryParameters
        let limit = query.get("limit").flatMap { Int($0) }.map { min(max($0, 1), 100_000) } ?? 1000
        let tags: [String: String]
        do { tags = try TagFilter.parse(query.getAll("tag")) } catch { return Self.failure(error) }
        return Self.message(await view.actors(ofType: query.get("type") ?? "", tags: tags, limit: limit))
    }

    /// `GET /v1/members`: a `ListMembersResponse`.
    func members() -> Response {
        Self.message(view.members())
    }

    static func message(_ message: some SwiftProtobuf.Message) -> Response {
        do {
            return json(.ok, ByteBuffer(bytes: try message.jsonUTF8Bytes() as [UInt8]))
        } catch {
            return failure(.internalError("cannot encode the answer as JSON: \(error)"))
        }
    }

    /// `{"code": "notFound", "message": "…"}` with the HTTP status that fits the code.
    static func failure(_ error: TroupeError) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: ["code": "\(error.code)", "message": error.message]))
            ?? Data("{}".utf8)
        return json(status(of: error.code), ByteBuffer(bytes: body))
    }

    static func status(of code: TroupeError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidArgument, .outOfRange: .badRequest
        case .notFound: .notFound
        case .alreadyExists, .aborted: .conflict
        case .permissionDenied: .forbidden
        case .unauthenticated: .unauthorized
        case .failedPrecondition: .preconditionFailed
        case .resourceExhausted: .tooManyRequests
        case .unimplemented: .notImplemented
        case .unavailable, .cancelled: .serviceUnavailable
        case .deadlineExceeded: .gatewayTimeout
        default: .internalServerError
        }
    }

    private static func json(_ status: HTTPResponse.Status, _ body: ByteBuffer) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
    }
}
