import ArgumentParser
import Foundation
import HeapModule
import Logging
import Synchronization
import Troupe

/// `troupe-bench timers`: many actors with a 1 s timer each, through a troupe-sidecar process,
/// against a plain in-process timer heap firing the same number of callbacks in the same run.
/// Reports firings per second, fire-time lag p50/p99 and CPU (from /proc/PID/stat) of both.
///
/// Phases: activate every actor (no timer yet), then arm each actor's timer so that all of them
/// start together after the arming phase, spread over one second; then the window. So firings
/// never compete with activations, and the window always opens, saturated or not.
struct TimerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timers",
        abstract: "Fire-time lag and sidecar CPU of N actors with a 1 s timer each, against a raw timer heap.")

    // Names of their own: the parent command's --actors and --seconds would take these values.
    @Option(help: "Actors, each with a 1 s timer.") var timers = 100_000
    @Option(help: "Seconds measured, after every timer has fired at least twice.") var window = 10.0
    @Option(help: "Concurrent callers activating and arming the actors.") var activators = 64
    @Flag(inversion: .prefixedNo, help: "Let the sidecar send firings to the host in batches (ActorInvocationBatch).")
    var batches = true
    @Option(help: "Directory holding troupe-sidecar (default: next to this binary).") var binDir: String?

    func run() async throws {
        var logger = Logger(label: "troupe-bench")
        logger.logLevel = .error
        let work = URL(fileURLWithPath: "/tmp/troupe-bench-timers-\(getpid())")
        try FileManager.default.createDirectory(
            at: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: work) }
        let binaries =
            binDir.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

        print("== raw baseline: one thread, a heap of \(timers) timers of 1 s, \(window) s")
        let raw = RawTimerHeap.measure(timers: timers, seconds: window)
        print(
            "   fires/s \(Int(raw.firesPerSecond))  lag p50 \(raw.lag.p50) µs  p99 \(raw.lag.p99) µs  CPU \(percent(raw.cpu))"
        )

        let socket = work.appendingPathComponent("troupe.sock").path
        let sidecar = try SidecarProcess(
            binaries: binaries, socket: socket, dataPath: work.appendingPathComponent("state.sqlite").path,
            extraArguments: ["--store", "memory"])
        defer { sidecar.stop() }
        try await sidecar.waitForSocket()
        let host = try TroupeHost(
            system: "bench", endpoint: .unix(path: socket), actors: [BenchTicker.self], invocationBatches: batches,
            logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.run() }
            let client = try await host.connected()
            print("== \(timers) actors with a 1 s timer each, through the sidecar (batches \(batches ? "on" : "off"))")
            let activation = try await callEach(client, action: "start") { _ in NoPayload() }
            print("   activated in \(String(format: "%.1f", activation.seconds)) s (no timer yet)")
            // Arming costs about what activating did (up to twice as much on a loaded machine);
            // every timer's first firing comes after all are armed, the k-th actor's at k/N of a
            // second into a common second. Arms that overlap firings slow down badly (see
            // docs/benchmarks.md), so the margin is generous.
            let arming = ContinuousClock.now
            let firstSecond = arming + activation * 3 + .seconds(2)
            let armed = try await callEach(client, action: "arm") { index in
                let offset = Duration.nanoseconds(Int64(index) * 1_000_000_000 / Int64(timers))
                let wait = firstSecond + offset - ContinuousClock.now
                return ArmTimer(afterMicros: max(1000, Int64(wait.microseconds)))
            }
            let early = ContinuousClock.now < firstSecond
            print(
                "   armed in \(String(format: "%.1f", armed.seconds)) s\(early ? "" : " (after the first firings were due: the arming overlapped them)")"
            )
            // Every timer has fired twice before the window opens.
            try await Task.sleep(until: max(ContinuousClock.now, firstSecond) + .seconds(2.5))
            let cpuBefore = sidecar.cpuSeconds()
            let hostCPUBefore = ProcessCPU.seconds(pid: getpid())
            TickLog.shared.record(true)
            let started = ContinuousClock.now
            try await Task.sleep(for: .seconds(window))
            TickLog.shared.record(false)
            let elapsed = (ContinuousClock.now - started).seconds
            let cpu = (sidecar.cpuSeconds() - cpuBefore) / elapsed
            let hostCPU = (ProcessCPU.seconds(pid: getpid()) - hostCPUBefore) / elapsed
            let (samples, untimed) = TickLog.shared.take()
            let rate = Double(samples.count + untimed) / elapsed
            let lag = samples.isEmpty ? Percentiles([0]) : Percentiles(samples)
            let saturated = rate < Double(timers) * 0.98 || lag.p99 > 500_000
            print(
                "   fires/s \(Int(rate)) of \(timers) expected\(saturated ? " (saturated)" : "")  lag p50 \(lag.p50) µs  p99 \(lag.p99) µs  sidecar CPU \(percent(cpu))  benchmark process (host) CPU \(percent(hostCPU))"
            )
            if untimed > 0 { print("   \(untimed) firings came without a due time; their lag is not counted") }
            print(
                "   ratios to raw: lag p50 \(ratio(lag.p50, raw.lag.p50))  p99 \(ratio(lag.p99, raw.lag.p99))  CPU \(ratio(cpu, raw.cpu))"
            )
            print(
                "   sidecar CPU per 1000 fires/s: \(String(format: "%.2f", cpu * 100 / max(rate / 1000, 1))) % of a core"
            )
            group.cancelAll()
        }
    }

    /// Invokes `action` on every actor from `activators` concurrent callers; returns how long it took.
    private func callEach<Input: Sendable>(
        _ client: TroupeClient, action: String, input: @escaping @Sendable (Int) -> Input
    ) async throws -> Duration {
        let began = ContinuousClock.now
        let (timers, activators) = (self.timers, self.activators)
        try await withThrowingTaskGroup(of: Void.self) { load in
            for caller in 0..<activators {
                load.addTask {
                    for index in stride(from: caller, to: timers, by: activators) {
                        let _: NoPayload = try await client.invoke(
                            "ticker-\(index)", action: action, input(index), spawnFrom: BenchTicker.name)
                    }
                }
            }
            try await load.waitForAll()
        }
        return ContinuousClock.now - began
    }

    private func percent(_ cores: Double) -> String { String(format: "%.1f%% of a core", cores * 100) }
    private func ratio(_ value: Double, _ base: Double) -> String {
        String(format: "%.1fx", value / max(base, 0.001))
    }
}

/// When an actor's timer first fires, from the `arm` call on.
struct ArmTimer: Codable, Sendable {
    var afterMicros: Int64
}

/// An unnamed stateless actor: `start` only activates it, `arm` sets its 1 s timer `tick`.
struct BenchTicker: VirtualActor {
    typealias State = Stateless
    static let name = "ticker"
    static let kind = ActorKind.unnamed
    static let idleTimeout: Duration? = .seconds(3600)
    static func actions(_ actions: inout Actions<Self>) {
        actions.on("start") { _ -> NoPayload in NoPayload() }
        actions.on("arm") { (context, arm: ArmTimer) -> NoPayload in
            try context.setTimer("tick", action: "tick", after: .microseconds(arm.afterMicros), every: .seconds(1))
            return NoPayload()
        }
        actions.on("tick") { context -> NoPayload in
            TickLog.shared.fired(lag: context.timerLag)
            return NoPayload()
        }
    }
}

/// Fire lags as the host sees them: from the due time the sidecar sends with each firing to the
/// start of the action. No pairing of firings with due times, so a skipped firing skews nothing.
final class TickLog: Sendable {
    static let shared = TickLog()

    private struct State {
        var recording = false
        var samples: [Double] = []
        /// Firings that came without a due time (an older sidecar).
        var untimed = 0
    }

    private let state = Mutex(State())

    func fired(lag: Duration?) {
        state.withLock { state in
            guard state.recording else { return }
            if let lag {
                state.samples.append(max(0, lag.microseconds))
            } else {
                state.untimed += 1
            }
        }
    }

    func record(_ on: Bool) { state.withLock { $0.recording = on } }

    func take() -> ([Double], Int) {
        state.withLock { state in
            defer {
                state.samples = []
                state.untimed = 0
            }
            return (state.samples, state.untimed)
        }
    }
}

/// The baseline: what firing the same timers costs with nothing in between. One thread keeps a
/// heap of due times, sleeps until the earliest, runs every due callback (counting it) and puts
/// each back one period later.
enum RawTimerHeap {
    struct Entry: Comparable {
        var due: ContinuousClock.Instant
        var id: Int
        static func < (lhs: Entry, rhs: Entry) -> Bool { lhs.due < rhs.due }
    }

    static func measure(timers: Int, seconds: Double) -> (lag: Percentiles, firesPerSecond: Double, cpu: Double) {
        let start = ContinuousClock.now
        // Spread over the first second, as activations are.
        var heap = Heap(
            (0..<timers).map { Entry(due: start + .seconds(1) + .nanoseconds($0 * 1_000_000_000 / timers), id: $0) })
        var counts = [Int](repeating: 0, count: timers)
        let windowStart = start + .seconds(1.5)
        let windowEnd = windowStart + .seconds(seconds)
        var samples: [Double] = []
        samples.reserveCapacity(Int(Double(timers) * seconds))
        var cpuAtWindow: Double?
        while true {
            let now = ContinuousClock.now
            if now >= windowEnd { break }
            if cpuAtWindow == nil, now >= windowStart { cpuAtWindow = ProcessCPU.seconds(pid: getpid()) }
            guard let next = heap.min else { break }
            if next.due > now {
                let wait = next.due - now
                usleep(UInt32(max(0, wait.microseconds)))
                continue
            }
            var entry = heap.removeMin()
            counts[entry.id] &+= 1
            if now >= windowStart { samples.append((now - entry.due).microseconds) }
            entry.due = entry.due + .seconds(1)
            heap.insert(entry)
        }
        let cpu = (ProcessCPU.seconds(pid: getpid()) - (cpuAtWindow ?? 0)) / seconds
        return (Percentiles(samples), Double(samples.count) / seconds, cpu)
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
