import Foundation
import NIOCore
import NIOPosix
import TroupeTestActors
import TroupeWire

/// A PostgreSQL server of a test's own, on a free loopback port and a temporary data directory,
/// which the test may stop and start again: the shared server of scripts/test.sh must not go away
/// under the other tests.
///
/// Run as root (CI, the dev machines), the server programs run as the `postgres` user, as
/// scripts/test.sh does, since initdb refuses to run as root.
final class TestPostgresServer: Sendable {
    let directory: String
    let port: Int
    private let bin: String
    /// Extra server options (`-c name=value ...`).
    private let options: String

    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    /// Runs initdb and starts the server. With `tls` (PEM certificate and key files), the server
    /// presents that certificate and accepts TLS connections only.
    static func start(tls: (certificate: String, key: String)? = nil) async throws -> TestPostgresServer {
        guard let bin = serverPrograms() else {
            throw TroupeError.unavailable("PostgreSQL server programs not found: run scripts/install-deps.sh")
        }
        let directory = "/tmp/troupe-pg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if getuid() == 0 { try run("/bin/chown", ["postgres:", directory]) }
        var options = ""
        if let tls {
            // The server refuses a key file others can read, and reads it as its own user.
            for (source, name) in [(tls.certificate, "server.crt"), (tls.key, "server.key")] {
                try FileManager.default.copyItem(atPath: source, toPath: "\(directory)/\(name)")
                try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: "\(directory)/\(name)")
                if getuid() == 0 { try run("/bin/chown", ["postgres:", "\(directory)/\(name)"]) }
            }
            options = " -c ssl=on -c ssl_cert_file=\(directory)/server.crt -c ssl_key_file=\(directory)/server.key"
        }
        let unstarted = TestPostgresServer(directory: directory, port: 0, bin: bin, options: options)
        do {
            try unstarted.asServerUser(
                "\(bin)/initdb", ["-D", "\(directory)/data", "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            if tls != nil {
                // TLS or nothing: a plain connection is rejected, so a test that connects proves TLS.
                try "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\nlocal all all trust\n"
                    .write(toFile: "\(directory)/data/pg_hba.conf", atomically: false, encoding: .utf8)
            }
        } catch {
            unstarted.remove()
            throw error
        }
        // A port picked free may be taken by a parallel test before the server binds it: then
        // the server starts again on a new one, three times at most.
        var failure: (any Error)?
        for _ in 0..<3 {
            let server = TestPostgresServer(directory: directory, port: try LoopbackPort.free(), bin: bin, options: options)
            do {
                try server.startAgain()
                return server
            } catch {
                failure = error
            }
        }
        unstarted.remove()
        throw failure ?? TroupeError.unavailable("PostgreSQL did not start")
    }

    private init(directory: String, port: Int, bin: String, options: String) {
        self.directory = directory
        self.port = port
        self.bin = bin
        self.options = options
    }

    /// Starts the (stopped) server on the same port and data.
    func startAgain() throws {
        try asServerUser(
            "\(bin)/pg_ctl",
            [
                "-D", "\(directory)/data", "-l", "\(directory)/postgres.log", "-w", "-t", "30", "start", "-o",
                "-c listen_addresses=127.0.0.1 -c port=\(port) -c unix_socket_directories=\(directory) -c fsync=off\(options)",
            ])
    }

    /// Stops the server the way a crash would: no checkpoint, connections cut at once.
    func crash() throws {
        try asServerUser("\(bin)/pg_ctl", ["-D", "\(directory)/data", "-w", "-t", "30", "stop", "-m", "immediate"])
    }

    /// Stops the server if it runs and deletes its data.
    func remove() {
        if FileManager.default.fileExists(atPath: "\(directory)/data/postmaster.pid") {
            try? asServerUser("\(bin)/pg_ctl", ["-D", "\(directory)/data", "-w", "-t", "30", "stop", "-m", "immediate"])
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func asServerUser(_ program: String, _ arguments: [String]) throws {
        if getuid() == 0 {
            try Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments, in: directory)
        } else {
            try Self.run(program, arguments, in: directory)
        }
    }

    /// Runs `program` to completion with its output in a file, and fails with that output.
    ///
    /// posix_spawn and waitpid rather than Foundation's Process: pg_ctl's daemonized server made
    /// `Process.waitUntilExit` miss the exit of runuser, leaving the test hanging on a zombie.
    private static func run(_ program: String, _ arguments: [String], in directory: String? = nil) throws {
        let outputPath = "/tmp/troupe-pg-out-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // sh changes directory first: the server must not sit in one its user cannot read.
        let argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory ?? "/", program] + arguments
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, "/bin/sh", &actions, nil, cArguments, environ)
        guard spawned == 0 else { throw TroupeError.internalError("cannot start \(program): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        guard status & 0x7F == 0, (status >> 8) & 0xFF == 0 else {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw TroupeError.internalError("\(program) \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }

    /// Where initdb and pg_ctl are: Debian keeps them off PATH, under /usr/lib/postgresql/VERSION/bin.
    private static func serverPrograms() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted(by: >)
        return versions.map { "\(root)/\($0)/bin" }.first {
            FileManager.default.isExecutableFile(atPath: "\($0)/initdb")
        }
    }
}

/// Runs an in-process sidecar (with the SDK host) on `server`, whose store operations give up
/// after 1 s, so a test that crashes the server sees `unavailable` quickly.
func withSidecar<T: Sendable>(
    onFailingPostgres server: TestPostgresServer, _ body: @Sendable (SidecarHarness) async throws -> T
) async throws -> T {
    try await withSidecar(
        store: "postgres",
        configure: {
            $0.postgres.url = server.url
            $0.postgres.operationTimeoutMs = 1000
        }, body)
}
