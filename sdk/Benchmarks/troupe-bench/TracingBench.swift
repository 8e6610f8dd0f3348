import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Troupe

/// `troupe-bench tracing`: what spans cost a call. Two sidecar processes side by side, one without
/// tracing and one exporting every span over OTLP/HTTP to a sink in this process, measured in
/// alternating batches so both see the same machine.
struct TracingBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracing", abstract: "Echo latency and throughput with tracing off and on (OTLP export).")

    // Names of their own: the parent command's --iterations and --seconds would take those flags.
    @Option(help: "Round trips per sidecar for the latency measurement.") var calls = 20_000
    @Option(help: "Calls in a row to one sidecar before switching to the other.") var batch = 100
    @Option(help: "Concurrent callers for the throughput runs.") var callers = 64
    @Option(help: "Seconds of each throughput run.") var loadSeconds = 3.0
    @Option(help: "Fraction of traces recorded by the traced sidecar.") var sampleRatio = 1.0
    @Option(help: "Directory holding troupe-sidecar (default: next to this binary).") var binDir: String?

    func run() async throws {
        let logger = BenchWorkspace.logger
        let workspace = try BenchWorkspace(name: "troupe-bench-tracing", binDir: binDir)
        defer { workspace.remove() }
        let (work, binaries) = (workspace.work, workspace.binaries)

        let sink = try await OTLPSink.start()
        defer { sink.stop() }
        print("== OTLP/HTTP sink on 127.0.0.1:\(sink.port) (answers 204 to every export)")

        let plainSocket = work.appendingPathComponent("plain.sock").path
        let tracedSocket = work.appendingPathComponent("traced.sock").path
        let plain = try SidecarProcess(
            binaries: binaries, socket: plainSocket, dataPath: work.appendingPathComponent("plain.sqlite").path,
            extraArguments: ["--store", "memory", "--admin-listen", "off"])
        defer { plain.stop() }
        let traced = try SidecarProcess(
            binaries: binaries, socket: tracedSocket, dataPath: work.appendingPathComponent("traced.sqlite").path,
            extraArguments: [
                "--store", "memory", "--admin-listen", "off", "--otlp-endpoint", "http://127.0.0.1:\(sink.port)",
                "--trace-sample-ratio", "\(sampleRatio)",
            ])
        defer { traced.stop() }
        try await plain.waitForSocket()
        try await traced.waitForSocket()

        let hosts = try [plainSocket, tracedSocket].map { socket in
            try TroupeHost(
                system: "bench", endpoint: .unix(path: socket), actors: [BenchEcho.self, BenchEchoPool.self],
                logger: logger)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for host in hosts { group.addTask { try await host.run() } }
            for host in hosts { _ = try await host.connected() }
            var clients: [TroupeClient] = []
            for socket in [plainSocket, tracedSocket] {
                clients.append(
                    try await TroupeClient.connect(
                        system: "bench", to: .unix(path: socket), name: "bench", logger: logger))
            }
            let payload = String(repeating: "x", count: 62)
            for client in clients {
                for _ in 0..<1000 { let _: String = try await client.invoke("echo", action: "echo", payload) }
            }

            print("== echo, 64 B, 1 in flight: \(calls) calls per sidecar, alternating every \(batch)")
            var samples: [[Double]] = [[], []]
            // Short alternating batches: both sidecars see the same moments of a shared machine.
            for _ in 0..<max(1, calls / batch) {
                for (index, client) in clients.enumerated() {
                    for _ in 0..<batch {
                        let start = ContinuousClock.now
                        let _: String = try await client.invoke("echo", action: "echo", payload)
                        samples[index].append((ContinuousClock.now - start).microseconds)
                    }
                }
            }
            let (off, on) = (Percentiles(samples[0]), Percentiles(samples[1]))
            print("   tracing off: p50 \(off.p50) µs  p99 \(off.p99) µs")
            print("   tracing on:  p50 \(on.p50) µs  p99 \(on.p99) µs")
            print(
                "   ratio on/off p50 \(String(format: "%.2f", on.p50 / off.p50))x  p99 \(String(format: "%.2f", on.p99 / off.p99))x"
            )

            print(
                "== throughput: \(callers) concurrent callers on their own actors, \(loadSeconds) s each: off, on, off, on"
            )
            var completed: [Int] = [0, 0]
            var elapsed: [Double] = [0, 0]
            for _ in 0..<2 {
                for (index, socket) in [plainSocket, tracedSocket].enumerated() {
                    let client = try await TroupeClient.connect(
                        system: "bench", to: .unix(path: socket), name: "load", logger: logger)
                    let run = try await closedLoop([client], callers: callers, seconds: loadSeconds) {
                        client, caller in
                        let _: String = try await client.invoke(
                            "echo-\(caller)", action: "echo", payload, spawnFrom: BenchEchoPool.name)
                    }
                    completed[index] += run.calls
                    elapsed[index] += run.seconds
                    await client.close()
                }
            }
            let (offRate, onRate) = (Double(completed[0]) / elapsed[0], Double(completed[1]) / elapsed[1])
            print(
                "   tracing off: \(Int(offRate))/s  tracing on: \(Int(onRate))/s  ratio on/off \(String(format: "%.2f", onRate / offRate))x"
            )
            for client in clients { await client.close() }
            // The batch processor exports every 5 s by default: wait for at least one export.
            for _ in 0..<100 where sink.requests == 0 { try await Task.sleep(for: .milliseconds(100)) }
            print("   the sink took \(sink.requests) export request(s), \(sink.bytes / 1024) KiB")
            group.cancelAll()
        }
    }
}

/// An OTLP/HTTP endpoint that takes every export and answers 204: the collector's cost is not
/// what is measured.
final class OTLPSink: Sendable {
    private let channel: any Channel
    private let counts: Counts

    final class Counts: Sendable {
        let requests = Atomic<Int>(0)
        let bytes = Atomic<Int>(0)
    }

    var port: Int { channel.localAddress?.port ?? 0 }
    var requests: Int { counts.requests.load(ordering: .relaxed) }
    var bytes: Int { counts.bytes.load(ordering: .relaxed) }

    private init(channel: any Channel, counts: Counts) {
        self.channel = channel
        self.counts = counts
    }

    static func start() async throws -> OTLPSink {
        let counts = Counts()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(counts: counts))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return OTLPSink(channel: channel, counts: counts)
    }

    func stop() { channel.close(promise: nil) }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let counts: Counts

        init(counts: Counts) { self.counts = counts }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: break
            case .body(let buffer): counts.bytes.add(buffer.readableBytes, ordering: .relaxed)
            case .end:
                counts.requests.add(1, ordering: .relaxed)
                let head = HTTPResponseHead(version: .http1_1, status: .noContent)
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
