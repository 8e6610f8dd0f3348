import Foundation
import Logging
import SwiftProtobuf
import Testing
import TroupeNATS
import TroupeProto
import TroupeSidecar
import TroupeTestActors
import TroupeTestSupport

@testable import Troupe

/// Two in-process sidecars of systems `alpha` and `beta`, each with an SDK host of the test
/// actors, bridged through one real nats-server.
func withTwoSystems(
    betaMaxFrameBytes: UInt32? = nil,
    _ body: @Sendable (NATSServer, SidecarHarness, SidecarHarness) async throws -> Void
) async throws {
    let server = try NATSServer()
    defer { server.stop() }
    let alphaSettings = bridged(to: server.url)
    let betaSettings = bridged(to: server.url, maxFrameBytes: betaMaxFrameBytes)
    try await withSidecar(system: "alpha", configure: alphaSettings) { alpha in
        try await withSidecar(system: "beta", configure: betaSettings) { beta in
            try await body(server, alpha, beta)
        }
    }
}

/// Sidecar settings with a bridge to the NATS server at `url`.
func bridged(to url: String, maxFrameBytes: UInt32? = nil) -> @Sendable (inout SidecarConfiguration) -> Void {
    { configuration in
        configuration.natsServers = [url]
        if let maxFrameBytes { configuration.maxFrameBytes = maxFrameBytes }
    }
}

/// A bridge call as another sidecar would send it.
func bridgeCall(actor: String, action: String, text: String, timeoutMs: UInt32 = 5000) throws -> BridgeCall {
    var call = BridgeCall()
    call.version = 1
    call.callerSystem = "raw"
    call.actor = actor
    call.action = action
    call.payload = try PayloadCoding.encode(text)
    call.timeoutMs = timeoutMs
    return call
}

/// Sends raw bytes to `system`'s call subject for calls of `caller` and reads the answer.
func rawCall(_ nats: NATSConnection, _ system: String, _ bytes: [UInt8], as caller: String = "raw") async throws
    -> BridgeResult
{
    let message = try await nats.request(
        "troupe.v1.\(system).invoke.\(caller)", payload: bytes, timeout: .seconds(10))
    return try BridgeResult(serializedBytes: message.payload)
}

@Suite("Calls between ActorSystems over the NATS bridge", .serialized)
struct BridgeTests {
    @Test func clientsCallActorsOfTheOtherSystemBothWaysAndStateLivesThere() async throws {
        try await withTwoSystems { _, alpha, beta in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            #expect(try await fromAlpha.invoke("counter", action: "add", 5, as: Int.self, system: "beta") == 5)
            #expect(try await fromAlpha.invoke("counter", action: "add", 2, as: Int.self, system: "beta") == 7)
            // The state is beta's: beta's own clients see it, alpha's counter is untouched.
            #expect(try await fromBeta.invoke("counter", action: "get", as: Int.self) == 7)
            #expect(try await fromAlpha.invoke("counter", action: "get", as: Int.self) == 0)
            #expect(try await fromBeta.invoke("echo", action: "echo", "hi", as: String.self, system: "alpha") == "hi")
            let balance = try await fromBeta.invoke(
                "acct-1", action: "deposit", 30, as: Int.self, system: "alpha", spawnFrom: "account")
            #expect(balance == 30)
            await fromAlpha.close()
            await fromBeta.close()
        }
    }

    @Test func anActorCallsAnActorOfAnotherSystemWhichSeesTheCallerSystemTheBridgeSet() async throws {
        try await withTwoSystems { _, alpha, beta in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            let viaRelay = try await fromAlpha.invoke(
                "relay", action: "call", RelayRequest(system: "beta", actor: "echo", action: "caller", text: ""),
                as: String.self)
            #expect(viaRelay == "alpha/relay")
            let back = try await fromBeta.invoke(
                "relay", action: "call", RelayRequest(system: "alpha", actor: "echo", action: "echo", text: "ping"),
                as: String.self)
            #expect(back == "ping")
            #expect(try await fromBeta.invoke("echo", action: "caller", as: String.self, system: "alpha") == "beta/-")
            await fromAlpha.close()
            await fromBeta.close()
        }
    }

    @Test func forwardsAndPipesReachActorsOfAnotherSystemWithCallerAndMetadata() async throws {
        try await withTwoSystems { _, alpha, beta in
            let fromAlpha = try await alpha.client()
            // Alpha's redirect pipes 7 to beta's counter: beta's reply is the caller's, beta keeps the state.
            let piped = try await fromAlpha.invoke(
                "redirect", action: "to",
                RedirectRequest(actor: "counter", action: "add", system: "beta", pipe: true, value: 7), as: Int.self)
            #expect(piped == 7)
            let fromBeta = try await beta.client()
            #expect(try await fromBeta.invoke("counter", action: "get", as: Int.self) == 7)
            // A forward across: beta's echo sees alpha's redirect as its caller and the call's headers.
            let caller = try await fromAlpha.invoke(
                "redirect", action: "to", RedirectRequest(actor: "echo", action: "caller", system: "beta"),
                as: String.self)
            #expect(caller == "alpha/redirect")
            let headers = try await fromAlpha.invoke(
                "redirect", action: "to", RedirectRequest(actor: "echo", action: "metadata", system: "beta"),
                as: [String: String].self, metadata: ["trace": "x-1"])
            #expect(headers == ["trace": "x-1"])
            await fromAlpha.close()
            await fromBeta.close()
        }
    }

    @Test func theCLIInvokesAndBroadcastsIntoAnotherSystemThroughItsSidecar() async throws {
        try await withTwoSystems { _, alpha, beta in
            let socket = alpha.configuration.socket
            let (status, output) = try await runToCompletion(
                "troupe", ["invoke", "beta", "counter", "add", "--json", "3", "--socket", socket])
            #expect(status == 0, "\(output)")
            #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "3")
            let local = try await beta.client()
            #expect(try await local.invoke("counter", action: "get", as: Int.self) == 3)
            await local.close()
            let (failed, message) = try await runToCompletion(
                "troupe", ["invoke", "gamma", "counter", "get", "--socket", socket])
            #expect(failed != 0)
            #expect(message.contains("unavailable"), "\(message)")

            let (broadcastStatus, broadcastOutput) = try await runToCompletion(
                "troupe", ["broadcast", "news", "hear", "--json", "\"from the cli\"", "--socket", socket])
            #expect(broadcastStatus == 0, "\(broadcastOutput)")
            #expect(broadcastOutput.contains("1 listener(s)") && broadcastOutput.contains("published"))
            let listener = try await beta.client()
            try await waitFor("beta's listener to hear the CLI's broadcast") {
                let heard: [String] = try await listener.invoke("listener", action: "heard")
                return heard == ["alpha:from the cli"]
            }
            await listener.close()
        }
    }

    @Test func eachCallIsTakenByExactlyOneSidecarOfTheTargetSystem() async throws {
        try await withTwoSystems { server, alpha, firstBeta in
            // A second sidecar of beta, with its own (memory) store: the two count separately.
            let settings = bridged(to: server.url)
            try await withSidecar(system: "beta", configure: settings) { secondBeta in
                let client = try await alpha.client()
                let calls = 40
                for _ in 0..<calls {
                    let _: Int = try await client.invoke("counter", action: "add", 1, system: "beta")
                }
                let first = try await firstBeta.client()
                let second = try await secondBeta.client()
                let counted =
                    try await first.invoke("counter", action: "get", as: Int.self)
                    + second.invoke("counter", action: "get", as: Int.self)
                #expect(counted == calls)
                await client.close()
                await first.close()
                await second.close()
            }
        }
    }

    @Test func typedErrorsOfTheOtherSystemReachTheCallerWithTheirCode() async throws {
        try await withTwoSystems { _, alpha, _ in
            let client = try await alpha.client()
            await expectCode(.failedPrecondition) {
                let _: String = try await client.invoke(
                    "echo", action: "fail", TroupeError.Code.failedPrecondition.rawValue, system: "beta")
            }
            await expectCode(.notFound) {
                let _: Int = try await client.invoke("nobody", action: "get", system: "beta")
            }
            await expectCode(.notFound) {
                let _: Int = try await client.invoke("counter", action: "no-such-action", system: "beta")
            }
            await client.close()
        }
    }

    @Test func anUnknownSystemIsUnavailableAtOnceABadSystemNameIsInvalidAndSpawnIsNotBridged() async throws {
        try await withTwoSystems { _, alpha, _ in
            let client = try await alpha.client()
            // A 60 s deadline: only the no-responders answer can make this unavailable.
            await expectCode(.unavailable) {
                let _: Int = try await client.invoke("counter", action: "get", system: "gamma", timeout: .seconds(60))
            }
            await expectCode(.invalidArgument) {
                let _: Int = try await client.invoke("counter", action: "get", system: "a.b")
            }
            await client.close()
            // Spawning in another system is not bridged: said at once, not attempted.
            let raw = try await alpha.connection()
            var spawn = WireSpawnRequest()
            spawn.system = "beta"
            spawn.actorType = "account"
            spawn.names = ["acct-2"]
            await expectCode(.unavailable) { _ = try await raw.call(.spawn(spawn), timeout: .seconds(5)) }
            raw.close()
        }
    }

    @Test func theCallersDeadlineIsCarriedAcross() async throws {
        try await withTwoSystems { _, alpha, beta in
            let client = try await alpha.client()
            await expectCode(.deadlineExceeded) {
                let _: Int = try await client.invoke(
                    "sleeper", action: "sleep", 20_000, system: "beta", timeout: .milliseconds(300))
            }
            // The sleeper takes one call at a time. Beta gave the call alpha's 300 ms, not its own
            // 30 s default, so the sleeper is free again long before the 20 s sleep would end.
            let local = try await beta.client()
            #expect(try await local.invoke("sleeper", action: "sleep", 1, as: Int.self, timeout: .seconds(5)) == 1)
            await client.close()
            await local.close()
        }
    }

    @Test func aBroadcastReachesEveryListenerInBothSystemsExactlyOnce() async throws {
        try await withTwoSystems { _, alpha, beta in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            for text in ["one", "two"] {
                let outcome = try await fromAlpha.broadcast("news", action: "hear", text)
                #expect(outcome.localListeners == 1)
                #expect(outcome.bridged)
            }
            try await fromBeta.broadcast("news", action: "hear", "three")
            // A last broadcast from each side: NATS keeps each publisher's order, so once both
            // fences arrived everywhere, anything duplicated before them would have arrived too.
            try await fromAlpha.broadcast("news", action: "hear", "fence")
            try await fromBeta.broadcast("news", action: "hear", "fence")
            var heard: [[String]] = []
            try await waitFor("both listeners to hear both fences") {
                heard = [
                    try await fromAlpha.invoke("listener", action: "heard"),
                    try await fromBeta.invoke("listener", action: "heard"),
                ]
                return heard.allSatisfy { $0.contains("alpha:fence") && $0.contains("beta:fence") }
            }
            let expected = ["alpha:fence", "alpha:one", "alpha:two", "beta:fence", "beta:three"]
            for log in heard {
                #expect(log.sorted() == expected, "\(log)")
                #expect(log.filter { $0.hasPrefix("alpha:") } == ["alpha:one", "alpha:two", "alpha:fence"])
            }
            await fromAlpha.close()
            await fromBeta.close()
        }
    }

    @Test func broadcastsWithABadChannelOrNoActionAreRefused() async throws {
        try await withTwoSystems { _, alpha, _ in
            let client = try await alpha.client()
            await expectCode(.invalidArgument) { try await client.broadcast("news.sport", action: "hear", "x") }
            await expectCode(.invalidArgument) { try await client.broadcast("", action: "hear", "x") }
            await expectCode(.invalidArgument) { try await client.broadcast("news", action: "", "x") }
            #expect(try await client.broadcast("nobody-listens", action: "hear", "x").localListeners == 0)
            await client.close()
            // Only named actors can listen: an unnamed type with channels is refused at registration.
            let host = try await alpha.connection(role: .host)
            var definition = WireActorDefinition()
            definition.name = "unnamed-listener"
            definition.kind = .unnamed
            definition.channels = ["news"]
            var register = WireRegisterRequest()
            register.actors = [definition]
            await expectCode(.invalidArgument) { _ = try await host.call(.register(register), timeout: .seconds(5)) }
            host.close()
        }
    }

    @Test func badCallMessagesGetTypedAnswersAndTheSubscriberKeepsServing() async throws {
        // Small, but large enough for the test host's registration of every test actor type.
        try await withTwoSystems(betaMaxFrameBytes: 8192) { server, _, _ in
            var logger = Logger(label: "test.raw-nats")
            logger.logLevel = .warning
            let nats = try await NATSConnection.connect(NATSOptions(servers: [server.url]), logger: logger)
            let garbage = try await rawCall(nats, "beta", [0xFF, 0xFF, 0xFF, 0x01])
            #expect(garbage.failure.code == .invalidArgument, "\(garbage)")

            var future = try bridgeCall(actor: "echo", action: "echo", text: "x")
            future.version = 2
            #expect(try await rawCall(nats, "beta", future.serializedBytes()).failure.code == .failedPrecondition)

            var noDeadline = try bridgeCall(actor: "echo", action: "echo", text: "x")
            noDeadline.timeoutMs = 0
            #expect(try await rawCall(nats, "beta", noDeadline.serializedBytes()).failure.code == .invalidArgument)

            var anonymous = try bridgeCall(actor: "echo", action: "echo", text: "x")
            anonymous.callerSystem = ""
            #expect(try await rawCall(nats, "beta", anonymous.serializedBytes()).failure.code == .invalidArgument)

            // The caller in the subject and in the envelope must agree.
            var impostor = try bridgeCall(actor: "echo", action: "echo", text: "x")
            impostor.callerSystem = "alpha"
            #expect(try await rawCall(nats, "beta", impostor.serializedBytes()).failure.code == .permissionDenied)
            // A call subject without a caller token is not served at all.
            await #expect(throws: TroupeError.self) {
                _ = try await nats.request(
                    "troupe.v1.beta.invoke", payload: try bridgeCall(actor: "echo", action: "echo", text: "x")
                        .serializedBytes(), timeout: .seconds(2))
            }

            let big = try bridgeCall(actor: "echo", action: "echo", text: String(repeating: "x", count: 10_000))
            #expect(try await rawCall(nats, "beta", big.serializedBytes()).failure.code == .resourceExhausted)

            // Nobody to answer to: dropped, nothing breaks.
            try nats.publish(
                to: "troupe.v1.beta.invoke.raw",
                payload: try bridgeCall(actor: "echo", action: "echo", text: "x").serializedBytes())

            let good = try await rawCall(
                nats, "beta", try bridgeCall(actor: "echo", action: "echo", text: "still here").serializedBytes())
            #expect(try PayloadCoding.decode(String.self, from: good.reply) == "still here")
            await nats.drain(timeout: .seconds(5))
        }
    }

    @Test func aSidecarWithRefusedNATSCredentialsOrAnUnusableSystemNameDoesNotStart() async throws {
        let server = try NATSServer(arguments: ["--user", "troupe", "--pass", "right"])
        defer { server.stop() }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = SidecarConfiguration()
        configuration.system = "alpha"
        configuration.store = "memory"
        configuration.socket = directory.path("troupe.sock")
        try configuration.set("nats-url", to: server.url)
        try configuration.set("nats-user", to: "troupe")
        try configuration.set("nats-password", to: "wrong")
        var logger = Logger(label: "test.sidecar")
        logger.logLevel = .critical
        let configured = configuration
        let refused = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(configuration: configured, logger: logger)
        }
        #expect(refused?.code == .unauthenticated)
        #expect(refused?.message.contains("nats-url") == true)

        configuration.natsPassword = "right"
        configuration.system = "al.pha"
        let dotted = configuration
        let invalid = await #expect(throws: TroupeError.self) {
            _ = try await Sidecar.start(configuration: dotted, logger: logger)
        }
        #expect(invalid?.code == .invalidArgument)
        #expect(throws: TroupeError.self) { try configuration.set("nats-url", to: "http://127.0.0.1:4222") }
    }
}
