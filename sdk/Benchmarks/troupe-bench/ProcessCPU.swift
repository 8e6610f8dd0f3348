import Foundation

/// CPU time of a process from /proc/PID/stat (utime + stime).
enum ProcessCPU {
    static func seconds(pid: Int32) -> Double {
        let (user, system) = split(pid: pid)
        return user + system
    }

    /// User and system CPU seconds of process `pid`; zero if it is gone.
    static func split(pid: Int32) -> (user: Double, system: Double) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return (0, 0) }
        // After the command name: state is field 3, utime field 14, stime field 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return (0, 0) }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (user / ticks, system / ticks)
    }
}

extension SidecarProcess {
    func cpuSeconds() -> Double { ProcessCPU.seconds(pid: process.processIdentifier) }
}

/// CPU time each process of a run spent per call over a latency phase. With one call in flight the
/// processes work one after another, so on a noisy machine this shows where a call's time goes
/// more steadily than the latency does.
struct CallCPU {
    private let processes: [(name: String, pid: Int32)]
    private let before: [(user: Double, system: Double)]

    /// Starts measuring `processes` (name and pid); the benchmark process itself is added as "bench".
    init(_ processes: [(name: String, pid: Int32)]) {
        self.processes = processes + [("bench", getpid())]
        before = self.processes.map { ProcessCPU.split(pid: $0.pid) }
    }

    /// "CPU per call (user + kernel): n0 70.1 (25.0 + 45.1) µs  …" over `calls` calls since `init`.
    func summary(calls: Int) -> String {
        let parts = zip(processes, before).map { process, start in
            let now = ProcessCPU.split(pid: process.pid)
            let scale = 1e6 / Double(max(calls, 1))
            let (user, system) = ((now.user - start.user) * scale, (now.system - start.system) * scale)
            return String(format: "%@ %.1f (%.1f + %.1f) µs", process.name, user + system, user, system)
        }
        return "CPU per call (user + kernel): " + parts.joined(separator: "  ")
    }
}
