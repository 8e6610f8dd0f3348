import Foundation

/// A private nats-server process on 127.0.0.1, for tests: a port picked by the server itself
/// on the first start and kept across restarts, its log in a temporary directory.
public final class NATSServer: @unchecked Sendable {
    // @unchecked: the mutable process and port are touched only by the one test that owns the server.
    public private(set) var port = 0
    private var process: Process?
    private let directory: URL
    private let extraArguments: [String]
    private var starts = 0

    /// Starts a server; `arguments` are extra nats-server flags (for example `--user u --pass p`).
    public init(arguments: [String] = []) throws {
        directory = URL(fileURLWithPath: "/tmp/troupe-nats-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        extraArguments = arguments
        try start()
    }

    deinit { stop() }

    /// `nats://127.0.0.1:PORT`.
    public var url: String { "nats://127.0.0.1:\(port)" }

    public var isRunning: Bool { process?.isRunning ?? false }

    /// Starts the server (again), on the port of the first start.
    public func start() throws {
        starts += 1
        let log = directory.appendingPathComponent("nats-\(starts).log")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        // -1: the server picks a free port and logs it; a restart reuses it.
        process.arguments = ["-a", "127.0.0.1", "-p", port == 0 ? "-1" : "\(port)", "-l", log.path] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "Listening for client connections on 127.0.0.1:") {
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                if let found = Int(digits), text.contains("Server is ready") {
                    port = found
                    return
                }
            }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        stop()
        throw NATSServerError(
            message: "nats-server did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    /// Kills the server with SIGKILL (a crash, as far as clients can tell) and waits for it to exit.
    public func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Stops the server and removes its directory.
    public func stop() {
        kill()
        process = nil
        try? FileManager.default.removeItem(at: directory)
    }

    static var executable: String {
        ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "nats-server"
    }
}

public struct NATSServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
