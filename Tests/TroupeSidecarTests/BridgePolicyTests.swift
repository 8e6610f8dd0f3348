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

/// Beta's policy in these tests: alpha may add to counters, use accounts and broadcast news;
/// every system may ask echo who called.
private let betaCalls = "alpha: counter/add, account/*; *: echo/caller"
private let betaBroadcasts = "alpha: news"

/// Alpha and gamma (no policy) and beta (with the policy above), bridged through one real
/// nats-server; alpha and beta run an SDK host of the test actors, gamma only calls.
private func withPolicedBeta(
    _ body: @Sendable (NATSServer, SidecarHarness, SidecarHarness, SidecarHarness) async throws -> Void
) async throws {
    let server = try NATSServer()
    defer { server.stop() }
    let url = server.url
    try await withSidecar(system: "alpha", configure: bridged(to: url)) { alpha in
        try await withSidecar(
            system: "beta",
            configure: { configuration in
                configuration.natsServers = [url]
                configuration.bridgeAllowCalls = betaCalls
                configuration.bridgeAllowBroadcasts = betaBroadcasts
            }
        ) { beta in
            try await withSidecar(system: "gamma", host: false, configure: bridged(to: url)) { gamma in
                try await body(server, alpha, beta, gamma)
            }
        }
    }
}

/// A NATS client that is no sidecar: it can claim any system in what it publishes.
private func rawNATS(_ server: NATSServer) async throws -> NATSConnection {
    var logger = Logger(label: "test.raw-nats")
    logger.logLevel = .warning
    return try await NATSConnection.connect(NATSOptions(servers: [server.url]), logger: logger)
}

/// A broadcast of `hear(text)` on `news` whose envelope names `origin`.
func news(from origin: String, _ text: String) throws -> [UInt8] {
    var message = BridgeBroadcast()
    message.version = 1
    message.originSystem = origin
    message.channel = "news"
    message.action = "hear"
    message.payload = try PayloadCoding.encode(text)
    return try message.serializedBytes()
}

/// Publishes a broadcast of `hear(text)` on `news` as system `origin`'s sidecar would.
private func publishNews(on nats: NATSConnection, from origin: String, _ text: String) throws {
    try nats.publish(to: "troupe.v1.broadcast.\(origin).news", payload: news(from: origin, text))
}

@Suite("Cross-system authorization on the bridge", .serialized)
struct BridgePolicyTests {
    @Test func allowedCallsPassAndOtherTypesActionsAndSystemsArePermissionDeniedWithoutRunning() async throws {
        try await withPolicedBeta { _, alpha, beta, gamma in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            let fromGamma = try await gamma.client()
            #expect(try await fromAlpha.invoke("counter", action: "add", 5, as: Int.self, system: "beta") == 5)
            // An action the policy does not list for alpha's type.
            await expectCode(.permissionDenied) {
                let _: Int = try await fromAlpha.invoke("counter", action: "get", system: "beta")
            }
            // A type the policy does not list for alpha (echo/echo; only echo/caller is open).
            await expectCode(.permissionDenied) {
                let _: String = try await fromAlpha.invoke("echo", action: "echo", "x", system: "beta")
            }
            // A wildcard caller rule lets every system in, alpha and gamma alike.
            #expect(try await fromAlpha.invoke("echo", action: "caller", as: String.self, system: "beta") == "alpha/-")
            #expect(try await fromGamma.invoke("echo", action: "caller", as: String.self, system: "beta") == "gamma/-")
            // A system the policy does not name.
            await expectCode(.permissionDenied) {
                let _: Int = try await fromGamma.invoke("counter", action: "add", 100, system: "beta")
            }
            // An unnamed actor: allowed by its type, which the call names with spawn_from.
            let balance = try await fromAlpha.invoke(
                "acct-1", action: "deposit", 30, as: Int.self, system: "beta", spawnFrom: "account")
            #expect(balance == 30)
            // Once active, its type is known to the bridge: a call by name alone passes.
            #expect(try await fromAlpha.invoke("acct-1", action: "deposit", 5, as: Int.self, system: "beta") == 35)
            // A named type is what runs, whatever spawn_from claims: echo/echo stays denied.
            await expectCode(.permissionDenied) {
                let _: String = try await fromAlpha.invoke(
                    "echo", action: "echo", "x", system: "beta", spawnFrom: "account")
            }
            // Denied calls never ran: beta's counter has only alpha's 5.
            #expect(try await fromBeta.invoke("counter", action: "get", as: Int.self) == 5)
            // The policy is beta's: alpha, without one, takes everything from beta.
            #expect(
                try await fromBeta.invoke("echo", action: "echo", "back", as: String.self, system: "alpha") == "back")
            await fromAlpha.close()
            await fromBeta.close()
            await fromGamma.close()
        }
    }

    @Test func theDenialNamesTheCallerTypeAndActionAndACallWithUnknownTypeIsDenied() async throws {
        try await withPolicedBeta { server, _, _, _ in
            let nats = try await rawNATS(server)
            var call = try bridgeCall(actor: "counter", action: "get", text: "")
            call.callerSystem = "alpha"
            let denied = try await rawCall(nats, "beta", call.serializedBytes(), as: "alpha").failure
            #expect(denied.code == .permissionDenied, "\(denied)")
            #expect(denied.details["caller_system"] == "alpha")
            #expect(denied.details["actor_type"] == "counter")
            #expect(denied.details["action"] == "get")
            // An unnamed actor called by name alone: its type is in the store, unknown to the
            // bridge before the call runs, so a policy cannot allow it.
            var byName = try bridgeCall(actor: "acct-9", action: "deposit", text: "")
            byName.callerSystem = "alpha"
            #expect(
                try await rawCall(nats, "beta", byName.serializedBytes(), as: "alpha").failure.code == .permissionDenied)
            await nats.drain(timeout: .seconds(5))
        }
    }

    @Test func aDeniedBroadcastDoesNotReachTheListenerWhileAnAllowedOneDoes() async throws {
        try await withPolicedBeta { server, alpha, beta, _ in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            #expect(try await fromAlpha.broadcast("news", action: "hear", "allowed").bridged)
            // From one publisher, in order: gamma's (denied) then alpha's fence (allowed). Once
            // the fence is heard, gamma's would have been heard before it.
            let nats = try await rawNATS(server)
            for (origin, text) in [("gamma", "denied"), ("alpha", "fence")] {
                try publishNews(on: nats, from: origin, text)
            }
            var heard: [String] = []
            // No order between publishers: alpha's sidecar's broadcast may come after the fence.
            try await waitFor("beta's listener to hear the fence and alpha's broadcast") {
                heard = try await fromBeta.invoke("listener", action: "heard")
                return heard.contains("alpha:fence") && heard.contains("alpha:allowed")
            }
            #expect(heard.sorted() == ["alpha:allowed", "alpha:fence"], "\(heard)")
            // Alpha has no policy: its listener heard gamma.
            try await waitFor("alpha's listener to hear gamma") {
                let heard: [String] = try await fromAlpha.invoke("listener", action: "heard")
                return heard.contains("gamma:denied")
            }
            await nats.drain(timeout: .seconds(5))
            await fromAlpha.close()
            await fromBeta.close()
        }
    }

    @Test func rulesMatchTheirCallerTypeAndActionAndStarMatchesAny() throws {
        let policy = try BridgePolicy(
            calls: "billing: account/deposit, account/get; reports: */read; *: echo/*;",
            broadcasts: "billing: prices, alerts; *: news; ops: *")
        #expect(policy.allowsCall(from: "billing", type: "account", action: "deposit"))
        #expect(policy.allowsCall(from: "billing", type: "account", action: "get"))
        #expect(!policy.allowsCall(from: "billing", type: "account", action: "close"))
        #expect(policy.allowsCall(from: "reports", type: "ledger", action: "read"))
        #expect(!policy.allowsCall(from: "reports", type: "ledger", action: "write"))
        #expect(policy.allowsCall(from: "anyone", type: "echo", action: "whatever"))
        #expect(!policy.allowsCall(from: "anyone", type: "account", action: "get"))
        #expect(policy.allowsBroadcast(from: "billing", channel: "alerts"))
        #expect(!policy.allowsBroadcast(from: "billing", channel: "audit"))
        #expect(policy.allowsBroadcast(from: "anyone", channel: "news"))
        #expect(policy.allowsBroadcast(from: "ops", channel: "audit"))
        // Names are compared exactly: no prefix or case folding.
        #expect(!policy.allowsCall(from: "Billing", type: "account", action: "get"))
        #expect(!policy.allowsBroadcast(from: "billing", channel: "price"))
    }

    @Test func malformedRulesAreRefusedNamingTheSetting() throws {
        let bad: [(String, String)] = [
            ("bridge-allow-calls", "alpha:counter"),  // no action
            ("bridge-allow-calls", "alpha counter/add"),  // no caller separator
            ("bridge-allow-calls", "al.pha:counter/add"),  // not a system name
            ("bridge-allow-calls", "alpha:counter/add,"),  // empty rule
            ("bridge-allow-calls", "alpha:coun ter/add"),
            ("bridge-allow-calls", "alpha:counter/a/b"),
            ("bridge-allow-broadcasts", "alpha:news.sport"),
            ("bridge-allow-broadcasts", "alpha"),
        ]
        for (key, value) in bad {
            var configuration = SidecarConfiguration()
            let error = #expect(throws: TroupeError.self) { try configuration.set(key, to: value) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.hasPrefix(key + ":") == true, "\(key)=\(value): \(error?.message ?? "")")
            var fromYAML = SidecarConfiguration()
            let yamlError = #expect(throws: TroupeError.self) {
                try fromYAML.apply(yaml: "\(key): \"\(value)\"", source: "sidecar.yaml")
            }
            #expect(yamlError?.message.contains(key) == true, "\(yamlError?.message ?? "")")
        }
        var configuration = SidecarConfiguration()
        #expect(try configuration.bridgePolicy() == nil)
        try configuration.set("bridge-allow-broadcasts", to: "*:*")
        let policy = try #require(try configuration.bridgePolicy())
        // Once a policy exists, what it does not list is denied: here every call.
        #expect(!policy.allowsCall(from: "alpha", type: "counter", action: "add"))
        #expect(policy.allowsBroadcast(from: "alpha", channel: "news"))
    }

    @Test func aSidecarProcessWithAMalformedPolicyExitsNamingTheSetting() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (status, output) = try await runToCompletion(
            "troupe-sidecar",
            [
                "--system", "beta", "--socket", directory.path("troupe.sock"), "--store", "memory",
                "--bridge-allow-calls", "alpha:counter",
            ])
        #expect(status != 0)
        #expect(output.contains("bridge-allow-calls"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: directory.path("troupe.sock")))
    }

    @Test func deniedCallsAndBroadcastsAreCountedByCallerSystem() async throws {
        let server = try NATSServer()
        defer { server.stop() }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let setup = SidecarProcess(directory: directory, system: "beta")
        let sidecar = try await setup.start(
            run: 1,
            extra: [
                "--nats-url", server.url, "--admin-listen", "127.0.0.1:0", "--bridge-allow-calls", "alpha:echo/echo",
                "--bridge-allow-broadcasts", "alpha:news",
            ])
        defer { sidecar.kill9() }
        let port = try await adminPort(of: sidecar)
        let nats = try await rawNATS(server)
        for (caller, action) in [("alpha", "add"), ("gamma", "echo"), ("gamma", "echo")] {
            var call = try bridgeCall(actor: "counter", action: action, text: "")
            call.callerSystem = caller
            #expect(
                try await rawCall(nats, "beta", call.serializedBytes(), as: caller).failure.code == .permissionDenied)
        }
        try publishNews(on: nats, from: "gamma", "denied")
        var body = ""
        try await waitFor("the denied broadcast to be counted") {
            body = try await httpGet(port: port, "/metrics").body
            return body.contains("troupe_bridge_broadcasts_denied_total{caller_system=\"gamma\"} 1\n")
        }
        #expect(body.contains("troupe_bridge_calls_denied_total{caller_system=\"alpha\"} 1\n"), "\(body)")
        #expect(body.contains("troupe_bridge_calls_denied_total{caller_system=\"gamma\"} 2\n"), "\(body)")
        await nats.drain(timeout: .seconds(5))
        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0, "sidecar log:\n\(sidecar.log)")
    }
}
