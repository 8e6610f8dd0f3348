import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// One ActorSystem as real processes: a troupe-sidecar bridged to NATS and a troupe-test-host.
private struct SystemProcesses {
    let setup: SidecarProcess
    let sidecar: ChildProcess
    let host: ChildProcess
    let client: TroupeClient

    static func start(_ system: String, in directory: TemporaryDirectory, nats: String, extra: [String] = [])
        async throws -> Self
    {
        let setup = SidecarProcess(directory: directory, system: system)
        let sidecar = try await setup.start(
            run: 1, extra: ["--nats-url", nats, "--nats-reconnect-wait-ms", "50"] + extra)
        let host: ChildProcess
        do { host = try setup.startHost(run: 1) } catch {
            sidecar.kill9()
            throw error
        }
        do {
            let client = try await setup.client()
            try await setup.waitForHost(client)
            return SystemProcesses(setup: setup, sidecar: sidecar, host: host, client: client)
        } catch {
            sidecar.kill9()
            host.kill9()
            throw error
        }
    }

    func kill9() {
        sidecar.kill9()
        host.kill9()
    }
}

/// Outcomes of cross-system calls made while NATS is down or coming back.
private enum Outcome: Equatable {
    case succeeded
    case failed(TroupeError.Code)
}

private func outcome(_ call: () async throws -> Void) async -> Outcome {
    do {
        try await call()
        return .succeeded
    } catch let error as TroupeError {
        return .failed(error.code)
    } catch {
        return .failed(.unknown)
    }
}

/// Alpha and beta as sidecar and host processes, bridged through a private nats-server, for `body`.
private func withTwoSystemProcesses(
    extra: [String] = [], _ body: (NATSServer, SystemProcesses, SystemProcesses) async throws -> Void
) async throws {
    let server = try NATSServer()
    defer { server.stop() }
    let alphaDirectory = try TemporaryDirectory()
    let betaDirectory = try TemporaryDirectory()
    defer {
        alphaDirectory.remove()
        betaDirectory.remove()
    }
    let alpha = try await SystemProcesses.start("alpha", in: alphaDirectory, nats: server.url, extra: extra)
    defer { alpha.kill9() }
    let beta = try await SystemProcesses.start("beta", in: betaDirectory, nats: server.url, extra: extra)
    defer { beta.kill9() }
    try await body(server, alpha, beta)
}

@Suite("Two ActorSystems as real processes, bridged through a real nats-server", .serialized)
struct BridgeProcessTests {
    @Test func aCallTakenFromNATSFinishesWhileItsSidecarShutsDownGracefully() async throws {
        try await withTwoSystemProcesses { _, alpha, beta in
            let call = inBackground {
                // Long enough that the polling below sees it running even on a loaded machine.
                try await alpha.client.invoke("sleeper", action: "sleep", 3_000, as: Int.self, system: "beta")
            }
            try await waitFor("beta to take the call") {
                let actors = try await beta.client.activeActors(ofType: "sleeper")
                return actors.first?.mailboxDepth == 1
            }
            beta.sidecar.signal(SIGTERM)
            #expect(try await call.value.get() == 3_000)
            #expect(try await beta.sidecar.waitForExit() == 0, "sidecar log:\n\(beta.sidecar.log)")
            // Gone from NATS: the next call is unavailable at once.
            await expectCode(.unavailable) {
                let _: Int = try await alpha.client.invoke(
                    "counter", action: "get", system: "beta", timeout: .seconds(30))
            }
            await alpha.client.close()
            await beta.client.close()
        }
    }

    @Test func systemsCallEachOtherBothWaysAndSurviveANATSRestartWithoutHanging() async throws {
        try await withTwoSystemProcesses { server, alpha, beta in

            // Both ways, from clients and from inside actions.
            #expect(try await alpha.client.invoke("counter", action: "add", 4, as: Int.self, system: "beta") == 4)
            #expect(
                try await beta.client.invoke("echo", action: "caller", as: String.self, system: "alpha") == "beta/-")
            let relayed = try await beta.client.invoke(
                "relay", action: "call", RelayRequest(system: "alpha", actor: "echo", action: "caller", text: ""),
                as: String.self)
            #expect(relayed == "beta/relay")
            #expect(try await alpha.client.broadcast("news", action: "hear", "across").bridged)
            try await waitFor("beta's listener to hear alpha's broadcast") {
                let heard: [String] = try await beta.client.invoke("listener", action: "heard")
                return heard == ["alpha:across"]
            }

            // NATS dies with a call in flight: it fails with unavailable instead of waiting out its
            // 60 s deadline (deadlineExceeded would mean it did), and so do calls made meanwhile.
            let inFlight = inBackground {
                try await alpha.client.invoke(
                    "sleeper", action: "sleep", 5_000, as: Int.self, system: "beta", timeout: .seconds(60))
            }
            try await waitFor("beta to take the call") {
                try await beta.client.activeActors(ofType: "sleeper").first?.mailboxDepth == 1
            }
            server.kill()
            await expectCode(.unavailable) { _ = try await inFlight.value.get() }
            for _ in 0..<3 {
                let result = await outcome {
                    let _: Int = try await alpha.client.invoke(
                        "counter", action: "add", 1, system: "beta", timeout: .seconds(10))
                }
                #expect(result == .failed(.unavailable))
            }
            // Calls inside each system do not need NATS.
            #expect(try await beta.client.invoke("counter", action: "get", as: Int.self) == 4)

            // NATS comes back on the same port: both sidecars reconnect by themselves.
            try server.start()
            var results: [Outcome] = []
            try await waitFor("calls across to work again both ways", timeout: .seconds(30)) {
                let there = await outcome {
                    let _: String = try await alpha.client.invoke(
                        "echo", action: "echo", "x", system: "beta", timeout: .seconds(5))
                }
                let back = await outcome {
                    let _: String = try await beta.client.invoke(
                        "echo", action: "echo", "y", system: "alpha", timeout: .seconds(5))
                }
                results += [there, back]
                return there == .succeeded && back == .succeeded
            }
            let failures = results.filter { $0 != .succeeded }
            #expect(failures.allSatisfy { $0 == .failed(.unavailable) }, "\(failures)")
            #expect(try await alpha.client.invoke("counter", action: "add", 1, as: Int.self, system: "beta") == 5)

            // A graceful stop with the bridge: both sidecars exit 0.
            await alpha.client.close()
            await beta.client.close()
            for system in [alpha, beta] {
                system.sidecar.signal(SIGTERM)
                #expect(try await system.sidecar.waitForExit() == 0, "sidecar log:\n\(system.sidecar.log)")
                system.host.signal(SIGTERM)
                try await system.host.waitForExit()
            }
        }
    }

    @Test func aSidecarWhoseNATSServerStopsAnsweringServesItsActorsAndFailsCallsAcrossAtOnce() async throws {
        // Each reconnect attempt to a server that accepts and says nothing lasts 20 s, and
        // libnats holds the connection's lock all that time: no call may wait for it.
        try await withTwoSystemProcesses(extra: ["--nats-connect-timeout-ms", "20000"]) { server, alpha, beta in
            #expect(try await alpha.client.invoke("counter", action: "add", 2, as: Int.self, system: "beta") == 2)
            server.kill()
            let silent = try await SilentServer(port: server.port)
            try await waitFor("both sidecars' reconnect attempts to reach the silent server") {
                silent.connections.count >= 2
            }
            // 5 s deadlines: a sidecar stalled by the attempt would let them pass (deadlineExceeded).
            for _ in 0..<3 {
                let across = await outcome {
                    let _: Int = try await alpha.client.invoke(
                        "counter", action: "add", 1, system: "beta", timeout: .seconds(5))
                }
                #expect(across == .failed(.unavailable))
            }
            #expect(try await alpha.client.invoke("counter", action: "add", 3, as: Int.self, timeout: .seconds(5)) == 3)
            #expect(try await beta.client.invoke("counter", action: "get", as: Int.self, timeout: .seconds(5)) == 2)

            // The server answers again: the attempts end, and the next ones reach it.
            try await silent.close()
            try server.start()
            try await waitFor("calls across to work again", timeout: .seconds(30)) {
                let there = await outcome {
                    let _: String = try await alpha.client.invoke(
                        "echo", action: "echo", "x", system: "beta", timeout: .seconds(5))
                }
                return there == .succeeded
            }
            #expect(try await alpha.client.invoke("counter", action: "add", 1, as: Int.self, system: "beta") == 3)
            await alpha.client.close()
            await beta.client.close()
        }
    }
}
