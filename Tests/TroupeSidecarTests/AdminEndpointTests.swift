import Foundation
import NIOCore
import NIOPosix
import Prometheus
import Testing
import TroupeTestSupport
import Troupe
import TroupeSidecar
import TroupeTestActors
import TroupeWire

/// An HTTP answer as it came over the socket.
struct HTTPAnswer {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// GETs `path` from 127.0.0.1:`port` over a new TCP connection (HTTP/1.1, `Connection: close`),
/// with an `Authorization` header when `authorization` is set.
func httpGet(port: Int, _ path: String, authorization: String? = nil) async throws -> HTTPAnswer {
    try await httpRequest("GET", port: port, path, authorization: authorization)
}

/// Sends one request to 127.0.0.1:`port` over a new TCP connection and reads the whole answer.
func httpRequest(
    _ method: String, port: Int, _ path: String, body: String? = nil, authorization: String? = nil
) async throws -> HTTPAnswer {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.seconds(5))
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let text = try await channel.executeThenClose { inbound, outbound in
        let content = body.map { "Content-Type: application/json\r\nContent-Length: \($0.utf8.count)\r\n" } ?? ""
        try await outbound.write(
            ByteBuffer(
                string: "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + content
                    + (authorization.map { "Authorization: \($0)\r\n" } ?? "") + "\r\n" + (body ?? "")))
        var response = ByteBuffer()
        for try await var chunk in inbound { response.writeBuffer(&chunk) }
        return String(buffer: response)
    }
    guard let split = text.range(of: "\r\n\r\n") else {
        throw TroupeError.internalError("no HTTP header end in '\(text)'")
    }
    var lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst().split(separator: " ")
    guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
        throw TroupeError.internalError("bad HTTP status line in '\(text)'")
    }
    var headers: [String: String] = [:]
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPAnswer(status: status, headers: headers, body: String(text[split.upperBound...]))
}

@Suite("Admin HTTP endpoint")
struct AdminEndpointTests {
    @Test func healthzAnswersAndReadyzWaitsForAHostToRegister() async throws {
        try await withSidecar(host: false) { harness in
            let port = try #require(harness.sidecar.adminPort)
            let health = try await httpGet(port: port, "/healthz")
            #expect(health.status == 200)
            #expect(health.body == "ok\n")

            let unready = try await httpGet(port: port, "/readyz")
            #expect(unready.status == 503)
            #expect(unready.body.contains("host: no host has registered an actor type"), "\(unready.body)")
            #expect(unready.body.contains("store: ok"))
            #expect(unready.body.contains("draining: ok"))

            let host = try TroupeHost(
                system: harness.configuration.system, endpoint: harness.endpoint, actors: testActorTypes)
            let running = Task { try await host.run() }
            defer { running.cancel() }
            try await harness.waitForRegistration(of: "counter")
            let ready = try await httpGet(port: port, "/readyz")
            #expect(ready.status == 200)
            #expect(ready.body == "ready\ndraining: ok\nhost: ok\nstore: ok\n")
        }
    }

    @Test func readyzFailsWhileTheStoreDoesNotAnswer() async throws {
        try await withSidecar(store: "sqlite") { harness in
            let port = try #require(harness.sidecar.adminPort)
            try await harness.waitForRegistration(of: "counter")
            #expect(try await httpGet(port: port, "/readyz").status == 200)
            // The SQLite store closed under the sidecar: reads fail, the sidecar must say so.
            try await harness.sidecar.directory.store.close()
            let answer = try await httpGet(port: port, "/readyz")
            #expect(answer.status == 503)
            #expect(answer.body.contains("store: sqlite"), "\(answer.body)")
            #expect(answer.body.contains("does not answer"), "\(answer.body)")
            #expect(try await httpGet(port: port, "/healthz").status == 200)
        }
    }

    @Test func metricsServeTheRegistryInPrometheusTextFormat() async throws {
        let registry = PrometheusCollectorRegistry()
        let descriptor = MetricNameDescriptor(
            namespace: "troupe", subsystem: "test", metricName: "requests", unitName: "total",
            helpText: "Requests counted by the test.")
        registry.makeCounter(descriptor: descriptor, labels: [("status", "ok")]).increment(by: Int64(3))
        try await withSidecar(host: false, metrics: registry) { harness in
            let port = try #require(harness.sidecar.adminPort)
            let answer = try await httpGet(port: port, "/metrics")
            #expect(answer.status == 200)
            #expect(answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(answer.body.contains("# TYPE troupe_test_requests_total counter\n"), "\(answer.body)")
            #expect(answer.body.contains("troupe_test_requests_total{status=\"ok\"} 3\n"), "\(answer.body)")
            #expect(try await httpGet(port: port, "/nothing-here").status == 404)
        }
    }

    @Test func adminListenOffStartsNoEndpointAndBadValuesAreRefused() async throws {
        func adminOff(_ configuration: inout SidecarConfiguration) { configuration.adminListen = nil }
        try await withSidecar(host: false, configure: adminOff) { harness in
            #expect(harness.sidecar.adminPort == nil)
        }
        var configuration = SidecarConfiguration()
        #expect(configuration.adminListen == "127.0.0.1:9090")
        try configuration.set("admin-listen", to: "off")
        #expect(configuration.adminListen == nil)
        try configuration.set("admin-listen", to: "0.0.0.0:9100")
        #expect(configuration.adminListen == "0.0.0.0:9100")
        for bad in ["9090", "host:", "host:70000", ":9090"] {
            let error = #expect(throws: TroupeError.self) { try configuration.set("admin-listen", to: bad) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("admin-listen") == true, "\(error?.message ?? "")")
        }
    }
}

/// Port of the admin endpoint a sidecar process logged (it listens on port 0 in tests).
func adminPort(of sidecar: ChildProcess) async throws -> Int {
    try await loggedPort(of: sidecar, scheme: "http", after: "admin endpoint listening")
}

/// A troupe-sidecar process and a troupe-test-host serving the test actors, with the sidecar's
/// admin endpoint on a port it chose, once `/readyz` answers 200.
struct ReadySidecar {
    let socket: String
    let sidecar: ChildProcess
    let host: ChildProcess
    let adminPort: Int

    static func start(system: String, in directory: TemporaryDirectory, _ extra: [String] = []) async throws
        -> ReadySidecar
    {
        let socket = directory.path("troupe.sock")
        let sidecar = try ChildProcess(
            "troupe-sidecar", ["--system", system, "--socket", socket, "--admin-listen", "127.0.0.1:0"] + extra,
            logPath: directory.path("sidecar.log"))
        let host = try ChildProcess("troupe-test-host", [socket, system], logPath: directory.path("host.log"))
        let ready = ReadySidecar(socket: socket, sidecar: sidecar, host: host, adminPort: 0)
        do {
            let port = try await TroupeSidecarTests.adminPort(of: sidecar)
            try await waitFor("/readyz to answer 200") { (try? await httpGet(port: port, "/readyz"))?.status == 200 }
            return ReadySidecar(socket: socket, sidecar: sidecar, host: host, adminPort: port)
        } catch {
            ready.kill9()
            throw error
        }
    }

    /// Kills both processes if they still run. For cleanup paths.
    func kill9() {
        sidecar.kill9()
        host.kill9()
    }
}

/// The port in the first `SCHEME://127.0.0.1:PORT` of a log line that contains `message`.
func loggedPort(of sidecar: ChildProcess, scheme: String, after message: String) async throws -> Int {
    var port: Int?
    try await waitFor("'\(message)' in the sidecar's log") {
        guard sidecar.isRunning else { throw TroupeError.unavailable("the sidecar exited:\n\(sidecar.log)") }
        for line in sidecar.log.split(separator: "\n") where line.contains(message) {
            if let range = line.range(of: scheme + #"://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                port = Int(line[range].split(separator: ":").last ?? "")
            }
        }
        return port.map { $0 > 0 } ?? false
    }
    return try #require(port)
}

@Suite("Admin HTTP endpoint of a sidecar process", .serialized)
struct AdminEndpointProcessTests {
    @Test func metricsCountActivationsAndReadyzFailsDuringTheDrain() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let processes = try await ReadySidecar.start(
            system: "admin", in: directory, ["--store", "memory", "--drain-timeout-ms", "30000"])
        defer { processes.kill9() }
        let (socket, sidecar, host, port) = (processes.socket, processes.sidecar, processes.host, processes.adminPort)
        let client = try await TroupeClient.connect(system: "admin", to: .unix(path: socket))
        for amount in [1, 2] { let _: Int = try await client.invoke("counter", action: "add", amount) }
        let metrics = try await httpGet(port: port, "/metrics")
        #expect(metrics.body.contains("troupe_activations_total 1\n"), "\(metrics.body)")
        #expect(metrics.body.contains("troupe_active_actors 1"), "\(metrics.body)")

        // A call in flight keeps the sidecar draining after SIGTERM; meanwhile it is not ready.
        // Long enough that a loaded machine still polls /readyz while it runs: 12 s was not,
        // once, in the first seconds of the parallel suite.
        let slow = inBackground {
            try await client.invoke("sleeper", action: "sleep", 20_000, as: Int.self, timeout: .seconds(50))
        }
        try await waitFor("the sleeper to be active", timeout: .seconds(10)) {
            (try? await httpGet(port: port, "/metrics"))?.body.contains("troupe_activations_total 2\n") == true
        }
        sidecar.signal(SIGTERM)
        var draining: HTTPAnswer?
        var healthDuringDrain: Int?
        try await waitFor("/readyz to report the drain", timeout: .seconds(20)) {
            guard let answer = try? await httpGet(port: port, "/readyz"), answer.status == 503 else { return false }
            draining = answer
            // Asked at once, while the drain is known to be under way.
            healthDuringDrain = try await httpGet(port: port, "/healthz").status
            return true
        }
        #expect(draining?.body.contains("draining: shutting down") == true, "\(draining?.body ?? "")")
        #expect(healthDuringDrain == 200)
        _ = try (await slow.value).get()
        await client.close()
        #expect(try await sidecar.waitForExit(timeout: .seconds(30)) == 0, "sidecar log:\n\(sidecar.log)")
        host.signal(SIGTERM)
        try await host.waitForExit()
    }
}
