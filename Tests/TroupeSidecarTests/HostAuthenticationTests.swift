import Foundation
import Logging
import Prometheus
import Testing
import Troupe
import TroupeProto
import TroupeSidecar
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

private let secret = "correct horse battery staple"

private func mode(of path: String) throws -> (mode: mode_t, type: mode_t) {
    var status = stat()
    guard lstat(path, &status) == 0 else { throw TroupeError.internalError("cannot stat \(path)") }
    return (status.st_mode & 0o7777, status.st_mode & S_IFMT)
}

private func refusalCode(_ body: WireFrame.OneOf_Body?) -> TroupeError.Code? {
    guard case .failure(let failure) = body else { return nil }
    return TroupeError(failure).code
}

/// A TCP listener on a free loopback port that requires `secret`.
private func tcpWithSecret(_ configuration: inout SidecarConfiguration) {
    configuration.listenTCP = "127.0.0.1:0"
    configuration.hostSecret = secret
}

/// A configuration for `Sidecar.start` on a socket at `socket`, that starts nothing else.
private func configuration(socket: String) -> SidecarConfiguration {
    var configuration = SidecarConfiguration()
    configuration.system = "test"
    configuration.socket = socket
    configuration.store = "memory"
    configuration.adminListen = nil
    return configuration
}

@Suite("Host authentication: socket permissions and the TCP secret", .serialized)
struct HostAuthenticationTests {
    @Test func socketDirectoryIsCreated0700AndTheSocket0600() async throws {
        func nested(_ configuration: inout SidecarConfiguration) {
            configuration.socket = (configuration.socket as NSString).deletingLastPathComponent + "/run/host.sock"
        }
        try await withSidecar(host: false, configure: nested) { harness in
            let socket = harness.configuration.socket
            let directory = try mode(of: (socket as NSString).deletingLastPathComponent)
            #expect(directory.type == S_IFDIR)
            #expect(directory.mode == 0o700, "mode \(String(directory.mode, radix: 8))")
            let file = try mode(of: socket)
            #expect(file.type == S_IFSOCK)
            #expect(file.mode == 0o600, "mode \(String(file.mode, radix: 8))")
            // The socket still serves its owner, without any secret.
            let client = try await harness.client()
            await client.close()
        }
    }

    @Test func socketDirectoryThatGroupOrOthersMayOpenIsRefusedAndLeftAlone() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let open = directory.path("open")
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false)
        #expect(chmod(open, 0o755) == 0)
        let error = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(
                configuration: configuration(socket: open + "/troupe.sock"), logger: Logger(label: "test"))
        }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message.contains("\(open) has mode 755") == true, "\(error?.message ?? "")")
        #expect(try mode(of: open).mode == 0o755, "the sidecar must not change a directory it did not create")
        #expect(!FileManager.default.fileExists(atPath: open + "/troupe.sock"))
    }

    @Test func socketDirectoryThatIsASymbolicLinkIsRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let target = directory.path("target")
        try FileManager.default.createDirectory(
            atPath: target, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try FileManager.default.createSymbolicLink(atPath: directory.path("link"), withDestinationPath: target)
        let error = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(
                configuration: configuration(socket: directory.path("link") + "/troupe.sock"),
                logger: Logger(label: "test"))
        }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message.contains("not a directory") == true, "\(error?.message ?? "")")
    }

    @Test(.enabled(if: geteuid() == 0, "only root can give a directory to another user"))
    func socketDirectoryOfAnotherUserIsRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let foreign = directory.path("foreign")
        try FileManager.default.createDirectory(
            atPath: foreign, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        #expect(chown(foreign, 65534, 65534) == 0)
        let error = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(
                configuration: configuration(socket: foreign + "/troupe.sock"), logger: Logger(label: "test"))
        }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message.contains("belongs to uid 65534") == true, "\(error?.message ?? "")")
    }

    @Test func tcpHostWithTheSecretRegistersAndServesAClientWithTheSecret() async throws {
        try await withSidecar(host: false, configure: tcpWithSecret) { harness in
            let port = try #require(harness.sidecar.tcpPort)
            let endpoint = Endpoint.tcp(host: "127.0.0.1", port: port)
            var logger = Logger(label: "test.host")
            logger.logLevel = .warning
            let host = try TroupeHost(
                system: "test", endpoint: endpoint, actors: testActorTypes, secret: secret, logger: logger)
            let running = Task { try await host.run() }
            defer { running.cancel() }
            _ = try await host.connected(timeout: .seconds(10))
            try await harness.waitForRegistration(of: "counter")

            let client = try await TroupeClient.connect(system: "test", to: endpoint, secret: secret)
            let total: Int = try await client.invoke("counter", action: "add", 5)
            #expect(total == 5)
            await client.close()
        }
    }

    @Test func tcpHelloWithoutOrWithAWrongSecretIsRefusedBeforeRegisterOrInvoke() async throws {
        try await withSidecar(host: false, configure: tcpWithSecret) { harness in
            let port = try #require(harness.sidecar.tcpPort)
            for (label, sent) in [("no secret", ""), ("wrong secret", "correct horse battery stapler")] {
                let raw = try await RawSocket.connect(host: "127.0.0.1", port: port)
                // Register and invoke right behind the Hello, as an attacker would pipeline them.
                var register = WireRegisterRequest()
                var definition = WireActorDefinition()
                definition.name = "intruder"
                register.actors = [definition]
                var invoke = WireInvokeRequest()
                invoke.actor.name = "counter"
                invoke.action = "add"
                try await raw.send([(1, RawSocket.hello(secret: sent)), (2, .register(register)), (3, .invoke(invoke))])
                let answer = try await raw.answer(to: 1)
                #expect(refusalCode(answer) == .unauthenticated, "\(label): \(String(describing: answer))")
                if case .failure(let failure) = answer {
                    #expect(!failure.message.contains(sent) || sent.isEmpty, "\(label): the refusal echoes the secret")
                }
                #expect(await raw.closedBySidecar(), "\(label)")
                let frames = try await raw.receive(count: 1)
                #expect(frames.count == 1, "\(label): only the refusal is answered, got \(frames)")
            }
            // Nothing registered: the intruder's type is unknown to the sidecar.
            let connection = try await harness.connection()
            defer { connection.close() }
            guard case .sidecar(let info) = try await connection.call(.describeSidecar(.init()), timeout: .seconds(5))
            else {
                Issue.record("describe_sidecar did not answer")
                return
            }
            #expect(info.registered.isEmpty)

            // The SDK sees the refusal as a typed error.
            let endpoint = Endpoint.tcp(host: "127.0.0.1", port: port)
            let error = await #expect(throws: TroupeError.self) {
                _ = try await TroupeClient.connect(system: "test", to: endpoint, secret: "guess")
            }
            #expect(error?.code == .unauthenticated)
        }
    }

    @Test func cliSendsTheSecretFromTheFlagOrTheVariable() async throws {
        try await withSidecar(configure: tcpWithSecret) { harness in
            let port = try #require(harness.sidecar.tcpPort)
            let arguments = ["invoke", "test", "counter", "add", "--json", "3", "--socket", "tcp://127.0.0.1:\(port)"]
            let (refused, refusal) = try await runToCompletion("troupe", arguments)
            #expect(refused == 1)
            #expect(refusal.contains("error: unauthenticated"), "\(refusal)")
            let (wrong, wrongOutput) = try await runToCompletion(
                "troupe", arguments, environment: ["TROUPE_HOST_SECRET": "not it"])
            #expect(wrong == 1)
            #expect(wrongOutput.contains("error: unauthenticated"), "\(wrongOutput)")

            let (byVariable, first) = try await runToCompletion(
                "troupe", arguments, environment: ["TROUPE_HOST_SECRET": secret])
            #expect(byVariable == 0, "\(first)")
            #expect(first.trimmingCharacters(in: .whitespacesAndNewlines) == "3")
            let (byFlag, second) = try await runToCompletion("troupe", arguments + ["--secret", secret])
            #expect(byFlag == 0, "\(second)")
            #expect(second.trimmingCharacters(in: .whitespacesAndNewlines) == "6")
        }
    }

    @Test func unixSocketNeedsNoSecretWhenTCPHasOne() async throws {
        // withSidecar's own host connects over the Unix socket without a secret.
        try await withSidecar(configure: tcpWithSecret) { harness in
            let client = try await harness.client()
            let total: Int = try await client.invoke("counter", action: "add", 2)
            #expect(total == 2)
            await client.close()
        }
    }

    @Test func tcpListenerOnANonLoopbackAddressWithoutASecretRefusesToStart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for listen in ["0.0.0.0:0", "[::]:0", "10.1.2.3:7600", "sidecar.example:7600"] {
            var config = configuration(socket: directory.path("troupe.sock"))
            try config.set("listen-tcp", to: listen)
            let error = await #expect(throws: TroupeError.self) {
                _ = try await Sidecar.start(configuration: config, logger: Logger(label: "test"))
            }
            #expect(error?.code == .failedPrecondition, "\(listen)")
            #expect(error?.message.contains("host-secret") == true, "\(listen): \(error?.message ?? "")")
            #expect(error?.message.contains("TROUPE_HOST_SECRET") == true)
        }
        // Loopback may go without: only processes in this network namespace reach it.
        for listen in ["127.0.0.1:0", "localhost:0", "[::1]:0"] {
            var config = configuration(socket: directory.path("troupe.sock"))
            try config.set("listen-tcp", to: listen)
            #expect(throws: Never.self, "\(listen)") { try config.checkHostAuthentication() }
        }
        var config = configuration(socket: directory.path("troupe.sock"))
        try config.set("listen-tcp", to: "0.0.0.0:0")
        try config.set("host-secret", to: secret)
        #expect(throws: Never.self) { try config.checkHostAuthentication() }
    }
}

@Suite("Host and admin authentication of a sidecar process", .serialized)
struct AuthenticationProcessTests {
    @Test func refusalsAreCountedMetricsNeedTheTokenAndNoSecretIsLogged() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let adminToken = "admin-token-7f3a"
        // Port 0, read back from the log: a port picked free beforehand may be taken by a
        // parallel test before the sidecar binds it.
        let sidecar = try ChildProcess(
            "troupe-sidecar",
            [
                "--system", "auth", "--socket", directory.path("troupe.sock"), "--store", "memory",
                "--listen-tcp", "127.0.0.1:0", "--log-level", "debug",
            ],
            logPath: directory.path("sidecar.log"),
            environment: ["TROUPE_HOST_SECRET": secret, "TROUPE_ADMIN_TOKEN": adminToken])
        defer { sidecar.kill9() }
        let admin = try await adminPort(of: sidecar)
        let port = try await loggedPort(of: sidecar, scheme: "tcp", after: "listening for hosts")
        let endpoint = Endpoint.tcp(host: "127.0.0.1", port: port)
        try await waitFor("the TCP listener", timeout: .seconds(20)) {
            guard let client = try? await TroupeClient.connect(system: "auth", to: endpoint, secret: secret) else {
                return false
            }
            await client.close()
            return true
        }
        for (sent, times) in [(nil, 2), ("wrong", 3)] as [(String?, Int)] {
            for _ in 0..<times {
                let error = await #expect(throws: TroupeError.self) {
                    _ = try await TroupeClient.connect(system: "auth", to: endpoint, secret: sent)
                }
                #expect(error?.code == .unauthenticated)
            }
        }

        let unauthorized = try await httpGet(port: admin, "/metrics")
        #expect(unauthorized.status == 401)
        #expect(unauthorized.headers["www-authenticate"] == "Bearer")
        #expect(try await httpGet(port: admin, "/metrics", authorization: "Bearer nope").status == 401)
        #expect(try await httpGet(port: admin, "/healthz").status == 200)
        let metrics = try await httpGet(port: admin, "/metrics", authorization: "Bearer \(adminToken)")
        #expect(metrics.status == 200)
        #expect(
            metrics.body.contains("troupe_host_unauthenticated_total{reason=\"missing_secret\"} 2\n"), "\(metrics.body)"
        )
        #expect(
            metrics.body.contains("troupe_host_unauthenticated_total{reason=\"wrong_secret\"} 3\n"), "\(metrics.body)")
        #expect(metrics.body.contains("troupe_admin_unauthorized_total 2\n"), "\(metrics.body)")

        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit(timeout: .seconds(30)) == 0)
        let log = sidecar.log
        #expect(log.contains("handshake refused: unauthenticated"), "\(log)")
        #expect(!log.contains(secret), "the host secret appears in the log")
        #expect(!log.contains(adminToken), "the admin token appears in the log")
    }

    @Test func sidecarProcessWithTCPOnAllAddressesAndNoSecretExitsNamingTheSetting() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (status, output) = try await runToCompletion(
            "troupe-sidecar",
            [
                "--system", "auth", "--socket", directory.path("troupe.sock"), "--store", "memory", "--listen-tcp",
                "0.0.0.0:0",
            ])
        #expect(status != 0)
        #expect(output.contains("host-secret"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path("troupe.sock")))
    }
}

@Suite("Admin endpoint bearer token", .serialized)
struct AdminTokenTests {
    @Test func metricsNeedTheBearerTokenWhileProbesStayOpen() async throws {
        func token(_ configuration: inout SidecarConfiguration) { configuration.adminToken = "s3cret-token" }
        try await withSidecar(host: false, configure: token) { harness in
            let port = try #require(harness.sidecar.adminPort)
            #expect(try await httpGet(port: port, "/healthz").status == 200)
            #expect(try await httpGet(port: port, "/readyz").status == 503)  // no host yet, but answered
            let missing = try await httpGet(port: port, "/metrics")
            #expect(missing.status == 401)
            #expect(missing.body.contains("Authorization: Bearer"))
            for wrong in [
                "Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token", "s3cret-token", "Bearer ",
            ] {
                #expect(try await httpGet(port: port, "/metrics", authorization: wrong).status == 401, "\(wrong)")
            }
            for right in ["Bearer s3cret-token", "bearer s3cret-token"] {
                let answer = try await httpGet(port: port, "/metrics", authorization: right)
                #expect(answer.status == 200, "\(right)")
                #expect(answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            }
        }
    }

    @Test func metricsOnANonLoopbackAddressWithoutATokenAreForbiddenAndProbesServed() async throws {
        // Bound to every address; the test still only talks to 127.0.0.1.
        func everyAddress(_ configuration: inout SidecarConfiguration) { configuration.adminListen = "0.0.0.0:0" }
        try await withSidecar(host: false, configure: everyAddress) { harness in
            let port = try #require(harness.sidecar.adminPort)
            #expect(try await httpGet(port: port, "/healthz").status == 200)
            #expect(try await httpGet(port: port, "/readyz").status == 503)
            let metrics = try await httpGet(port: port, "/metrics")
            #expect(metrics.status == 403)
            #expect(metrics.body.contains("admin-token"), "\(metrics.body)")
            #expect(try await httpGet(port: port, "/metrics", authorization: "Bearer anything").status == 403)
        }
    }

    @Test func metricsOnLoopbackWithoutATokenAreServed() async throws {
        try await withSidecar(host: false) { harness in
            let port = try #require(harness.sidecar.adminPort)
            #expect(try await httpGet(port: port, "/metrics").status == 200)
        }
    }
}
