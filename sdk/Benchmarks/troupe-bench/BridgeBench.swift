import ArgumentParser
import CNats
import Foundation
import Logging
import NIOPosix
import SwiftProtobuf
import Troupe
import TroupeNATS
import TroupeProto

/// `troupe-bench bridge`: calls between two ActorSystems over NATS, against a raw libnats
/// request-reply between two connections on the same nats-server, measured in the same run.
struct BridgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract:
            "Cross-system invoke latency and throughput through two troupe-sidecar processes and a nats-server.")

    @Option(help: "Round trips for each latency measurement.") var iterations = 10_000
    @Option(help: "Concurrent callers for the throughput run.") var callers = 64
    @Option(help: "Connections the callers share.") var connections = 4
    @Option(help: "Seconds of the throughput run.") var seconds = 5.0
    @Option(help: "Directory holding troupe-sidecar (default: next to this binary).") var binDir: String?
    @Option(help: "The nats-server executable.") var natsServer = "/usr/sbin/nats-server"

    func run() async throws {
        let logger = BenchWorkspace.logger
        let workspace = try BenchWorkspace(name: "troupe-bridge-bench", binDir: binDir)
        defer { workspace.remove() }
        let (work, binaries) = (workspace.work, workspace.binaries)

        let nats = try NATSServerProcess(executable: natsServer, log: work.appendingPathComponent("nats.log").path)
        defer { nats.stop() }
        let payload = String(repeating: "x", count: 62)

        print("== raw baseline: libnats request-reply between two connections, 64 B, 1 in flight")
        let raw = try RawNATSRequestReply.measure(url: nats.url, iterations: iterations)
        print("   p50 \(raw.p50) µs  p99 \(raw.p99) µs")

        print("== TroupeNATS request-reply (the Swift layer over libnats), 64 B, 1 in flight")
        let wrapped = try await measureTroupeNATS(url: nats.url, logger: logger)
        print("   p50 \(wrapped.p50) µs  p99 \(wrapped.p99) µs")

        var sidecars: [SidecarProcess] = []
        defer { for sidecar in sidecars { sidecar.stop() } }
        for system in ["alpha", "beta"] {
            let sidecar = try SidecarProcess(
                binaries: binaries, socket: work.appendingPathComponent("\(system).sock").path,
                dataPath: work.appendingPathComponent("\(system).sqlite").path, system: system,
                extraArguments: ["--nats-url", nats.url])
            sidecars.append(sidecar)
            try await sidecar.waitForSocket()
        }
        let alphaSocket = sidecars[0].socket
        let hosts = try ["alpha", "beta"].enumerated().map { index, system in
            try TroupeHost(
                system: system, endpoint: .unix(path: sidecars[index].socket),
                actors: [BenchEcho.self, BenchEchoPool.self], logger: logger)
        }
        let clientLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for host in hosts {
                group.addTask { try await host.run() }
                _ = try await host.connected()
            }
            // The measuring client on a thread of its own: on NIO's shared group it would share a
            // thread with one host but not the other, and the phases would differ by that.
            let client = try await TroupeClient.connect(
                system: "alpha", to: .unix(path: alphaSocket), name: "bench", logger: logger,
                eventLoopGroup: clientLoop)

            let processes = [
                ("alpha", sidecars[0].process.processIdentifier), ("beta", sidecars[1].process.processIdentifier),
                ("nats-server", nats.process.processIdentifier),
            ]
            print("== local invoke in alpha (client → alpha sidecar → host), 64 B, 1 in flight")
            let (local, localCPU) = try await latency(iterations, processes) {
                let _: String = try await client.invoke("echo", action: "echo", payload)
            }
            print("   p50 \(local.p50) µs  p99 \(local.p99) µs")
            print(localCPU)

            print("== beta's half alone: a bridge Call sent straight to troupe.v1.beta.invoke.bench, 64 B, 1 in flight")
            let callBytes = try Self.echoCall(payload)
            let direct = try await NATSConnection.connect(NATSOptions(servers: [nats.url]), logger: logger)
            let (half, halfCPU) = try await latency(iterations, processes) {
                let answer = try await direct.request("troupe.v1.beta.invoke.bench", payload: callBytes, timeout: .seconds(5))
                guard case .reply = try BridgeResult(serializedBytes: answer.payload).outcome else {
                    throw TroupeError.internalError("beta did not answer the echo")
                }
            }
            await direct.drain(timeout: .seconds(2))
            print("   p50 \(half.p50) µs  p99 \(half.p99) µs")
            print(halfCPU)

            print("== cross-system invoke alpha → beta over NATS, 64 B, 1 in flight")
            let (cross, crossCPU) = try await latency(iterations, processes) {
                let _: String = try await client.invoke("echo", action: "echo", payload, system: "beta")
            }
            let budget = (raw.p50 + local.p50) * 1.2
            print(
                "   p50 \(cross.p50) µs  p99 \(cross.p99) µs  target p50 ≤ (raw NATS p50 + local p50) × 1.2 = \(String(format: "%.1f", budget)) µs: \(cross.p50 <= budget ? "met" : "not met") (ratio \(String(format: "%.2f", cross.p50 / (raw.p50 + local.p50))))"
            )
            print(crossCPU)

            print(
                "== cross-system throughput: \(callers) concurrent callers on \(callers) beta actors over \(connections) alpha connection(s), \(seconds) s"
            )
            var clients: [TroupeClient] = []
            for i in 0..<connections {
                clients.append(
                    try await TroupeClient.connect(
                        system: "alpha", to: .unix(path: alphaSocket), name: "load-\(i)", logger: logger))
            }
            let (total, elapsed) = try await closedLoop(clients, callers: callers, seconds: seconds) { client, caller in
                let _: String = try await client.invoke(
                    "echo-\(caller)", action: "echo", payload, system: "beta", spawnFrom: BenchEchoPool.name)
            }
            print(
                "   \(total) invocations in \(String(format: "%.2f", elapsed)) s = \(Int(Double(total) / elapsed)) invocations/s"
            )
            for client in clients { await client.close() }
            await client.close()
            group.cancelAll()
        }
        try await clientLoop.shutdownGracefully()
    }

    /// Percentiles of `body`'s duration over `iterations` runs, after 1000 warm-up runs.
    /// With `processes`, also the CPU time each of them (and this process) spent per call.
    func latency(
        _ iterations: Int, _ processes: [(name: String, pid: Int32)] = [], _ body: () async throws -> Void
    ) async throws -> (Percentiles, cpu: String) {
        for _ in 0..<1000 { try await body() }
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        let cpu = CallCPU(processes)
        for _ in 0..<iterations {
            let start = ContinuousClock.now
            try await body()
            samples.append((ContinuousClock.now - start).microseconds)
        }
        return (Percentiles(samples), processes.isEmpty ? "" : "   \(cpu.summary(calls: iterations))")
    }

    /// The bridge Call alpha's sidecar would send for `echo(text)`.
    static func echoCall(_ text: String) throws -> [UInt8] {
        var call = BridgeCall()
        call.version = 1
        call.callerSystem = "bench"
        call.actor = "echo"
        call.action = "echo"
        call.payload.typeURL = "application/json"
        call.payload.value = try JSONEncoder().encode(text)
        call.timeoutMs = 5000
        return try call.serializedBytes()
    }

    func measureTroupeNATS(url: String, logger: Logger) async throws -> Percentiles {
        let responder = try await NATSConnection.connect(NATSOptions(servers: [url]), logger: logger)
        let requester = try await NATSConnection.connect(NATSOptions(servers: [url]), logger: logger)
        let echo = try await responder.subscribe(to: "bench.troupe-nats") { message in
            if let reply = message.replyTo { try? responder.publish(to: reply, payload: message.payload) }
        }
        let bytes = [UInt8](repeating: 7, count: 64)
        let (result, _) = try await latency(iterations) {
            _ = try await requester.request("bench.troupe-nats", payload: bytes, timeout: .seconds(5))
        }
        echo.unsubscribe()
        await requester.drain(timeout: .seconds(2))
        await responder.drain(timeout: .seconds(2))
        return result
    }
}

/// The floor: libnats' own blocking request on one connection, answered from another
/// connection's subscription callback in C, both with the options the bridge uses.
enum RawNATSRequestReply {
    static func measure(url: String, iterations: Int) throws -> Percentiles {
        let responder = try connect(url)
        let requester = try connect(url)
        defer {
            natsConnection_Destroy(requester)
            natsConnection_Destroy(responder)
        }
        var subscription: OpaquePointer?
        let echo: natsMsgHandler = { connection, _, message, _ in
            if let message, let reply = natsMsg_GetReply(message) {
                natsConnection_Publish(connection, reply, natsMsg_GetData(message), natsMsg_GetDataLength(message))
            }
            natsMsg_Destroy(message)
        }
        guard natsConnection_Subscribe(&subscription, responder, "bench.raw", echo, nil) == NATS_OK,
            natsConnection_Flush(responder) == NATS_OK
        else { throw TroupeError.unavailable("raw NATS subscribe failed") }
        defer { natsSubscription_Destroy(subscription) }
        let bytes = [UInt8](repeating: 7, count: 64)
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for i in 0..<(iterations + 1000) {
            let start = ContinuousClock.now
            var reply: OpaquePointer?
            let status = bytes.withUnsafeBytes {
                natsConnection_Request(&reply, requester, "bench.raw", $0.baseAddress, Int32($0.count), 5000)
            }
            guard status == NATS_OK else { throw TroupeError.unavailable("raw NATS request failed: \(status)") }
            natsMsg_Destroy(reply)
            if i >= 1000 { samples.append((ContinuousClock.now - start).microseconds) }
        }
        return Percentiles(samples)
    }

    static func connect(_ url: String) throws -> OpaquePointer {
        var options: OpaquePointer?
        natsOptions_Create(&options)
        defer { natsOptions_Destroy(options) }
        natsOptions_SetURL(options, url)
        natsOptions_SetSendAsap(options, true)
        var connection: OpaquePointer?
        guard natsConnection_Connect(&connection, options) == NATS_OK, let connection else {
            throw TroupeError.unavailable("raw NATS connect to \(url) failed")
        }
        return connection
    }
}

/// A private nats-server on 127.0.0.1 with a port it picks itself.
final class NATSServerProcess {
    let process = Process()
    private(set) var url = ""

    init(executable: String, log: String) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-a", "127.0.0.1", "-p", "-1", "-l", log]
        try process.run()
        for _ in 0..<500 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if text.contains("Server is ready"),
                let range = text.range(of: "Listening for client connections on 127.0.0.1:"),
                let port = Int(text[range.upperBound...].prefix { $0.isNumber })
            {
                url = "nats://127.0.0.1:\(port)"
                return
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        stop()
        throw TroupeError.unavailable("nats-server did not start (log: \(log))")
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
