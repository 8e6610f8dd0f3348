import Foundation

/// A private nats-server process on 127.0.0.1, for tests: a port below the ephemeral range
/// (``LoopbackPort``), kept across restarts, and its log in a temporary directory.
public final class NATSServer: @unchecked Sendable {
    // @unchecked: the mutable process is touched only by the one test that owns the server.
    public let port: Int
    private var process: Process?
    private let directory: URL
    private let extraArguments: [String]
    private var starts = 0

    /// Starts a server; `arguments` are extra nats-server flags (for example `--user u --pass p`).
    public init(arguments: [String] = []) throws {
        directory = URL(fileURLWithPath: "/tmp/troupe-nats-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        extraArguments = arguments
        port = try LoopbackPort.free()
        try start()
    }

    deinit { stop() }

    /// `nats://127.0.0.1:PORT`.
    public var url: String { "nats://127.0.0.1:\(port)" }

    public var isRunning: Bool { process?.isRunning ?? false }

    /// Starts the server (again), on the port of the first start.
    ///
    /// It waits (5 s at most) while the port is taken, as it may be for a moment after a server
    /// killed with connections open.
    public func start() throws {
        let deadline = Date().addingTimeInterval(5)
        while true {
            let (started, said) = try launch()
            if started { return }
            kill()
            let busy = said.contains("address already in use")
            guard busy, Date() < deadline else {
                let holders = busy ? "\nsockets on the port:\n\(shell("ss -tanpe | grep ':\(port) '").output)" : ""
                stop()
                throw NATSServerError(message: "nats-server did not start on port \(port): \(said)\(holders)")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// Runs the server once; false, with what it said, if it did not come up.
    private func launch() throws -> (started: Bool, said: String) {
        starts += 1
        let log = directory.appendingPathComponent("nats-\(starts).log")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["-a", "127.0.0.1", "-p", "\(port)", "-l", log.path] + extraArguments
        // What the server says before its log file is open (a port it cannot bind) goes to stderr.
        let stderr = directory.appendingPathComponent("nats-\(starts).stderr")
        FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if text.contains("Listening for client connections on 127.0.0.1:\(port)"), text.contains("Server is ready")
            {
                return (true, "")
            }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return (false, [log, stderr].compactMap { try? String(contentsOf: $0, encoding: .utf8) }.joined())
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

    public init(message: String) { self.message = message }
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, made with
/// the openssl command in a temporary directory, for TLS tests.
public struct TestCertificates: Sendable {
    public let directory: String
    public var caFile: String { directory + "/ca.pem" }
    public var serverCertificate: String { directory + "/server.pem" }
    public var serverKey: String { directory + "/server.key" }
    public var clientCertificate: String { directory + "/client.pem" }
    public var clientKey: String { directory + "/client.key" }
    /// Another CA, which signed nothing here.
    public var otherCAFile: String { directory + "/other-ca.pem" }

    public init() throws {
        directory = "/tmp/troupe-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory)'
            key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
            openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=troupe-test-ca
            openssl req -x509 $key -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=troupe-other-ca
            printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl req $key -keyout server.key -out server.csr -subj /CN=127.0.0.1
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
            openssl req $key -keyout client.key -out client.csr -subj /CN=troupe-test-client
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext
            """
        try Self.run(script)
    }

    /// Another server certificate and key, signed by this CA, that name `dnsName` only (no IP).
    public func serverCertificate(named dnsName: String) throws -> (certificate: String, key: String) {
        try Self.run(
            """
            set -e
            cd '\(directory)'
            printf 'subjectAltName=DNS:\(dnsName)\\nextendedKeyUsage=serverAuth\\n' > named.ext
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout named.key -out named.csr -subj /CN=\(dnsName)
            openssl x509 -req -in named.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out named.pem -days 2 -extfile named.ext
            """)
        return (directory + "/named.pem", directory + "/named.key")
    }

    /// Runs `script` with `/bin/sh`; fails if it exits non-zero (an `openssl` step failed).
    static func run(_ script: String) throws {
        guard shell(script).status == 0 else {
            throw NATSServerError(message: "openssl could not make the test certificates")
        }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Runs `script` with `/bin/sh`: its exit status and what it wrote to stdout (-1 if it did not run).
func shell(_ script: String) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", script]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return (-1, "") }
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, text)
}
