import NIOCore
import NIOPosix

/// The threads that wait in libnats' blocking calls (connect, flush).
///
/// Those calls wait up to their timeouts when the server does not answer, so they must not run
/// on `NIOThreadPool.singleton`: sqlite-nio runs the embedded store there, and a few NATS calls
/// waiting for a server that is down or restarting would hold every one of its threads (two on
/// a 2-core machine), stalling the sidecar's own state reads and writes for as long.
enum BlockingCalls {
    /// Never shut down, like the singleton it stands in for. Eight threads, or one per core if
    /// there are more: a sidecar makes only a few such calls at once (one connect, a flush per
    /// new subscription), and those that wait hold up only each other.
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(8, System.coreCount))
        pool.start()
        return pool
    }()
}
