import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing
import TroupeActors
import TroupeCluster
import TroupeMembership
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// Real TLS handshakes between real transports on 127.0.0.1, with CAs and certificates made by
/// `openssl` in a temporary directory for each test.
@Suite("Cluster transport over mutual TLS", .serialized)
struct ClusterTLSTests {
    @Test func nodesWithCertificatesOfTheCAFormAClusterAndCallEachOther() async throws {
        let ca = try TestClusterCA()
        defer { ca.remove() }
        let a = try TLSNode("a", ca: ca)
        let b = try TLSNode("b", ca: ca)
        try await withTLSNodes([a, b]) { nodes in
            try await expectEcho(from: nodes[0], to: nodes[1])
            try await expectEcho(from: nodes[1], to: nodes[0])
            #expect(a.tls?.refusals == [:])
            #expect(b.tls?.refusals == [:])
        }
    }

    @Test func aPeerWithACertificateOfAnotherCAIsRefusedInBothDirectionsAndTheRefusalIsLoggedWithThePeer()
        async throws
    {
        let ca = try TestClusterCA()
        let other = try TestClusterCA(name: "troupe-other-ca")
        defer {
            ca.remove()
            other.remove()
        }
        let logs = RecordedLogs()
        let a = try TLSNode("a", ca: ca, logs: logs)
        // The intruder trusts the right CA, but its own certificate comes from another one.
        let intruder = try TLSNode(
            "intruder", files: try other.issue(node: "intruder", system: "test", trusting: ca.caFile))
        try await withTLSNodes([a, intruder]) { nodes in
            // The intruder calls a: a refuses its client certificate.
            let inbound = try await expectRefusal(from: nodes[1], to: nodes[0])
            #expect(inbound.code == .unavailable)
            try await waitFor("a to count the refusal") { a.tls?.refusals["untrusted_certificate"] == 1 }
            let logged = try #require(logs.entries.first { $0.message == "cluster TLS handshake refused" })
            #expect(logged.metadata["troupe.reason"] == "untrusted_certificate")
            #expect(logged.metadata["troupe.peer"]?.description.contains("127.0.0.1") == true)
            // a calls the intruder: a refuses its server certificate.
            let outbound = try await expectRefusal(from: nodes[0], to: nodes[1])
            #expect(outbound.code == .unavailable)
            #expect(outbound.details["reason"] == "untrusted_certificate", "\(outbound)")
            #expect(a.tls?.refusals["untrusted_certificate"] == 2)
        }
    }

    @Test func aPeerWithoutACertificateIsRefusedWhetherItSpeaksPlainTCPOrTLS() async throws {
        let ca = try TestClusterCA()
        defer { ca.remove() }
        let a = try TLSNode("a", ca: ca)
        let plain = TLSNode(plain: "plain")
        try await withTLSNodes([a, plain]) { nodes in
            // A node without TLS: its cluster handshake is not a TLS hello.
            _ = try await expectRefusal(from: nodes[1], to: nodes[0])
            try await waitFor("a to count the plain connection") { a.tls?.refusals["not_tls"] == 1 }

            // A TLS client that trusts the CA but has no certificate to show.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(ca.caFile)
            configuration.certificateVerification = .noHostnameVerification
            configuration.minimumTLSVersion = .tlsv13
            let context = try NIOSSLContext(configuration: configuration)
            let (host, port) = try #require(ClusterTransport.split(nodes[0].identity.address))
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                }
                .connect(host: host, port: port).get()
            // It may write, but a closes the connection without reading a byte from it.
            channel.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(30)) { channel.close(promise: nil) }  // bounded
            try await channel.closeFuture.get()
            try await waitFor("a to count the connection without a certificate") {
                a.tls?.refusals["no_certificate"] == 1
            }
        }
    }

    @Test func aPeerWhoseCertificateNamesAnotherActorSystemIsRefusedBeforeItsHandshakeIsRead() async throws {
        let ca = try TestClusterCA()
        defer { ca.remove() }
        let a = try TLSNode("a", ca: ca)
        // The same CA, but a certificate (and a configuration) of the ActorSystem "other".
        let stranger = try TLSNode("stranger", ca: ca, system: "other")
        try await withTLSNodes([a, stranger]) { nodes in
            let inbound = try await expectRefusal(from: nodes[1], to: nodes[0])
            #expect(inbound.code == .permissionDenied, "\(inbound)")
            #expect(inbound.message.contains("other"), "\(inbound)")
            try await waitFor("a to refuse the stranger's certificate") { a.tls?.refusals["wrong_system"] == 1 }
            let outbound = try await expectRefusal(from: nodes[0], to: nodes[1])
            #expect(outbound.code == .permissionDenied, "\(outbound)")
            #expect(a.tls?.refusals["wrong_system"] == 2)
        }
    }

    @Test func filesRotatedToANewCAAreUsedByNewConnectionsWithoutARestart() async throws {
        let old = try TestClusterCA(name: "troupe-old-ca")
        let new = try TestClusterCA(name: "troupe-new-ca")
        defer {
            old.remove()
            new.remove()
        }
        let mounted = old.directory + "/a-secret"
        let installed = try TestClusterCA.install(try old.issue(node: "a", system: "test"), in: mounted)
        let a = try TLSNode("a", files: installed, reloadEvery: .milliseconds(50))
        let b = try TLSNode("b", ca: old)
        let c = try TLSNode("c", ca: new)
        let d = try TLSNode("d", ca: old)
        try await withTLSNodes([a, b, c, d]) { nodes in
            try await expectEcho(from: nodes[1], to: nodes[0])
            _ = try await expectRefusal(from: nodes[2], to: nodes[0])

            // The Secret is updated: certificate, key and CA of the new CA.
            try TestClusterCA.install(try new.issue(node: "a", system: "test"), in: mounted)
            try await waitFor("a to reload its files") { a.tls?.generation == 2 }

            // New connections use the new files: a node of the new CA gets in (after its backoff)...
            try await waitFor("a node of the new CA to be accepted") {
                (try? await echo(from: nodes[2], to: nodes[0])) == "a"
            }
            // ...and a node of the old CA no longer does.
            let refused = try await expectRefusal(from: nodes[3], to: nodes[0])
            #expect(refused.code == .unavailable)
            // A connection opened before the rotation keeps its session.
            try await expectEcho(from: nodes[1], to: nodes[0])
        }
    }

    @Test func aRotatedFileThatCannotBeUsedIsLoggedAndTheCurrentCertificatesStay() async throws {
        let ca = try TestClusterCA()
        defer { ca.remove() }
        let mounted = ca.directory + "/a-secret"
        let installed = try TestClusterCA.install(try ca.issue(node: "a", system: "test"), in: mounted)
        let logs = RecordedLogs()
        let a = try TLSNode("a", files: installed, logs: logs)
        let b = try TLSNode("b", ca: ca)
        let tls = try #require(a.tls)
        try Data("not a certificate".utf8).write(to: URL(fileURLWithPath: installed.certificate))
        guard case .rejected(let error) = tls.reloadIfChanged() else {
            Issue.record("a file without a certificate was accepted")
            return
        }
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("cluster-tls-cert"), "\(error)")
        #expect(tls.reloadIfChanged() == .rejected(error), "the same content is refused again")
        #expect(logs.entries.filter { $0.level == .error }.count == 1, "logged once, not at every look")
        // A certificate that names another system is refused too.
        try TestClusterCA.install(try ca.issue(node: "a2", system: "other"), in: mounted)
        guard case .rejected(let wrong) = tls.reloadIfChanged() else {
            Issue.record("a certificate of another system was accepted")
            return
        }
        #expect(wrong.message.contains("troupe://test"), "\(wrong)")
        #expect(tls.generation == 1)
        try await withTLSNodes([a, b]) { nodes in
            try await expectEcho(from: nodes[1], to: nodes[0])
        }
    }

    @Test func theActorSystemIsReadFromTroupeURIsOnly() throws {
        let ca = try TestClusterCA()
        defer { ca.remove() }
        func systems(_ uris: [String]) throws -> [String] {
            let files = try ca.issue(node: "n\(uris.count)", system: "x", uris: uris)
            return ClusterCertificateIdentity.systems(
                of: try #require(try NIOSSLCertificate.fromPEMFile(files.certificate).first))
        }
        #expect(try systems(["spiffe://example.org/troupe/tickets", "troupe://tickets/n1"]) == ["tickets"])
        #expect(try systems(["troupe://tickets", "troupe://billing/x"]) == ["tickets", "billing"])
        #expect(try systems(["troupe:///n1", "https://tickets"]) == [])
        #expect(try systems([]) == [])
    }

    @Test func filesThatCannotBeUsedAreRefusedAtStartWithTheSettingNamed() throws {
        let ca = try TestClusterCA()
        defer { ca.remove() }
        let logger = Logger(label: "test.tls")
        let good = try ca.issue(node: "a", system: "test")
        let unnamed = try ca.issue(node: "u", system: "test", uris: [])
        let other = try ca.issue(node: "o", system: "test")
        let cases: [(ClusterTLSFiles, String)] = [
            (.init(certificate: unnamed.certificate, key: unnamed.key, ca: ca.caFile), "troupe://test"),
            (.init(certificate: good.certificate, key: other.key, ca: ca.caFile), "cluster-tls-key"),
            (.init(certificate: good.certificate, key: good.key, ca: good.key), "cluster-tls-ca"),
            (.init(certificate: ca.directory + "/missing.crt", key: good.key, ca: ca.caFile), "cluster-tls-cert"),
        ]
        for (files, named) in cases {
            let error = #expect(throws: TroupeError.self) {
                try ClusterTLS(files: files, system: "test", logger: logger)
            }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(named) == true, "\(String(describing: error))")
        }
        #expect(throws: Never.self) {
            _ = try ClusterTLS(
                files: .init(certificate: good.certificate, key: good.key, ca: ca.caFile), system: "test",
                logger: logger)
        }
    }
}

// MARK: Harness

/// One node's identity and TLS, before it runs.
struct TLSNode: Sendable {
    let name: String
    let system: String
    let tls: ClusterTLS?
    let reloadEvery: Duration
    let logs: RecordedLogs?

    init(
        _ name: String, files: TestClusterCA.NodeFiles, system: String = "test", reloadEvery: Duration = .seconds(5),
        logs: RecordedLogs? = nil
    ) throws {
        self.name = name
        self.system = system
        self.reloadEvery = reloadEvery
        self.logs = logs
        tls = try ClusterTLS(
            files: ClusterTLSFiles(certificate: files.certificate, key: files.key, ca: files.ca), system: system,
            logger: Self.logger(name, logs))
    }

    init(_ name: String, ca: TestClusterCA, system: String = "test", logs: RecordedLogs? = nil) throws {
        try self.init(name, files: try ca.issue(node: name, system: system), system: system, logs: logs)
    }

    /// A node without TLS.
    init(plain name: String) {
        self.name = name
        system = "test"
        tls = nil
        reloadEvery = .seconds(5)
        logs = nil
    }

    static func logger(_ name: String, _ logs: RecordedLogs?) -> Logger {
        guard let logs else {
            var logger = Logger(label: "test.cluster-tls.\(name)")
            logger.logLevel = .critical
            return logger
        }
        return Logger(label: "test.cluster-tls.\(name)") { _ in RecordingLogHandler(logs: logs) }
    }
}

/// Runs transports for `nodes` on ports chosen now, each knowing the others' addresses.
func withTLSNodes(_ nodes: [TLSNode], _ body: ([TestNode]) async throws -> Void) async throws {
    var running: [TestNode] = []
    defer { for node in running { node.stop() } }
    for (index, node) in nodes.enumerated() {
        let identity = NodeIdentity(name: node.name, address: "127.0.0.1:0", uid: UInt64(index + 1))
        let actorSystem = TroupeActorSystem(node: node.name)
        var configuration = ClusterTransport.Configuration(
            system: node.system, myself: identity, listenHost: "127.0.0.1", listenPort: 0)
        configuration.tls = node.tls
        configuration.tlsReloadInterval = node.reloadEvery
        // Short, so a test that retries after a refusal does not wait long for the link.
        configuration.backoff = ReconnectBackoff(initial: .milliseconds(20), maximum: .milliseconds(100))
        let transport = ClusterTransport(
            configuration: configuration, actorSystem: actorSystem, group: MultiThreadedEventLoopGroup.singleton,
            logger: TLSNode.logger(node.name, node.logs))
        let task = Task { try await transport.run() }
        try await waitFor("node \(node.name) to listen") { transport.boundPort != nil }
        let bound = NodeIdentity(name: node.name, address: "127.0.0.1:\(transport.boundPort ?? 0)", uid: identity.uid)
        actorSystem.serve(stableTarget: "test.echo") { _, _, reply in reply(.success(Data(node.name.utf8))) }
        running.append(TestNode(identity: bound, system: actorSystem, transport: transport, task: task))
    }
    for node in running {
        for other in running where other.identity.name != node.identity.name {
            node.transport.setAddress(of: other.identity)
        }
    }
    try await body(running)
    for node in running {
        node.stop()
        _ = await node.task.result
    }
}

/// The name `to` answers `test.echo` with, called from `from`.
func echo(from: TestNode, to: TestNode) async throws -> String {
    let data = try await from.system.start(
        RemoteCallEnvelope(
            recipient: TroupeActorID(node: to.identity.name, path: "x"), target: "test.echo", arguments: []),
        deadline: .now() + .seconds(10)
    ).get()
    return String(decoding: data ?? Data(), as: UTF8.self)
}

func expectEcho(from: TestNode, to: TestNode, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    #expect(try await echo(from: from, to: to) == to.identity.name, sourceLocation: sourceLocation)
}

/// The error a call from `from` to `to` fails with; the test fails if it succeeds.
func expectRefusal(from: TestNode, to: TestNode, sourceLocation: SourceLocation = #_sourceLocation) async throws
    -> TroupeError
{
    do {
        let answer = try await echo(from: from, to: to)
        Issue.record("node \(to.identity.name) answered \(answer) instead of refusing", sourceLocation: sourceLocation)
        throw TroupeError.internalError("not refused")
    } catch let error as TroupeError {
        return error
    }
}
