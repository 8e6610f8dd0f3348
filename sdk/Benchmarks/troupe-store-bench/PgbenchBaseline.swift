import Foundation
import Logging
import PostgresNIO
import TroupeWire

/// pgbench doing what a naive store does: one single-row upsert per update, each client its own
/// row, on the same server and with the same state size as the store's run.
enum PgbenchBaseline {
    static func run(url: String, clients: Int, stateBytes: Int, seconds: Int, program: String, logger: Logger)
        async throws -> Double
    {
        let work = "/tmp/troupe-pgbench-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        try await setUp(url: url, clients: clients, logger: logger)
        let hex = String(repeating: "42", count: stateBytes)
        let script = """
            INSERT INTO troupe_pgbench (id, state, revision) VALUES (:client_id, '\\\\x\(hex)'::bytea, 1)
            ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, revision = troupe_pgbench.revision + 1, updated_at = now();

            """
        try script.write(toFile: "\(work)/upsert.sql", atomically: true, encoding: .utf8)
        let output = try runPgbench(
            program, ["-n", "-c", "\(clients)", "-j", "2", "-T", "\(seconds)", "-f", "\(work)/upsert.sql", url])
        // "tps = 12345.678901 (without initial connection time)"
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
            let tps = Double(line.dropFirst("tps = ".count).prefix(while: { $0 != " " }))
        else {
            throw TroupeError.internalError("pgbench printed no tps line:\n\(output)")
        }
        return tps
    }

    private static func setUp(url: String, clients: Int, logger: Logger) async throws {
        guard let components = URLComponents(string: url) else {
            throw TroupeError.invalidArgument("not a URL: \(url)")
        }
        let configuration = PostgresConnection.Configuration(
            host: components.host ?? "127.0.0.1", port: components.port ?? 5432, username: components.user ?? "postgres",
            password: components.password, database: String(components.path.dropFirst()), tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            try await createTable(connection, clients: clients, logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    private static func createTable(_ connection: PostgresConnection, clients: Int, logger: Logger) async throws {
        try await connection.query("DROP TABLE IF EXISTS troupe_pgbench", logger: logger)
        try await connection.query(
            """
            CREATE TABLE troupe_pgbench (id int PRIMARY KEY, state bytea, revision bigint NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())
            """, logger: logger)
        try await connection.query(
            "INSERT INTO troupe_pgbench (id, state, revision) SELECT g, ''::bytea, 0 FROM generate_series(1, \(clients)) g",
            logger: logger)
    }

    private static func runPgbench(_ program: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw TroupeError.internalError("pgbench failed (\(process.terminationStatus)):\n\(text)")
        }
        return text
    }
}

/// p50 and p99 of a set of samples (µs).
struct Quantiles {
    let p50: Double
    let p99: Double

    init(_ samples: [Double]) {
        let sorted = samples.sorted()
        func at(_ q: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return (sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] * 10).rounded() / 10
        }
        p50 = at(0.5)
        p99 = at(0.99)
    }
}

extension Duration {
    var microseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1_000_000 + Double(attoseconds) / 1_000_000_000_000
    }
}
