import ArgumentParser
import Foundation
import Logging
import Troupe

/// `troupe-bench`: the benchmarks of docs/benchmarks.md, each against a raw baseline measured in
/// the same run. Build in release mode: `swift run -c release troupe-bench`.
///
/// The root has no options of its own: `echo` is the default subcommand, so `troupe-bench
/// --iterations 5000` runs it, while `troupe-bench bridge --iterations 5000` gives the option to
/// `bridge` instead of a root option of the same name.
@main
struct TroupeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "troupe-bench",
        abstract: "Latency and throughput of troupe-sidecar processes against raw baselines of the same run.",
        subcommands: [EchoBench.self, BridgeBench.self, PoolBench.self, TracingBench.self, TimerBench.self],
        defaultSubcommand: EchoBench.self)
}

/// `troupe-bench [echo]`: the foundation benchmarks, against a raw Unix-socket ping-pong measured
/// in the same run; with `--cluster`, remote invocations in a two-node cluster (``ClusterBench``).
struct EchoBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echo",
        abstract: "Echo latency and throughput through a troupe-sidecar process, and sidecar memory per idle actor.")

    @Option(help: "Round trips for each latency measurement.") var iterations = 20_000
    @Option(help: "Concurrent callers for the throughput run.") var callers = 64
    @Option(help: "Connections the callers share.") var connections = 4
    @Option(help: "Seconds of the throughput run.") var seconds = 5.0
    @Option(help: "Idle actors for the memory measurement (0 skips it).") var actors = 100_000
    @Option(help: "Directory holding troupe-sidecar (default: next to this binary).") var binDir: String?
    @Flag(help: "Measure remote invocations in a two-node cluster instead (docs/benchmarks.md).") var cluster = false
    @Flag(help: "With --cluster: mutual TLS between the two sidecars (certificates made with openssl).")
    var clusterTls = false

    func run() async throws {
        let logger = BenchWorkspace.logger
        let workspace = try BenchWorkspace(name: "troupe-bench", binDir: binDir)
        defer { workspace.remove() }
        let (work, binaries) = (workspace.work, workspace.binaries)
        if cluster {
            try await ClusterBench(
                iterations: iterations, callers: callers, connections: connections, seconds: seconds,
                binaries: binaries, work: work, tls: clusterTls, logger: logger
            ).run()
            return
        }

        print("== raw baseline: Unix socket ping-pong, 64 B, 1 in flight")
        let raw = try RawPingPong.measure(iterations: iterations)
        print("   p50 \(raw.p50) µs  p99 \(raw.p99) µs")

        let sidecar = try await SidecarProcess.start(in: workspace)
        defer { sidecar.stop() }
        let socket = sidecar.socket

        let host = try TroupeHost(
            system: "bench", endpoint: .unix(path: socket),
            actors: [BenchEcho.self, BenchEchoPool.self, BenchIdle.self], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.run() }
            _ = try await host.connected()

            print("== echo invoke through the sidecar, 64 B, 1 in flight")
            let client = try await TroupeClient.connect(
                system: "bench", to: .unix(path: socket), name: "bench", logger: logger)
            let payload = String(repeating: "x", count: 62)
            for _ in 0..<1000 { let _: String = try await client.invoke("echo", action: "echo", payload) }
            let echo = try await Self.echoLatency(client, payload, iterations: iterations)
            print(
                "   caller on the global pool:       p50 \(echo.p50) µs  p99 \(echo.p99) µs  ratio p50/raw \(String(format: "%.2f", echo.p50 / raw.p50))x (target ≤ 4x)"
            )
            let onLoop = try await withTaskExecutorPreference(client.executor) {
                try await Self.echoLatency(client, payload, iterations: iterations)
            }
            print(
                "   caller on client.executor:      p50 \(onLoop.p50) µs  p99 \(onLoop.p99) µs  ratio p50/raw \(String(format: "%.2f", onLoop.p50 / raw.p50))x (target ≤ 4x)"
            )

            // Each caller has its own echo actor: one actor runs one call at a time by design, so
            // callers sharing an actor would measure that actor's turn time, not the sidecar.
            print(
                "== throughput: \(callers) concurrent callers on \(callers) actors over \(connections) connection(s), \(seconds) s"
            )
            var clients: [TroupeClient] = []
            for i in 0..<connections {
                clients.append(
                    try await TroupeClient.connect(
                        system: "bench", to: .unix(path: socket), name: "load-\(i)", logger: logger))
            }
            for onLoop in [false, true] {
                let (total, elapsed) = try await closedLoop(
                    clients, callers: callers, seconds: seconds, onClientLoops: onLoop
                ) { client, caller in
                    let _: String = try await client.invoke(
                        "echo-\(caller)", action: "echo", payload, spawnFrom: BenchEchoPool.name)
                }
                let rate = Double(total) / elapsed
                print(
                    "   callers on \(onLoop ? "client.executor" : "the global pool"): \(total) invocations in \(String(format: "%.2f", elapsed)) s = \(Int(rate)) invocations/s (target ≥ 50000)"
                )
            }

            if actors > 0 {
                print("== sidecar memory with \(actors) active idle actors (SQLite store)")
                let before = sidecar.residentBytes()
                try await withThrowingTaskGroup(of: Void.self) { spawn in
                    let perCaller = actors / callers
                    for caller in 0..<callers {
                        let client = clients[caller % clients.count]
                        spawn.addTask {
                            for i in 0..<perCaller {
                                let _: NoPayload = try await client.invoke(
                                    "idle-\(caller)-\(i)", action: "touch", spawnFrom: BenchIdle.name,
                                    timeout: .seconds(120))
                            }
                        }
                    }
                    try await spawn.waitForAll()
                }
                let active = try await client.activeActors(limit: 1).count
                let after = sidecar.residentBytes()
                let perActor = Double(after - before) / Double(actors)
                print(
                    "   RSS \(before / 1024) KiB → \(after / 1024) KiB, \(String(format: "%.0f", perActor)) B per actor (target < 2048); listed \(active > 0 ? "yes" : "no")"
                )
            }
            for client in clients { await client.close() }
            await client.close()
            group.cancelAll()
        }
    }
}

extension EchoBench {
    /// Echo round trips with 1 in flight, from the calling task's executor.
    static func echoLatency(_ client: TroupeClient, _ payload: String, iterations: Int) async throws -> Percentiles {
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for _ in 0..<iterations {
            let start = ContinuousClock.now
            let _: String = try await client.invoke("echo", action: "echo", payload)
            samples.append((ContinuousClock.now - start).microseconds)
        }
        return Percentiles(samples)
    }
}

/// The echo actor measured.
struct BenchEcho: VirtualActor {
    typealias State = Stateless
    static let name = "echo"
    static func actions(_ actions: inout Actions<Self>) {
        actions.on("echo") { (_, text: String) -> String in text }
    }
}

/// The same echo as an unnamed type, one instance per caller.
struct BenchEchoPool: VirtualActor {
    typealias State = Stateless
    static let name = "echo-instance"
    static let kind = ActorKind.unnamed
    static func actions(_ actions: inout Actions<Self>) {
        actions.on("echo") { (_, text: String) -> String in text }
    }
}

/// An unnamed actor that does nothing: activated once, then left idle.
struct BenchIdle: VirtualActor {
    struct State: Codable, Sendable {}
    static let name = "idle"
    static let kind = ActorKind.unnamed
    static let idleTimeout: Duration? = .seconds(3600)
    static func initialState() -> State { State() }
    static func actions(_ actions: inout Actions<Self>) {
        actions.on("touch") { _ -> NoPayload in NoPayload() }
    }
}

/// The scratch directory of one benchmark run and the directory of the executables it starts.
struct BenchWorkspace {
    let work: URL
    let binaries: URL

    /// Quiet: only errors, so that the figures stay readable.
    static var logger: Logger {
        var logger = Logger(label: "troupe-bench")
        logger.logLevel = .error
        return logger
    }

    /// - Parameter binDir: where troupe-sidecar is; nil means next to this binary.
    init(name: String, binDir: String?) throws {
        work = URL(fileURLWithPath: "/tmp/\(name)-\(getpid())")
        // 0700: the sidecar refuses a socket directory that group or others may open.
        try FileManager.default.createDirectory(
            at: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        binaries =
            binDir.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    func remove() { try? FileManager.default.removeItem(at: work) }
}

/// Runs `callers` closed loops of `call` (each caller starts its next call when the last one
/// answered) over `clients` for `seconds`; returns the calls made and the seconds they took.
/// With `onClientLoops`, each caller runs on its client's ``TroupeClient/executor``.
func closedLoop(
    _ clients: [TroupeClient], callers: Int, seconds: Double, onClientLoops: Bool = false,
    _ call: @escaping @Sendable (TroupeClient, Int) async throws -> Void
) async throws -> (calls: Int, seconds: Double) {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    let started = ContinuousClock.now
    let total = try await withThrowingTaskGroup(of: Int.self) { load in
        for caller in 0..<callers {
            let client = clients[caller % clients.count]
            load.addTask(executorPreference: onClientLoops ? client.executor : nil) {
                var count = 0
                while ContinuousClock.now < deadline {
                    try await call(client, caller)
                    count += 1
                }
                return count
            }
        }
        return try await load.reduce(0, +)
    }
    return (total, (ContinuousClock.now - started).microseconds / 1_000_000)
}

struct Percentiles {
    let p50: Double
    let p99: Double

    init(_ samples: [Double]) {
        let sorted = samples.sorted()
        p50 = (sorted[sorted.count / 2] * 10).rounded() / 10
        p99 = (sorted[min(sorted.count - 1, sorted.count * 99 / 100)] * 10).rounded() / 10
    }
}

extension Duration {
    var microseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1_000_000 + Double(attoseconds) / 1_000_000_000_000
    }
}

/// The floor: two threads bouncing 64 bytes over a connected socket pair with blocking reads and
/// writes: a Unix socket pair, or TCP over loopback with `TCP_NODELAY`.
enum RawPingPong {
    static func measure(iterations: Int) throws -> Percentiles {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
            throw TroupeError.internalError("socketpair failed: errno \(errno)")
        }
        return try measure(iterations: iterations, between: fds[0], and: fds[1])
    }

    /// The same over a TCP connection on 127.0.0.1.
    static func measureTCP(iterations: Int) throws -> Percentiles {
        var (listener, address) = try loopbackSocket()
        defer { close(listener) }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                listen(listener, 1) == 0 && connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        let server = accept(listener, nil, nil)
        guard connected, server >= 0 else {
            throw TroupeError.internalError("loopback TCP setup failed: errno \(errno)")
        }
        var one: Int32 = 1
        for fd in [client, server] {
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        return try measure(iterations: iterations, between: client, and: server)
    }

    /// A TCP socket bound to a free port on 127.0.0.1, and its address.
    static func loopbackSocket() throws -> (Int32, sockaddr_in) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw TroupeError.internalError("cannot bind 127.0.0.1: errno \(errno)")
        }
        return (fd, address)
    }

    private static func measure(iterations: Int, between a: Int32, and b: Int32) throws -> Percentiles {
        defer {
            close(a)
            close(b)
        }
        let total = iterations + 1000
        let echo = Thread {
            var buffer = [UInt8](repeating: 0, count: 64)
            for _ in 0..<total {
                guard readFully(b, &buffer), writeFully(b, buffer) else { return }
            }
        }
        echo.start()
        var buffer = [UInt8](repeating: 7, count: 64)
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        for i in 0..<total {
            let start = ContinuousClock.now
            guard writeFully(a, buffer), readFully(a, &buffer) else {
                throw TroupeError.internalError("raw ping-pong broke")
            }
            if i >= 1000 { samples.append((ContinuousClock.now - start).microseconds) }
        }
        return Percentiles(samples)
    }

    static func readFully(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var got = 0
        while got < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            if n <= 0 { return false }
            got += n
        }
        return true
    }

    static func writeFully(_ fd: Int32, _ buffer: [UInt8]) -> Bool {
        var sent = 0
        while sent < buffer.count {
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + sent, $0.count - sent) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}

/// The sidecar under test, as its own process.
final class SidecarProcess {
    let process = Process()
    let socket: String

    init(binaries: URL, socket: String, dataPath: String, system: String = "bench", extraArguments: [String] = [])
        throws
    {
        self.socket = socket
        process.executableURL = binaries.appendingPathComponent("troupe-sidecar")
        process.arguments =
            [
                "--system", system, "--socket", socket, "--data-path", dataPath, "--log-level", "warning",
                "--mailbox-capacity", "100000", "--max-concurrent-requests", "100000",
                // Several sidecars side by side (and other programs): each admin endpoint on a free port.
                "--admin-listen", "127.0.0.1:0",
            ] + extraArguments
        try process.run()
    }

    /// A sidecar of system "bench" with its socket and SQLite file in `workspace`, once its socket exists.
    static func start(in workspace: BenchWorkspace) async throws -> SidecarProcess {
        let sidecar = try SidecarProcess(
            binaries: workspace.binaries, socket: workspace.work.appendingPathComponent("troupe.sock").path,
            dataPath: workspace.work.appendingPathComponent("state.sqlite").path)
        do { try await sidecar.waitForSocket() } catch {
            sidecar.stop()
            throw error
        }
        return sidecar
    }

    func waitForSocket() async throws {
        for _ in 0..<500 {
            if FileManager.default.fileExists(atPath: socket) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TroupeError.unavailable("troupe-sidecar did not open \(socket)")
    }

    /// VmRSS of the sidecar process.
    func residentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        let kib = Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        return kib * 1024
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
