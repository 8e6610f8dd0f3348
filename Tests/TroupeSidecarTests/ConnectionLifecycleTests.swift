import Foundation
import NIOPosix
import Testing
import Troupe
import TroupeProto
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

@Suite("Connections: TCP, heartbeats and graceful drain", .serialized)
struct ConnectionLifecycleTests {
    @Test func hostsAndClientsCanUseTCPInsteadOfTheUnixSocket() async throws {
        try await withSidecar(host: false, configure: { $0.listenTCP = "127.0.0.1:0" }) { sidecar in
            var port: Int?
            try await waitFor("the TCP listener") {
                port = sidecar.sidecar.tcpPort
                return port != nil
            }
            let endpoint = Endpoint.tcp(host: "127.0.0.1", port: try #require(port))
            let host = try TroupeHost(system: "test", endpoint: endpoint, actors: [Echo.self], name: "tcp-host")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await host.run() }
                _ = try await host.connected()
                let client = try await TroupeClient.connect(system: "test", to: endpoint)
                let echoed: String = try await client.invoke("echo", action: "echo", "over tcp")
                #expect(echoed == "over tcp")
                await client.close()
                group.cancelAll()
            }
        }
    }

    @Test func aClientConnectedOnAGroupOfItsOwnRunsItsConnectionThere() async throws {
        try await withSidecar { sidecar in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = try await TroupeClient.connect(
                system: "test", to: .unix(path: sidecar.configuration.socket), eventLoopGroup: group)
            let echoed: String = try await client.invoke("echo", action: "echo", "on my own loop")
            #expect(echoed == "on my own loop")
            // The client's executor is the connection's loop, the one loop of `group`.
            let onGroup = await withTaskExecutorPreference(client.executor) { group.next().inEventLoop }
            #expect(onGroup)
            await client.close()
            try await group.shutdownGracefully()
        }
    }

    @Test func silentPeerIsDisconnectedAfterThreeHeartbeatIntervals() async throws {
        try await withSidecar(host: false, configure: { $0.heartbeatIntervalMs = 50 }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(role: .client))
            guard case .welcome(let welcome) = try await raw.answer(to: 1) else {
                Issue.record("no welcome")
                return
            }
            #expect(welcome.heartbeatIntervalMs == 50)
            // The raw socket never pings.
            #expect(await raw.closedBySidecar())
        }
    }

    @Test func pingingPeerStaysConnectedPastThreeIntervals() async throws {
        // Long intervals: on a loaded machine the client's pings must not miss three in a row.
        try await withSidecar(configure: { $0.heartbeatIntervalMs = 500 }) { sidecar in
            let client = try await sidecar.client()
            try await Task.sleep(for: .milliseconds(2_000))
            let echoed: String = try await client.invoke("echo", action: "echo", "alive")
            #expect(echoed == "alive")
            await client.close()
        }
    }
}

@Suite("Graceful shutdown of a sidecar process", .serialized)
struct GracefulShutdownTests {
    @Test func sigtermLetsCallsInFlightFinishAndThenExitsCleanly() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socket = directory.path("troupe.sock")
        let sidecar = try ChildProcess(
            "troupe-sidecar", ["--system", "drain", "--socket", socket, "--data-path", directory.path("state.sqlite")],
            logPath: directory.path("sidecar.log"))
        let host = try ChildProcess("troupe-test-host", [socket, "drain"], logPath: directory.path("host.log"))
        defer {
            sidecar.kill9()
            host.kill9()
        }
        try await waitFor("the sidecar socket") { FileManager.default.fileExists(atPath: socket) }
        let client = try await TroupeClient.connect(system: "drain", to: .unix(path: socket))
        try await waitFor("the host to register", timeout: .seconds(20)) {
            (try? await client.invoke("echo", action: "echo", "ready", as: String.self, timeout: .seconds(2))) != nil
        }
        let inFlight = inBackground {
            try await client.invoke("sleeper", action: "sleep", 3_000, as: Int.self, timeout: .seconds(20))
        }
        try await waitFor("the sleeper to run the call") {
            try await client.activeActors(ofType: "sleeper").first?.mailboxDepth == 1
        }
        sidecar.signal(SIGTERM)
        let outcome = await inFlight.value
        #expect((try? outcome.get()) == 3_000, "the call in flight should finish during the drain: \(outcome)")
        #expect(try await sidecar.waitForExit() == 0, "sidecar log:\n\(sidecar.log)")
        #expect(sidecar.log.contains("sidecar stopped"))
        await client.close()
        host.signal(SIGTERM)
        try await host.waitForExit()
    }
}
