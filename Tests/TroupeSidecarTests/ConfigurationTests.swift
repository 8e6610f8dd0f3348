import Foundation
import Testing
import TroupeSidecar
import TroupeTestActors
import TroupeWire

@Suite("Sidecar configuration")
struct ConfigurationTests {
    @Test func laterSourcesOverrideEarlierOnes() throws {
        var configuration = SidecarConfiguration()
        try configuration.apply(yaml: "system: from-file\nmailbox-capacity: 10\nidle-timeout-ms: 1000\n")
        try configuration.apply(environment: ["TROUPE_MAILBOX_CAPACITY": "20", "TROUPE_UNRELATED": "x", "HOME": "/"])
        try configuration.set("idle-timeout-ms", to: "3000")
        #expect(configuration.system == "from-file")
        #expect(configuration.mailboxCapacity == 20)
        #expect(configuration.idleTimeoutMs == 3000)
        #expect(configuration.store == "sqlite")
    }

    @Test func unknownKeysAndBadValuesAreRefusedWithTheirName() {
        var configuration = SidecarConfiguration()
        let unknown = #expect(throws: TroupeError.self) { try configuration.apply(yaml: "mailbox-capacty: 3") }
        #expect(unknown?.message.contains("mailbox-capacty") == true)
        let env = #expect(throws: TroupeError.self) { try configuration.apply(environment: ["TROUPE_STORE": "mongo"]) }
        #expect(env?.message.contains("TROUPE_STORE") == true)
        #expect(throws: TroupeError.self) { try configuration.apply(yaml: "- a\n- b") }
        #expect(throws: TroupeError.self) { try configuration.apply(yaml: "system: [a, b]") }
        #expect(throws: TroupeError.self) { try configuration.apply(yaml: "system: \"unterminated") }
        #expect(throws: TroupeError.self) { try configuration.set("max-frame-bytes", to: "-1") }
        #expect(throws: TroupeError.self) { try configuration.set("listen-tcp", to: "nohost") }
    }

    @Test func theFailureDetectorSettingsReachTheClusterMembershipAndRefuseValuesOutOfRange() async throws {
        var parsed = SidecarConfiguration()
        try parsed.apply(yaml: "cluster-probe-interval-ms: 1500\ncluster-ping-timeout-ms: 600\n")
        try parsed.apply(environment: [
            "TROUPE_CLUSTER_INDIRECT_TIMEOUT_MS": "900", "TROUPE_CLUSTER_SUSPICION_TIMEOUT_MS": "4000",
        ])
        let detector = parsed.clusterFailureDetector
        #expect(detector.probeInterval == 1500)
        #expect(detector.pingTimeout == 600)
        #expect(detector.indirectTimeout == 900)
        #expect(detector.suspicionTimeout == 4000)
        for (key, value) in [
            ("cluster-probe-interval-ms", "49"), ("cluster-ping-timeout-ms", "0"),
            ("cluster-indirect-timeout-ms", "60001"), ("cluster-suspicion-timeout-ms", "99"),
        ] {
            let refusal = #expect(throws: TroupeError.self) { try parsed.set(key, to: value) }
            #expect(refusal?.message.contains(key) == true, "\(String(describing: refusal))")
        }
        #expect(parsed.clusterFailureDetector == detector)

        let port = try LoopbackPort.free()
        try await withSidecar(
            store: "memory",
            configure: {
                $0.clusterListen = "127.0.0.1:\(port)"
                $0.clusterFailureDetector = detector
            }
        ) { harness in
            #expect(harness.sidecar.cluster?.membership.configuration.swim == detector)
        }
    }

    @Test func aYAMLAliasBombIsRefusedWithoutBeingExpanded() throws {
        // Nine levels of ten aliases each: 10^9 strings if the document were turned into values.
        let bomb = try String(contentsOf: fuzzInput("FuzzConfiguration", "alias-bomb.yaml"), encoding: .utf8)
        var configuration = SidecarConfiguration()
        let refusal = #expect(throws: TroupeError.self) { try configuration.apply(yaml: bomb) }
        #expect(refusal?.code == .invalidArgument)
        #expect(refusal?.message.contains("must be a scalar") == true)
        // An alias of a scalar is still a scalar.
        try configuration.apply(yaml: "node: &name tickets\nsystem: *name\n")
        #expect(configuration.system == "tickets" && configuration.node == "tickets")
    }

    @Test func aConnectionBufferSmallerThanOneFrameIsRefusedNamingBothSettings() throws {
        var configuration = SidecarConfiguration()
        try configuration.apply(yaml: "max-frame-bytes: 1048576\nmax-connection-buffer-bytes: 65536\n")
        let refusal = #expect(throws: TroupeError.self) { try configuration.check() }
        #expect(refusal?.code == .invalidArgument)
        #expect(refusal?.message.contains("max-connection-buffer-bytes") == true)
        #expect(refusal?.message.contains("max-frame-bytes") == true)
        try configuration.set("max-connection-buffer-bytes", to: "\(1_048_576 + HostProtocol.headerSize)")
        try configuration.check()
    }

    @Test func everySettingHasAFlagAndIsDocumented() async throws {
        let (_, help) = try await runToCompletion("troupe-sidecar", ["--help"])
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/configuration.md")
        let documentation = try String(contentsOf: docs, encoding: .utf8)
        for setting in SidecarConfiguration.settings {
            #expect(help.contains(setting.flag), "troupe-sidecar has no \(setting.flag)")
            #expect(
                documentation.contains("`\(setting.environmentVariable)`"),
                "docs/configuration.md lacks \(setting.environmentVariable)")
            #expect(documentation.contains("`\(setting.key)`"), "docs/configuration.md lacks \(setting.key)")
        }
    }
}

/// An input that broke a fuzz target's code, kept for its regression test
/// (fuzz/regressions/<target>/<name>).
func fuzzInput(_ target: String, _ name: String) -> URL {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return root.appendingPathComponent("fuzz/regressions/\(target)/\(name)")
}
