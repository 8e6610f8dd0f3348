import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import TroupeWire

/// One condition the sidecar must meet to be ready (`/readyz`).
public struct ReadinessCheck: Sendable {
    /// Short name shown in the `/readyz` answer.
    public let name: String
    /// Returns nil when the condition holds, otherwise why it does not.
    public let probe: @Sendable () async -> String?

    public init(name: String, probe: @escaping @Sendable () async -> String?) {
        self.name = name
        self.probe = probe
    }
}

/// The admin HTTP endpoint: `/healthz` (the process serves requests), `/readyz` (every readiness
/// check holds) and `/metrics` (the Prometheus registry in the text exposition format).
/// docs/http-api.md describes the answers.
///
/// The probes stay open (the kubelet sends no credentials). `/metrics` requires
/// `Authorization: Bearer <admin-token>` when a token is set, and without a token it is served
/// only on a loopback address: on any other address it answers 403, so a forgotten token fails
/// closed while the probes keep the pod alive.
final class AdminServer: Service {
    private let host: String
    private let port: Int
    private let checks: [ReadinessCheck]
    private let checkTimeout: Duration
    private let registry: PrometheusCollectorRegistry
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bound = Mutex<Int?>(nil)
    private let token: SharedSecret?
    private let api: AdminAPI?
    private let loopback: Bool
    private let refusals = Counter(label: "troupe_admin_unauthorized_total")

    init(
        listen: String, token: String? = nil, checks: [ReadinessCheck], checkTimeout: Duration = .seconds(2),
        registry: PrometheusCollectorRegistry, api: AdminAPI? = nil, group: any EventLoopGroup, logger: Logger
    ) throws(TroupeError) {
        guard case .tcp(let host, let port) = try Endpoint(parsing: "tcp://" + listen) else {
            throw .invalidArgument("admin-listen must be HOST:PORT, not '\(listen)'")
        }
        self.host = host
        self.port = port
        self.token = token.map(SharedSecret.init)
        self.loopback = isLoopback(host: host)
        self.checks = checks
        self.api = api
        self.checkTimeout = checkTimeout
        self.registry = registry
        self.group = group
        self.logger = logger
    }

    /// The bound port once the server listens (differs from the configured one when that is 0).
    var boundPort: Int? { bound.withLock { $0 } }

    func run() async throws {
        let router = Router()
        router.get("healthz") { _, _ in "ok\n" }
        router.get("readyz") { _, _ in await self.readiness() }
        router.get("metrics") { request, _ in self.authorize(request) ?? self.metrics() }
        if let api {
            // The JSON API reads and changes actors: the same token as /metrics guards it.
            router.post("v1/actors/:actor/:action") { request, context in
                if let refusal = self.authorize(request) { return refusal }
                return try await api.invoke(
                    request, actor: try context.parameters.require("actor"),
                    action: try context.parameters.require("action"))
            }
            router.post("v1/spawn") { request, _ in
                if let refusal = self.authorize(request) { return refusal }
                return try await api.spawn(request)
            }
            router.get("v1/actors") { request, _ in
                if let refusal = self.authorize(request) { return refusal }
                return await api.actors(request)
            }
            router.get("v1/members") { request, _ in self.authorize(request) ?? api.members() }
        }
        if token == nil, !loopback {
            logger.warning(
                "admin endpoint on a non-loopback address without admin-token: /metrics answers 403; set TROUPE_ADMIN_TOKEN to serve it",
                metadata: ["troupe.endpoint": "http://\(host):\(port)"])
        }
        let application = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port
                self.bound.withLock { $0 = port }
                self.logger.info(
                    "admin endpoint listening",
                    metadata: ["troupe.endpoint": "http://\(self.host):\(port.map(String.init) ?? "?")"])
            },
            eventLoopGroupProvider: .shared(group),
            logger: logger)
        try await application.run()
    }

    /// 200 when every check holds, 503 naming each one that does not. Checks run concurrently,
    /// each bounded by `checkTimeout`, so a hanging store cannot hang the kubelet's probe.
    private func readiness() async -> Response {
        let results = await withTaskGroup(of: (Int, String?).self) { group in
            for (index, check) in checks.enumerated() {
                group.addTask { (index, await Self.run(check, timeout: self.checkTimeout)) }
            }
            var results = [String?](repeating: nil, count: checks.count)
            for await (index, failure) in group { results[index] = failure }
            return results
        }
        var body = ""
        for (check, failure) in zip(checks, results) {
            body += "\(check.name): \(failure ?? "ok")\n"
        }
        let ready = results.allSatisfy { $0 == nil }
        return Response(
            status: ready ? .ok : .serviceUnavailable,
            headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: (ready ? "ready\n" : "not ready\n") + body)))
    }

    private static func run(_ check: ReadinessCheck, timeout: Duration) async -> String? {
        await withTaskGroup(of: String?.self) { group in
            group.addTask { await check.probe() }
            group.addTask {
                // Cancelled as soon as the probe answers; an answer after the timeout is a failure.
                guard (try? await Task.sleep(for: timeout)) != nil else { return nil }
                return "no answer within \(timeout)"
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Nil when the request may read `/metrics`, otherwise the refusal: 401 for a missing or
    /// wrong bearer token, 403 when no token is configured and the address is not loopback.
    private func authorize(_ request: Request) -> Response? {
        guard let token else {
            guard !loopback else { return nil }
            refusals.increment()
            return Self.refusal(
                .forbidden, "\(request.uri.path) on a non-loopback address needs the sidecar's admin-token (TROUPE_ADMIN_TOKEN)\n")
        }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix.lowercased(),
            token.matches(String(header.dropFirst(prefix.count)))
        else {
            refusals.increment()
            var response = Self.refusal(.unauthorized, "\(request.uri.path) requires Authorization: Bearer <admin-token>\n")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return nil
    }

    private static func refusal(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private func metrics() -> Response {
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
