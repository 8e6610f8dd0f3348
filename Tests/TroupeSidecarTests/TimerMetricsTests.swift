import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// The timer and reminder metrics of a sidecar process, read from its /metrics.
@Suite("Timer metrics", .serialized)
struct TimerMetricsTests {
    @Test func timerAndReminderFiresFailuresAndLagAreCounted() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let processes = try await ReadySidecar.start(
            system: "metrics", in: directory, ["--data-path", directory.path("state.sqlite")])
        defer { processes.kill9() }
        let (socket, sidecar, host, port) = (processes.socket, processes.sidecar, processes.host, processes.adminPort)
        let client = try await TroupeClient.connect(system: "metrics", to: .unix(path: socket))
        let _: NoPayload = try await client.invoke(
            "alarm-m", action: "set-timer", AlarmRequest(name: "t", afterMs: 10), spawnFrom: "alarm")
        let _: NoPayload = try await client.invoke(
            "alarm-m", action: "set-reminder", AlarmRequest(name: "r", afterMs: 10), spawnFrom: "alarm")
        // A delayed call whose action fails: counted, and retried later.
        try await client.schedule("echo", action: "fail", TroupeError.Code.internal.rawValue, after: .milliseconds(10))
        func lines() async throws -> [String] {
            try await httpGet(port: port, "/metrics").body.split(separator: "\n").map(String.init)
        }
        func value(_ lines: [String], _ prefix: String) -> Int {
            lines.first { $0.hasPrefix(prefix + " ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        try await waitFor("the firings to be counted") {
            let lines = try await lines()
            return value(lines, "troupe_timer_fires_total") >= 1 && value(lines, "troupe_reminder_fires_total") >= 2
                && value(lines, "troupe_reminder_failures_total") >= 1
        }
        let body = try await lines()
        let lag = body.filter { $0.hasPrefix("troupe_timer_fire_lag_seconds_count{") }
        #expect(lag.contains { $0.contains("kind=\"timer\"") && $0.hasSuffix(" 1") }, "\(body)")
        #expect(lag.contains { $0.contains("kind=\"reminder\"") && $0.hasSuffix(" 1") }, "\(body)")
        #expect(try await client.invoke("alarm-m", action: "rings", as: [Ring].self).count == 2)
        await client.close()
        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0, "sidecar log:\n\(sidecar.log)")
        host.signal(SIGTERM)
        try await host.waitForExit()
    }
}
