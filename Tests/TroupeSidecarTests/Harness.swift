import Foundation
import Logging
import NIOCore
import NIOPosix
import Prometheus
import Synchronization
import Tracing
import Troupe
import TroupeProto
import TroupeSidecar
import TroupeTestActors
import TroupeTestSupport

/// A private temporary directory, removed by ``remove()``.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        // Short paths: a Unix socket path must fit in 108 bytes.
        url = URL(fileURLWithPath: "/tmp/troupe-test-\(UUID().uuidString.prefix(8))")
        // 0700: the sidecar refuses a socket directory that group or others may open.
        try FileManager.default.createDirectory(
            at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Runs an in-process sidecar on a temporary socket while `body` runs, with an optional SDK host
/// serving the test actors, and tears everything down afterwards.
func withSidecar<T: Sendable>(
    system: String = "test",
    store: String = "memory",
    host: Bool = true,
    metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
    tracer: (any Tracer)? = nil,
    hostTracer: (any Tracer)? = nil,
    logger: Logger? = nil,
    configure: (inout SidecarConfiguration) -> Void = { _ in },
    _ body: @Sendable (SidecarHarness) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    var configuration = SidecarConfiguration()
    configuration.system = system
    configuration.node = "test-node"
    configuration.socket = directory.path("troupe.sock")
    configuration.store = store
    configuration.dataPath = directory.path("state.sqlite")
    // Tests run side by side: each admin endpoint on a port of its own.
    configuration.adminListen = "127.0.0.1:0"
    configure(&configuration)
    let logger =
        logger
        ?? {
            var logger = Logger(label: "test.sidecar")
            logger.logLevel = .warning
            return logger
        }()
    let sidecar = try await Sidecar.start(
        configuration: configuration, logger: logger, metrics: metrics, tracer: tracer)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await sidecar.run(signals: []) }
        try await waitFor("the sidecar socket") { FileManager.default.fileExists(atPath: configuration.socket) }
        if configuration.adminListen != nil {
            try await waitFor("the admin endpoint") { sidecar.adminPort != nil }
        }
        if configuration.listenTCP != nil {
            try await waitFor("the TCP listener") { sidecar.tcpPort != nil }
        }
        var testHost: TroupeHost?
        if host {
            var hostLogger = Logger(label: "test.host")
            hostLogger.logLevel = .warning
            let sdkHost = try TroupeHost(
                system: system, endpoint: .unix(path: configuration.socket), actors: testActorTypes, logger: hostLogger,
                tracer: hostTracer)
            group.addTask { try await sdkHost.run() }
            // The SDK's default: in the first seconds of the parallel suite dozens of sidecars,
            // hosts and nats-servers start at once on 2 cores, and 10 s was not always enough.
            _ = try await sdkHost.connected(timeout: .seconds(30))
            testHost = sdkHost
        }
        let harness = SidecarHarness(
            configuration: configuration, sidecar: sidecar, host: testHost, directory: directory)
        let result = try await body(harness)
        group.cancelAll()
        return result
    }
}

struct SidecarHarness: Sendable {
    let configuration: SidecarConfiguration
    let sidecar: Sidecar
    let host: TroupeHost?
    let directory: TemporaryDirectory

    var endpoint: Endpoint { .unix(path: configuration.socket) }

    func client(name: String = "test-client", tracer: (any Tracer)? = nil) async throws -> TroupeClient {
        try await TroupeClient.connect(system: configuration.system, to: endpoint, name: name, tracer: tracer)
    }

    /// Waits until some host has registered actor type `type` (at most 20 s).
    func waitForRegistration(of type: String) async throws {
        let connection = try await connection()
        defer { connection.close() }
        try await waitFor("a host to register '\(type)'", timeout: .seconds(20)) {
            guard case .sidecar(let info) = try await connection.call(.describeSidecar(.init()), timeout: .seconds(5))
            else {
                return false
            }
            return info.registered.contains { $0.name == type }
        }
    }

    /// A raw connection that has done the handshake as a client.
    func connection(role: WirePeerRole = .client) async throws -> PeerConnection {
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        hello.system = configuration.system
        hello.role = role
        hello.name = "raw-test"
        return try await PeerConnection.connect(
            to: endpoint, hello: hello, delegate: nil, logger: Logger(label: "test.raw")
        ).0
    }
}

extension TemporaryDirectory: Sendable {}

/// The directory holding the package's built executables.
let binaryDirectory: URL = {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug"),
    ]
    for var candidate in candidates {
        for _ in 0..<4 {
            if FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("troupe-sidecar").path) {
                return candidate
            }
            candidate.deleteLastPathComponent()
        }
    }
    return candidates[1]
}()

/// A child process started from one of the package's executables, with its output in a file.
final class ChildProcess: Sendable {
    let process: Process
    let logPath: String

    init(_ executable: String, _ arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        let process = Process()
        // A bare name is one of this package's products; an absolute path is run as it is.
        process.executableURL =
            executable.hasPrefix("/")
            ? URL(fileURLWithPath: executable) : binaryDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        // Sidecars run side by side in tests: each admin endpoint on a port of its own (a flag
        // or `environment` still wins).
        env["TROUPE_ADMIN_LISTEN"] = "127.0.0.1:0"
        env.merge(environment) { $1 }
        process.environment = env
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        self.logPath = logPath
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit (at most `timeout`), then returns its status; SIGKILLs it if it did not exit.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(15)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TroupeError.deadlineExceeded(
                "process \(process.executableURL?.lastPathComponent ?? "?") did not exit in time")
        }
        return process.terminationStatus
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Kills the process if it is still running. For cleanup paths.
    func kill9() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Runs an executable to completion and returns its exit status and standard output.
func runToCompletion(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:],
    timeout: Duration = .seconds(60)
) async throws -> (Int32, String) {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let child = try ChildProcess(executable, arguments, logPath: directory.path("out.log"), environment: environment)
    let status = try await child.waitForExit(timeout: timeout)
    return (status, child.log)
}

/// Starts `body` now and hands back its outcome later: for a call a test lets run while it does
/// something else (kills a process, sends a signal).
func inBackground<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Task<Result<T, any Error>, Never> {
    Task {
        do { return .success(try await body()) } catch { return .failure(error) }
    }
}
