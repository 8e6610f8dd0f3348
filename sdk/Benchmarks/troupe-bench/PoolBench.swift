import ArgumentParser
import Foundation
import Logging
import Troupe

/// `troupe-bench pool`: a pooled actor with many calls in flight, against a single named actor
/// with the same action and the same load, and against the raw Unix-socket ping-pong, all
/// measured in the same run.
struct PoolBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Pooled actor throughput through a troupe-sidecar process, against one named actor and a raw socket.")

    @Option(help: "Round trips of the raw ping-pong.") var iterations = 20_000
    @Option(help: "Calls in flight.") var callers = 64
    @Option(help: "Connections the callers share.") var connections = 4
    @Option(help: "Seconds of each throughput run.") var seconds = 5.0
    @Option(help: "Milliseconds each call of the 'work' runs sleep in the host.") var workMs = 1
    @Option(help: "Directory holding troupe-sidecar (default: next to this binary).") var binDir: String?

    func run() async throws {
        let logger = BenchWorkspace.logger
        let workspace = try BenchWorkspace(name: "troupe-pool-bench", binDir: binDir)
        defer { workspace.remove() }

        print("== raw baseline: Unix socket ping-pong, 64 B, 1 in flight")
        let raw = try RawPingPong.measure(iterations: iterations)
        let rawRate = 1_000_000 / raw.p50
        print("   p50 \(raw.p50) µs  p99 \(raw.p99) µs = \(Int(rawRate)) round trips/s")

        let sidecar = try await SidecarProcess.start(in: workspace)
        defer { sidecar.stop() }
        let socket = sidecar.socket
        let host = try TroupeHost(
            system: "bench", endpoint: .unix(path: socket), actors: [BenchPool.self, BenchNamedWorker.self],
            logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.run() }
            _ = try await host.connected()
            var clients: [TroupeClient] = []
            for i in 0..<connections {
                clients.append(
                    try await TroupeClient.connect(
                        system: "bench", to: .unix(path: socket), name: "load-\(i)", logger: logger))
            }
            let payload = String(repeating: "x", count: 62)
            var rates: [String: Double] = [:]
            for (action, input) in [("echo", 0), ("work", workMs)] {
                for actor in [BenchPool.name, BenchNamedWorker.name] {
                    let kind = actor == BenchPool.name ? "pooled (max \(BenchPool.maximum))" : "one named actor"
                    print(
                        "== \(action)\(action == "work" ? " (\(input) ms)" : ""), \(kind), \(callers) in flight over \(connections) connection(s), \(seconds) s"
                    )
                    // Warm-up: grows the pool before it is measured.
                    _ = try await load(clients, actor, action, payload, input, seconds: min(1, seconds))
                    let rate = try await load(clients, actor, action, payload, input, seconds: seconds)
                    rates["\(action)/\(actor)"] = rate
                    print("   \(Int(rate)) calls/s")
                }
            }
            let pools = try await clients[0].pools()
            if let pool = pools.first(where: { $0.actorType == BenchPool.name }) {
                print("   pool: peak \(pool.peakInstances) instances, \(pool.queuedTotal) calls queued in all")
            }
            print("== ratios")
            let echo = rates["echo/\(BenchPool.name)"] ?? 0
            let echoNamed = rates["echo/\(BenchNamedWorker.name)"] ?? 0
            let slow = rates["work/\(BenchPool.name)"] ?? 0
            let slowNamed = rates["work/\(BenchNamedWorker.name)"] ?? 0
            print("   pooled echo / raw ping-pong rate (1 in flight): \(String(format: "%.2f", echo / rawRate))x")
            print("   pooled echo / one named actor: \(String(format: "%.2f", echo / echoNamed))x")
            print("   pooled \(workMs) ms work / one named actor: \(String(format: "%.2f", slow / slowNamed))x")
            for client in clients { await client.close() }
            group.cancelAll()
        }
    }

    /// Calls per second with `callers` calls in flight for `seconds`.
    private func load(
        _ clients: [TroupeClient], _ actor: String, _ action: String, _ payload: String, _ input: Int,
        seconds: Double
    ) async throws -> Double {
        let (calls, elapsed) = try await closedLoop(clients, callers: callers, seconds: seconds) { client, _ in
            if action == "echo" {
                let _: String = try await client.invoke(actor, action: "echo", payload, timeout: .seconds(60))
            } else {
                let _: Int = try await client.invoke(actor, action: "work", input, timeout: .seconds(60))
            }
        }
        return Double(calls) / elapsed
    }
}

/// The pooled actor measured: an echo, and a sleep that stands for work waiting on I/O.
struct BenchPool: VirtualActor {
    typealias State = Stateless
    static let name = "echo-pool"
    /// One instance per call in flight at the default load.
    static let maximum = 64
    static let kind = ActorKind.pooled(min: 1, max: maximum)
    static func actions(_ actions: inout Actions<Self>) { BenchWork.declare(&actions) }
}

/// The same actions on one named actor, which runs one call at a time.
struct BenchNamedWorker: VirtualActor {
    typealias State = Stateless
    static let name = "echo-named"
    static func actions(_ actions: inout Actions<Self>) { BenchWork.declare(&actions) }
}

enum BenchWork {
    static func declare<A: VirtualActor>(_ actions: inout Actions<A>) {
        actions.on("echo") { (_, text: String) -> String in text }
        actions.on("work") { (_, milliseconds: Int) -> Int in
            try await Task.sleep(for: .milliseconds(milliseconds))
            return milliseconds
        }
    }
}
