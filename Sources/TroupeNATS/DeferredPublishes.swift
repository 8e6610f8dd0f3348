import NIOCore
import NIOPosix
import Synchronization
import TroupeWire

/// Publishes made while the link is down, handed to libnats one after another, in the order
/// they were made, on a thread of the blocking pool.
///
/// While libnats reconnects, a publish waits for the connection's lock, which each connect
/// attempt holds up to the connect timeout; the publisher (often an event loop) must not wait
/// with it. libnats keeps what these publishes send in its reconnect buffer and sends it after
/// the reconnect.
final class DeferredPublishes: Sendable {
    typealias Publish = @Sendable () -> Void

    private struct State {
        var queue = CircularBuffer<(bytes: Int, publish: Publish)>()
        var queuedBytes = 0
        /// True from the first queued publish until the queue is empty again.
        var running = false
    }

    private let state = Mutex(State())
    /// At most this many payload bytes wait here, as libnats keeps at most as many in its buffer.
    private let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// True while publishes wait here: a new one must queue behind them to keep their order.
    var isBusy: Bool { state.withLock { $0.running } }

    /// Queues `publish`, which sends `bytes` payload bytes.
    ///
    /// - Throws: `resourceExhausted` when the publishes waiting already hold the limit.
    func enqueue(bytes: Int, _ publish: @escaping Publish) throws(TroupeError) {
        let start = try state.withLock { state throws(TroupeError) -> Bool in
            guard state.queuedBytes + bytes <= limit || state.queue.isEmpty else {
                throw .resourceExhausted(
                    "NATS is reconnecting and \(state.queuedBytes) bytes already wait to be sent (the limit is \(limit))",
                    details: ["reconnect_buffer_bytes": "\(limit)"])
            }
            state.queue.append((bytes, publish))
            state.queuedBytes += bytes
            guard !state.running else { return false }
            state.running = true
            return true
        }
        if start { BlockingCalls.pool.submit { _ in self.run() } }
    }

    private func run() {
        while let next = state.withLock({ state -> Publish? in
            guard let (bytes, publish) = state.queue.popFirst() else {
                state.running = false
                return nil
            }
            state.queuedBytes -= bytes
            return publish
        }) {
            next()
        }
    }
}
