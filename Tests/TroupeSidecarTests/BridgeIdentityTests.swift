import Foundation
import Logging
import SwiftProtobuf
import Testing
import TroupeBridge
import TroupeNATS
import TroupeProto
import TroupeSidecar
import TroupeTestActors
import TroupeTestSupport

@testable import Troupe

/// A nats-server as an operator would run it for Troupe: TLS with a private CA, one user per
/// ActorSystem, and subject permissions that let each system publish calls and broadcasts only
/// under its own name (docs/bridge.md, "Trust"). `mallory` is a system that tries to pass as alpha.
private struct SecuredNATS {
    let server: NATSServer
    let certificates: TestCertificates

    static let systems = ["alpha", "beta", "mallory"]

    init() throws {
        let certificates = try TestCertificates()
        let users = Self.systems.map { system in
            """
                { user: \(system), password: \(system)-secret, permissions: {
                    publish: ["troupe.v1.*.invoke.\(system)", "troupe.v1.broadcast.\(system).*", "_INBOX.>"],
                    subscribe: ["troupe.v1.\(system).invoke.*", "troupe.v1.broadcast.*.*", "_INBOX.>"] } }
            """
        }
        let configuration = """
            tls {
              cert_file: "\(certificates.serverCertificate)"
              key_file: "\(certificates.serverKey)"
              ca_file: "\(certificates.caFile)"
              verify: true
            }
            authorization {
              users: [
            \(users.joined(separator: "\n"))
              ]
            }
            """
        let file = certificates.directory + "/nats.conf"
        try configuration.write(toFile: file, atomically: true, encoding: .utf8)
        self.certificates = certificates
        self.server = try NATSServer(arguments: ["-c", file])
    }

    var url: String { "tls://127.0.0.1:\(server.port)" }

    /// The sidecar settings of `system`: its own user, the CA and a client certificate.
    func configure(_ system: String) -> @Sendable (inout SidecarConfiguration) -> Void {
        let url = url
        let certificates = certificates
        return { configuration in
            configuration.natsServers = [url]
            configuration.natsUser = system
            configuration.natsPassword = "\(system)-secret"
            configuration.natsTLSCAFile = certificates.caFile
            configuration.natsTLSCertificateFile = certificates.clientCertificate
            configuration.natsTLSKeyFile = certificates.clientKey
        }
    }

    /// A plain NATS client with `system`'s credentials: what a compromised or hostile system has.
    func client(as system: String) async throws -> NATSConnection {
        var logger = Logger(label: "test.nats-\(system)")
        logger.logLevel = .critical
        var options = NATSOptions(servers: [url])
        options.user = system
        options.password = "\(system)-secret"
        options.tlsCAFile = certificates.caFile
        options.tlsCertificateFile = certificates.clientCertificate
        options.tlsKeyFile = certificates.clientKey
        return try await NATSConnection.connect(options, logger: logger)
    }

    func stop() {
        server.stop()
        certificates.remove()
    }
}

/// Beta lets alpha (only alpha) add to its counter and broadcast news to it.
private func withAlphaAndPolicedBeta(
    _ body: @Sendable (SecuredNATS, SidecarHarness, SidecarHarness) async throws -> Void
) async throws {
    let nats = try SecuredNATS()
    defer { nats.stop() }
    try await withSidecar(system: "alpha", configure: nats.configure("alpha")) { alpha in
        let beta = nats.configure("beta")
        try await withSidecar(
            system: "beta",
            configure: { configuration in
                beta(&configuration)
                configuration.bridgeAllowCalls = "alpha: counter/add"
                configuration.bridgeAllowBroadcasts = "alpha: news"
            }
        ) { beta in
            try await body(nats, alpha, beta)
        }
    }
}

/// A call to beta's counter that claims to come from alpha.
private func addClaimingAlpha(_ amount: Int) throws -> [UInt8] {
    var call = BridgeCall()
    call.version = 1
    call.callerSystem = "alpha"
    call.actor = "counter"
    call.action = "add"
    call.payload = try PayloadCoding.encode(amount)
    call.timeoutMs = 5000
    return try call.serializedBytes()
}

/// Mallory's two ways to pass as alpha in a call to beta: on alpha's subject (the NATS server
/// refuses the publish, so nobody answers) and on its own subject with alpha in the envelope
/// (beta refuses the mismatch). Returns beta's refusal of the second.
private func tryToCallBetaAsAlpha(_ mallory: NATSConnection) async throws -> WireFailure {
    await #expect(throws: TroupeError.self) {
        _ = try await mallory.request(
            BridgeSubjects.invoke("beta", from: "alpha"), payload: addClaimingAlpha(1000), timeout: .seconds(2))
    }
    let answer = try await mallory.request(
        BridgeSubjects.invoke("beta", from: "mallory"), payload: addClaimingAlpha(1000), timeout: .seconds(10))
    return try BridgeResult(serializedBytes: answer.payload).failure
}

@Suite("The caller's identity comes from its NATS credentials", .serialized)
struct BridgeIdentityTests {
    @Test func sidecarsCallAcrossATLSNATSWithTheirOwnCredentialsAndThePolicyAllowsTheirName() async throws {
        try await withAlphaAndPolicedBeta { _, alpha, beta in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            #expect(try await fromAlpha.invoke("counter", action: "add", 7, as: Int.self, system: "beta") == 7)
            // Beta, without a policy of alpha's, calls back under its own name.
            #expect(try await fromBeta.invoke("echo", action: "caller", as: String.self, system: "alpha") == "beta/-")
            #expect(try await fromAlpha.broadcast("news", action: "hear", "signed").bridged)
            try await waitFor("beta's listener to hear alpha") {
                let heard: [String] = try await fromBeta.invoke("listener", action: "heard")
                return heard.contains("alpha:signed")
            }
            await fromAlpha.close()
            await fromBeta.close()
        }
    }

    @Test func anotherSystemsCredentialsCannotPassAsAlphaInTheSubjectOrInTheEnvelope() async throws {
        try await withAlphaAndPolicedBeta { nats, _, beta in
            let mallory = try await nats.client(as: "mallory")
            let refused = try await tryToCallBetaAsAlpha(mallory)
            #expect(refused.code == .permissionDenied, "\(refused)")
            #expect(refused.details["caller_system"] == "mallory")
            #expect(refused.details["claimed_caller_system"] == "alpha")
            // Broadcasts the same way: neither alpha's subject nor alpha's name in the body.
            try mallory.publish(to: BridgeSubjects.broadcast("news", from: "alpha"), payload: news(from: "alpha", "a"))
            try mallory.publish(
                to: BridgeSubjects.broadcast("news", from: "mallory"), payload: news(from: "alpha", "b"))
            // A fence from the real alpha, on the same server: once heard, mallory's would be.
            let alpha = try await nats.client(as: "alpha")
            try alpha.publish(to: BridgeSubjects.broadcast("news", from: "alpha"), payload: news(from: "alpha", "fence"))
            let fromBeta = try await beta.client()
            var heard: [String] = []
            try await waitFor("beta's listener to hear alpha's fence") {
                heard = try await fromBeta.invoke("listener", action: "heard")
                return heard.contains("alpha:fence")
            }
            #expect(heard == ["alpha:fence"], "\(heard)")
            // Nothing mallory sent ran: the counter is untouched.
            #expect(try await fromBeta.invoke("counter", action: "get", as: Int.self) == 0)
            await mallory.drain(timeout: .seconds(5))
            await alpha.drain(timeout: .seconds(5))
            await fromBeta.close()
        }
    }

    @Test func aSidecarThatDoesNotTrustTheNATSServersCertificateDoesNotStart() async throws {
        let nats = try SecuredNATS()
        defer { nats.stop() }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = SidecarConfiguration()
        configuration.system = "alpha"
        configuration.store = "memory"
        configuration.socket = directory.path("troupe.sock")
        nats.configure("alpha")(&configuration)
        configuration.natsTLSCAFile = nats.certificates.otherCAFile
        var logger = Logger(label: "test.sidecar")
        logger.logLevel = .critical
        let configured = configuration
        let refused = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(configuration: configured, logger: logger)
        }
        #expect(refused?.message.contains("nats-url") == true, "\(String(describing: refused))")
    }
}

/// A nats-server in operator (JWT) mode with a `.creds` file per system, made by tools/nats-creds
/// (Go, built offline from Debian's nats-io packages) with the same per-system permissions.
private struct CredentialedNATS {
    let server: NATSServer
    let directory: TemporaryDirectory

    init() async throws {
        let directory = try TemporaryDirectory()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let script = """
            set -e
            cd '\(root)'
            GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOTOOLCHAIN=local \
              GOCACHE=/tmp/troupe-go-cache go build -o '\(directory.path("nats-creds"))' ./tools/nats-creds
            '\(directory.path("nats-creds"))' -out '\(directory.url.path)' \(SecuredNATS.systems.joined(separator: " "))
            """
        let (status, output) = try await runToCompletion("/bin/sh", ["-c", script], timeout: .seconds(120))
        guard status == 0 else {
            directory.remove()
            throw NATSServerError(message: "tools/nats-creds failed (scripts/install-deps.sh installs its Go packages): \(output)")
        }
        self.directory = directory
        self.server = try NATSServer(arguments: ["-c", directory.path("server.conf")])
    }

    func credentials(_ system: String) -> String { directory.path("\(system).creds") }

    func stop() {
        server.stop()
        directory.remove()
    }
}

@Suite("NATS .creds files bind a system's name to its user JWT", .serialized)
struct BridgeCredentialsTests {
    @Test func sidecarsWithCredsFilesCallAcrossAndAnotherSystemsCredsCannotPassAsThem() async throws {
        let nats = try await CredentialedNATS()
        defer { nats.stop() }
        let url = nats.server.url
        let alphaCredentials = nats.credentials("alpha")
        let betaCredentials = nats.credentials("beta")
        try await withSidecar(
            system: "alpha",
            configure: { configuration in
                configuration.natsServers = [url]
                configuration.natsCredentialsFile = alphaCredentials
            }
        ) { alpha in
            try await withSidecar(
                system: "beta",
                configure: { configuration in
                    configuration.natsServers = [url]
                    configuration.natsCredentialsFile = betaCredentials
                    configuration.bridgeAllowCalls = "alpha: counter/add"
                }
            ) { beta in
                let fromAlpha = try await alpha.client()
                #expect(try await fromAlpha.invoke("counter", action: "add", 3, as: Int.self, system: "beta") == 3)

                var logger = Logger(label: "test.nats-mallory")
                logger.logLevel = .critical
                var options = NATSOptions(servers: [url])
                options.credentialsFile = nats.credentials("mallory")
                let mallory = try await NATSConnection.connect(options, logger: logger)
                #expect(try await tryToCallBetaAsAlpha(mallory).code == .permissionDenied)
                await mallory.drain(timeout: .seconds(5))

                let fromBeta = try await beta.client()
                #expect(try await fromBeta.invoke("counter", action: "get", as: Int.self) == 3)
                await fromAlpha.close()
                await fromBeta.close()
            }
        }
    }

    @Test func aSidecarWithoutCredentialsIsRefusedByAnOperatorModeServer() async throws {
        let nats = try await CredentialedNATS()
        defer { nats.stop() }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = SidecarConfiguration()
        configuration.system = "alpha"
        configuration.store = "memory"
        configuration.socket = directory.path("troupe.sock")
        configuration.natsServers = [nats.server.url]
        var logger = Logger(label: "test.sidecar")
        logger.logLevel = .critical
        let configured = configuration
        let refused = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(configuration: configured, logger: logger)
        }
        #expect(refused?.code == .unauthenticated, "\(String(describing: refused))")
    }
}
