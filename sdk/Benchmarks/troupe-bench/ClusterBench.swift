import Foundation
import Logging
import NIOPosix
import Troupe
import TroupePlacement
import TroupeProto
import TroupeWire

/// `troupe-bench --cluster`: echo latency through a local owner and through a remote owner in a
/// two-node cluster (two troupe-sidecar processes), against raw TCP ping-pong measured in the
/// same run; then remote throughput with many calls in flight.
struct ClusterBench {
    let iterations: Int
    let callers: Int
    let connections: Int
    let seconds: Double
    let binaries: URL
    let work: URL
    /// Mutual TLS between the sidecars, with a CA and certificates made by `openssl` in `work`.
    let tls: Bool
    let logger: Logger

    /// A CA and one certificate for the whole system (as one Secret serves every pod), as the
    /// cluster-tls-* arguments of a sidecar.
    private func makeCertificates() throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.currentDirectoryURL = work
        process.arguments = [
            "-c",
            """
            set -e
            key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
            openssl req -x509 $key -keyout ca.key -out ca.crt -days 1 -subj /CN=bench-ca
            printf 'subjectAltName=URI:troupe://bench\\nextendedKeyUsage=serverAuth,clientAuth\\n' > tls.ext
            openssl req $key -keyout tls.key -out tls.csr -subj /CN=bench
            openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 1 -extfile tls.ext
            """,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TroupeError.internalError("openssl failed") }
        let path = { (name: String) in work.appendingPathComponent(name).path }
        return [
            "--cluster-tls-cert", path("tls.crt"), "--cluster-tls-key", path("tls.key"), "--cluster-tls-ca",
            path("ca.crt"),
        ]
    }

    func run() async throws {
        print("== raw baseline: TCP loopback ping-pong, 64 B, TCP_NODELAY, 1 in flight")
        let raw = try RawPingPong.measureTCP(iterations: iterations)
        print("   p50 \(raw.p50) µs  p99 \(raw.p99) µs")

        let ports = try (0..<2).map { _ in try freePort() }
        let names = ["n0", "n1"]
        let tlsArguments = tls ? try makeCertificates() : []
        print("== cluster transport: \(tls ? "mutual TLS 1.3 (P-256 certificates)" : "plain TCP")")
        var sidecars: [SidecarProcess] = []
        defer { for sidecar in sidecars { sidecar.stop() } }
        for index in 0..<2 {
            let socket = work.appendingPathComponent("\(names[index]).sock").path
            let sidecar = try SidecarProcess(
                binaries: binaries, socket: socket, dataPath: work.appendingPathComponent("\(index).sqlite").path,
                extraArguments: [
                    "--node", names[index], "--store", "memory", "--cluster-listen", "127.0.0.1:\(ports[index])",
                    "--cluster-seeds", "127.0.0.1:\(ports[0])",
                    // Both would bind the default admin port 127.0.0.1:9090.
                    "--admin-listen", "off",
                ] + tlsArguments)
            sidecars.append(sidecar)
            try await sidecar.waitForSocket()
        }
        let hosts = try sidecars.map {
            try TroupeHost(
                system: "bench", endpoint: .unix(path: $0.socket), actors: [BenchEchoPool.self], logger: logger)
        }
        let clientLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for host in hosts {
                group.addTask { try await host.run() }
                _ = try await host.connected()
            }
            try await waitForCluster(sidecars[0].socket, names)

            // Actor ids that rendezvous places on n0 (local to the client's sidecar) and on n1.
            let ids = (0..<1000).map { "echo-\($0)" }
            func owner(_ id: String) -> String? { RendezvousPlacement.owner(of: "bench/\(id)", among: names) }
            guard let local = ids.first(where: { owner($0) == "n0" }),
                let remote = ids.first(where: { owner($0) == "n1" })
            else { throw TroupeError.internalError("no actor ids for both nodes") }

            // The measuring client on a thread of its own: on NIO's shared group it would share a
            // thread with one host but not the other, and the two phases would differ by that.
            let client = try await TroupeClient.connect(
                system: "bench", to: .unix(path: sidecars[0].socket), name: "bench", logger: logger,
                eventLoopGroup: clientLoop)
            let payload = String(repeating: "x", count: 62)
            let processes = zip(names, sidecars).map { ($0, $1.process.processIdentifier) }
            let localEcho = try await latency(
                client, local, payload, "echo invoke, owner is the client's sidecar (local)", processes)
            let remoteEcho = try await latency(
                client, remote, payload, "echo invoke, owner is the other node (remote)", processes)
            let budget = localEcho.p50 + 2 * raw.p50
            print(
                "   remote p50 − local p50 = \(String(format: "%.1f", remoteEcho.p50 - localEcho.p50)) µs = \(String(format: "%.2f", (remoteEcho.p50 - localEcho.p50) / raw.p50))× raw TCP p50; target remote p50 ≤ local p50 + 2× raw = \(String(format: "%.1f", budget)) µs: \(remoteEcho.p50 <= budget ? "met" : "not met")"
            )

            let remoteIDs = Array(ids.filter { owner($0) == "n1" }.prefix(callers))
            print(
                "== remote throughput: \(remoteIDs.count) concurrent callers, one remote actor each, over \(connections) connection(s), \(seconds) s"
            )
            var clients: [TroupeClient] = []
            for index in 0..<connections {
                clients.append(
                    try await TroupeClient.connect(
                        system: "bench", to: .unix(path: sidecars[0].socket), name: "load-\(index)", logger: logger))
            }
            let (total, elapsed) = try await closedLoop(clients, callers: remoteIDs.count, seconds: seconds) {
                client, caller in
                let _: String = try await client.invoke(
                    remoteIDs[caller], action: "echo", payload, spawnFrom: BenchEchoPool.name)
            }
            print(
                "   \(total) remote invocations in \(String(format: "%.2f", elapsed)) s = \(Int(Double(total) / elapsed))/s"
            )
            for client in clients { await client.close() }
            await client.close()
            group.cancelAll()
        }
        try await clientLoop.shutdownGracefully()
    }

    private func latency(
        _ client: TroupeClient, _ id: String, _ payload: String, _ title: String,
        _ processes: [(name: String, pid: Int32)]
    ) async throws -> Percentiles {
        print("== \(title), 64 B, 1 in flight (actor \(id))")
        for _ in 0..<1000 {
            let _: String = try await client.invoke(id, action: "echo", payload, spawnFrom: BenchEchoPool.name)
        }
        var samples: [Double] = []
        samples.reserveCapacity(iterations)
        let cpu = CallCPU(processes)
        for _ in 0..<iterations {
            let start = ContinuousClock.now
            let _: String = try await client.invoke(id, action: "echo", payload, spawnFrom: BenchEchoPool.name)
            samples.append((ContinuousClock.now - start).microseconds)
        }
        let result = Percentiles(samples)
        print("   p50 \(result.p50) µs  p99 \(result.p99) µs")
        print("   \(cpu.summary(calls: iterations))")
        return result
    }

    /// Waits until `socket`'s sidecar sees every node up and serving the echo type.
    private func waitForCluster(_ socket: String, _ names: [String]) async throws {
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        hello.system = "bench"
        hello.role = .client
        hello.name = "bench-members"
        let (connection, _) = try await PeerConnection.connect(
            to: .unix(path: socket), hello: hello, delegate: nil, logger: logger)
        defer { connection.close() }
        for _ in 0..<1500 {
            if case .members(let response) = try await connection.call(.listMembers(.init()), timeout: .seconds(5)),
                Set(
                    response.members.filter { $0.status == "up" && $0.actorTypes.contains(BenchEchoPool.name) }.map(
                        \.node))
                    == Set(names)
            {
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TroupeError.unavailable("the cluster did not form within 30 s")
    }

    private func freePort() throws -> Int {
        let (fd, address) = try RawPingPong.loopbackSocket()
        close(fd)
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
