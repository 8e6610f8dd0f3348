import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// TCP ports on 127.0.0.1 for the servers tests start, taken from below the kernel's ephemeral
/// port range.
///
/// A port from `bind(…, port: 0)` comes out of the ephemeral range, which is also where the
/// kernel takes the source port of every outgoing connection. A test server that is killed and
/// started again on its port (nats-server, Postgres, a sidecar) could then find the port taken
/// by some connection of another test of the parallel run, and fail with "address already in
/// use". Below the range, only an explicit `bind` takes a port.
///
/// ```swift
/// let port = try LoopbackPort.free()
/// ```
public enum LoopbackPort {
    /// Ports handed out by this process, so that two tests never get the same one.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A port that nothing on 127.0.0.1 holds now and that this process has not handed out before.
    public static func free() throws -> Int {
        let candidates = candidateRange()
        for _ in 0..<500 {
            let port = Int.random(in: candidates)
            let fresh = handedOut.withLock { $0.insert(port).inserted }
            if fresh, isFree(port) { return port }
        }
        throw LoopbackPortError(message: "no free port on 127.0.0.1 in \(candidates) after 500 tries")
    }

    /// Ports outside the ephemeral range: below it, or above it when it starts too low, or a
    /// fixed block if the range cannot be read.
    static func candidateRange() -> ClosedRange<Int> {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let bounds = text.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        guard bounds.count == 2 else { return 61_000...64_999 }
        // 32768 is Linux's default lower bound.
        if bounds[0] > 12_000 { return 10_000...(bounds[0] - 1) }
        if bounds[1] < 63_000 { return (bounds[1] + 1)...65_000 }
        return 61_000...64_999
    }

    /// Whether a listening socket could be bound to `port` now. Without SO_REUSEADDR, so a port
    /// whose last connection is still in TIME_WAIT counts as taken.
    static func isFree(_ port: Int) -> Bool {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0
    }
}

public struct LoopbackPortError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
