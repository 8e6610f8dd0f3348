import ArgumentParser
import Foundation
import Logging
import Troupe
import TroupePostgres
import TroupeSidecar
import TroupeStore

/// `troupe-store-bench`: the Postgres store against pgbench on the same server in the same run.
///
/// Run it through `scripts/bench-store.sh`, which starts a private server and passes its URL.
@main
struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "troupe-store-bench",
        abstract: "Write-through group commit vs pgbench single-row upserts, write-behind throughput, added latency.")

    @Option(help: "Postgres URL of a server this benchmark may fill (a throwaway one).") var pgURL: String
    @Option(help: "Actors updating concurrently, and pgbench clients.") var actors = 256
    @Option(help: "Bytes of each state.") var stateBytes = 256
    @Option(help: "Seconds of each throughput run.") var seconds = 10
    @Option(help: "Round trips of each latency measurement.") var iterations = 3000
    @Option(help: "Concurrent callers of the end-to-end throughput runs.") var callers = 64
    @Option(help: "The pgbench program.") var pgbench = "pgbench"

    func run() async throws {
        var logger = Logger(label: "troupe-store-bench")
        logger.logLevel = .error

        say("== baseline: pgbench, \(actors) clients, single-row upserts of \(stateBytes)-byte states, \(seconds) s")
        let baseline = try await PgbenchBaseline.run(
            url: pgURL, clients: actors, stateBytes: stateBytes, seconds: seconds, program: pgbench, logger: logger)
        say("   \(Int(baseline)) upserts/s")

        say("== write-through through the store: \(actors) actors, \(stateBytes)-byte states, \(seconds) s")
        let groupCommit = try await storeWriteThrough(logger: logger)
        say(
            "   \(Int(groupCommit.rate)) acknowledged updates/s in \(groupCommit.flushes) flushes (\(String(format: "%.1f", groupCommit.perFlush)) rows each), ratio \(String(format: "%.2f", groupCommit.rate / baseline))x pgbench (target ≥ 3x)"
        )
        say("   per-write latency p50 \(groupCommit.latency.p50) µs p99 \(groupCommit.latency.p99) µs")

        say("== end to end through an in-process sidecar and SDK host (stateful counter actors)")
        let memory = try await endToEnd(store: "memory", logger: logger)
        let postgres = try await endToEnd(store: "postgres", logger: logger)
        say(
            "   write-through latency, 1 in flight: memory p50 \(memory.latency.p50) µs p99 \(memory.latency.p99) µs; postgres p50 \(postgres.latency.p50) µs p99 \(postgres.latency.p99) µs"
        )
        say(
            "   added by Postgres write-through: p50 +\(String(format: "%.1f", postgres.latency.p50 - memory.latency.p50)) µs, p99 +\(String(format: "%.1f", postgres.latency.p99 - memory.latency.p99)) µs"
        )
        say(
            "   \(callers) callers: write-through \(Int(postgres.writeThroughRate))/s (memory store \(Int(memory.writeThroughRate))/s), write-behind \(Int(postgres.writeBehindRate))/s (memory store \(Int(memory.writeBehindRate))/s)"
        )
    }

    struct GroupCommitResult {
        var rate: Double
        var flushes: Int
        var perFlush: Double
        var latency: Quantiles
    }

    /// `actors` tasks, each one actor: activate once, then write new states as fast as acknowledged.
    func storeWriteThrough(logger: Logger) async throws -> GroupCommitResult {
        var configuration = try PostgresStateStore.Configuration(url: pgURL)
        configuration.schema = "bench_store"
        try await PostgresStateStore.dropSchema(configuration: configuration, logger: logger)
        let store = try await PostgresStateStore.open(configuration: configuration, logger: logger)
        let state = [UInt8](repeating: 0x42, count: stateBytes)
        var tokens: [UInt64] = []
        for actor in 0..<actors {
            tokens.append(try await store.activate(ActorKey(system: "bench", name: "a\(actor)"), actorType: "A").fencingToken)
        }
        let flushesBefore = store.flushCount
        let started = ContinuousClock.now
        let deadline = started + .seconds(seconds)
        let (count, samples) = try await withThrowingTaskGroup(of: (Int, [Double]).self) { group in
            for (actor, token) in tokens.enumerated() {
                group.addTask {
                    let key = ActorKey(system: "bench", name: "a\(actor)")
                    var count = 0
                    var samples: [Double] = []
                    while ContinuousClock.now < deadline {
                        let start = ContinuousClock.now
                        _ = try await store.write(key, state: StateBlob(typeURL: "bench", bytes: state), fencingToken: token)
                        samples.append((ContinuousClock.now - start).microseconds)
                        count += 1
                    }
                    return (count, samples)
                }
            }
            return try await group.reduce(into: (0, [Double]())) {
                $0.0 += $1.0
                $0.1 += $1.1
            }
        }
        let elapsed = (ContinuousClock.now - started).microseconds / 1_000_000
        let flushes = store.flushCount - flushesBefore
        try await store.close()
        try await PostgresStateStore.dropSchema(configuration: configuration, logger: logger)
        return GroupCommitResult(
            rate: Double(count) / elapsed, flushes: flushes, perFlush: Double(count) / Double(max(1, flushes)),
            latency: Quantiles(samples))
    }

    struct EndToEnd {
        var latency: Quantiles
        var writeThroughRate: Double
        var writeBehindRate: Double
    }

    /// Latency of one write-through counter with 1 call in flight, then write-through and
    /// write-behind throughput with `callers` callers on as many actors.
    func endToEnd(store: String, logger: Logger) async throws -> EndToEnd {
        let directory = "/tmp/troupe-store-bench-\(getpid())"
        // 0700: the sidecar refuses a socket directory that group or others may open.
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SidecarConfiguration()
        configuration.system = "bench"
        configuration.node = "bench"
        configuration.socket = "\(directory)/troupe.sock"
        configuration.store = store
        configuration.mailboxCapacity = 100_000
        configuration.maxConcurrentRequests = 100_000
        configuration.adminListen = nil
        var postgres: PostgresStateStore.Configuration?
        if store == "postgres" {
            var settings = try PostgresStateStore.Configuration(url: pgURL)
            settings.schema = "bench_sidecar"
            try await PostgresStateStore.dropSchema(configuration: settings, logger: logger)
            configuration.postgres.url = pgURL
            configuration.postgres.schema = "bench_sidecar"
            postgres = settings
        }
        let sidecar = try await Sidecar.start(configuration: configuration, logger: logger)
        let result = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sidecar.run(signals: []) }
            for _ in 0..<500 where !FileManager.default.fileExists(atPath: configuration.socket) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let host = try TroupeHost(
                system: "bench", endpoint: .unix(path: configuration.socket),
                actors: [BenchCounter.self, BenchBehindCounter.self], logger: logger)
            group.addTask { try await host.run() }
            let client = try await host.connected()
            let state = String(repeating: "s", count: stateBytes)

            for _ in 0..<200 { let _: Int = try await client.invoke("c-0", action: "set", state, spawnFrom: BenchCounter.name) }
            var samples: [Double] = []
            for _ in 0..<iterations {
                let start = ContinuousClock.now
                let _: Int = try await client.invoke("c-0", action: "set", state, spawnFrom: BenchCounter.name)
                samples.append((ContinuousClock.now - start).microseconds)
            }
            let throughThrough = try await load(client, type: BenchCounter.name, state: state)
            let behind = try await load(client, type: BenchBehindCounter.name, state: state)
            group.cancelAll()
            return EndToEnd(latency: Quantiles(samples), writeThroughRate: throughThrough, writeBehindRate: behind)
        }
        if let postgres { try await PostgresStateStore.dropSchema(configuration: postgres, logger: logger) }
        return result
    }

    /// Invocations per second of `callers` callers, each on its own actor of `type`.
    func load(_ client: TroupeClient, type: String, state: String) async throws -> Double {
        let started = ContinuousClock.now
        let deadline = started + .seconds(seconds)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    var count = 0
                    while ContinuousClock.now < deadline {
                        let _: Int = try await client.invoke("\(type)-\(caller)", action: "set", state, spawnFrom: type)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / ((ContinuousClock.now - started).microseconds / 1_000_000)
    }
}

/// A stateful unnamed actor whose every call replaces its state: each call is one store write.
struct BenchCounter: VirtualActor {
    struct State: Codable, Sendable {
        var text = ""
        var writes = 0
    }
    static let name = "bench-counter"
    static let kind = ActorKind.unnamed
    static func initialState() -> State { State() }
    static func actions(_ actions: inout Actions<Self>) { replacingState(&actions) }
}

/// The same actor with write-behind durability at the default interval.
struct BenchBehindCounter: VirtualActor {
    typealias State = BenchCounter.State
    static let name = "bench-behind-counter"
    static let kind = ActorKind.unnamed
    static let durability = Durability.writeBehind
    static func initialState() -> State { State() }
    static func actions(_ actions: inout Actions<Self>) { replacingState(&actions) }
}

/// `set`: replaces the text and counts the writes.
func replacingState<Actor: VirtualActor>(_ actions: inout Actions<Actor>) where Actor.State == BenchCounter.State {
    actions.on("set") { (context, text: String) -> Int in
        context.state.text = text
        context.state.writes += 1
        return context.state.writes
    }
}

/// Prints a line at once (unbuffered, unlike `print` into a file or pipe), so a long run shows
/// where it is.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
