import NIOCore
package import NIOPosix

/// The threads that wait in C calls that block: libnats' connect, flush and close, and
/// `getaddrinfo` for the cluster's DNS discovery.
///
/// Those calls wait up to their timeouts when the other side does not answer (a NATS server
/// that is down or restarting, a DNS resolver that is slow), so they must neither run on the
/// cooperative pool or an event loop, nor on `NIOThreadPool.singleton`: sqlite-nio runs the
/// embedded store there, and a few such calls would hold every one of its threads (two on a
/// 2-core machine), stalling the sidecar's own state reads and writes for as long.
package enum BlockingCalls {
    /// Never shut down, like the singleton it stands in for. Eight threads, or one per core if
    /// there are more: a sidecar makes only a few such calls at once (one NATS connect, a flush
    /// per new subscription, one DNS lookup), and those that wait hold up only each other.
    package static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(8, System.coreCount))
        pool.start()
        return pool
    }()
}
