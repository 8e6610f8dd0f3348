import Logging
import Synchronization
import TroupeStore
import TroupeWire

/// The waiting room of group commit: writers park here until the flush loop takes them.
///
/// A batch holds at most one write per actor, so two writes to one actor land in consecutive
/// flushes in the order they arrived (the second must see the first's revision). Flushes run one
/// at a time, also when one outlives its timeout, so a late write can never land after a newer one.
final class WriteQueue: Sendable {
    struct Write: Sendable {
        let key: ActorKey
        let state: StateBlob
        let fencingToken: UInt64
        let queuedAt: ContinuousClock.Instant
        let reply: Reply
    }

    /// A writer's continuation, resumed by whoever answers first: the flush that carried the
    /// write, the timeout watch, or ``stop()``. Later answers are dropped.
    final class Reply: Sendable {
        private let continuation: Mutex<CheckedContinuation<UInt64, any Error>?>

        init(_ continuation: CheckedContinuation<UInt64, any Error>) {
            self.continuation = Mutex(continuation)
        }

        func resume(returning revision: UInt64) { take()?.resume(returning: revision) }
        func resume(throwing error: any Error) { take()?.resume(throwing: error) }

        private func take() -> CheckedContinuation<UInt64, any Error>? {
            continuation.withLock { continuation in
                defer { continuation = nil }
                return continuation
            }
        }
    }

    private struct State {
        var pending: [Write] = []
        var stopped = false
    }

    private let state = Mutex(State())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let maxBatch: Int
    private let timeout: Duration
    private let logger: Logger
    private let flushes = Atomic<Int>(0)

    /// - Parameters:
    ///   - maxBatch: the most writes one flush carries.
    ///   - timeout: how long a writer waits for its answer before it gets `unavailable`.
    init(maxBatch: Int, timeout: Duration, logger: Logger) {
        self.maxBatch = max(1, maxBatch)
        self.timeout = timeout
        self.logger = logger
        // One buffered wakeup is enough: the loop drains everything pending each time it wakes.
        (wakeups, wake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// How many batches the loop has sent.
    var flushCount: Int { flushes.load(ordering: .relaxed) }

    /// Queues a write and waits until a flush has answered it.
    ///
    /// Not cancellable: once queued, the write may already be on its way to the server, so the
    /// caller learns its outcome rather than guessing.
    func submit(_ key: ActorKey, state blob: StateBlob, fencingToken: UInt64) async throws -> UInt64 {
        try await withCheckedThrowingContinuation { continuation in
            let reply = Reply(continuation)
            let write = Write(
                key: key, state: blob, fencingToken: fencingToken, queuedAt: .now, reply: reply)
            let queued = state.withLock { state in
                guard !state.stopped else { return false }
                state.pending.append(write)
                return true
            }
            if queued {
                wake.yield()
            } else {
                reply.resume(throwing: TroupeError.unavailable("state store: closed"))
            }
        }
    }

    /// Flushes batches until the calling task is cancelled, then fails whatever is still queued.
    ///
    /// Each flush is watched. If the server has not answered within the timeout, its writers get
    /// `unavailable` and the flush is cancelled: a flush still waiting for a connection then sends
    /// nothing, while a statement already sent may still commit, which is why the message calls
    /// the outcome unknown. Writes queued behind a flush that is stuck fail as they reach the
    /// timeout, instead of waiting for a server that may never answer.
    func run(flush: @escaping @Sendable (_ batch: [Write]) async -> Void) async {
        for await _ in wakeups {
            while case let batch = nextBatch(), !batch.isEmpty {
                // Counted before any writer of the batch is answered, so a writer sees its flush.
                flushes.add(1, ordering: .relaxed)
                await withTaskGroup(of: Void.self) { outer in
                    outer.addTask { await self.expireWhileStuck() }
                    outer.addTask {
                        await withTaskGroup(of: Void.self) { inner in
                            inner.addTask { await flush(batch) }
                            inner.addTask { await self.answerIfLate(batch) }
                            // Whichever ends first, the flush or its timeout, the other is cancelled.
                            await inner.next()
                            inner.cancelAll()
                        }
                    }
                    // The expiry only ends when cancelled, so this is the flush ending.
                    await outer.next()
                    outer.cancelAll()
                }
            }
        }
        stop()
    }

    /// Answers the writers of `batch` with `unavailable` once the timeout has passed.
    private func answerIfLate(_ batch: [Write]) async {
        do { try await Task.sleep(for: timeout) } catch { return }
        let unknown = TroupeError.unavailable(
            "state store: no answer within \(timeout); the write may or may not have been applied")
        logger.warning("group commit timed out", metadata: ["writes": "\(batch.count)", "timeout": "\(timeout)"])
        for write in batch { write.reply.resume(throwing: unknown) }
    }

    /// While a flush outlives the timeout, fails queued writes as they reach it.
    private func expireWhileStuck() async {
        do { try await Task.sleep(for: timeout) } catch { return }
        while !Task.isCancelled {
            expire(before: .now - timeout)
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return }
        }
    }

    /// Fails the queued writes that have waited since before `deadline`. Nothing was sent for
    /// them, so they are certainly not applied.
    private func expire(before deadline: ContinuousClock.Instant) {
        let expired = state.withLock { state -> [Write] in
            let expired = state.pending.filter { $0.queuedAt < deadline }
            if !expired.isEmpty { state.pending.removeAll { $0.queuedAt < deadline } }
            return expired
        }
        for write in expired {
            write.reply.resume(
                throwing: TroupeError.unavailable(
                    "state store: no answer within \(timeout); the write was not applied"))
        }
    }

    /// Refuses further writes and fails the queued ones.
    func stop() {
        let orphans = state.withLock { state in
            state.stopped = true
            defer { state.pending = [] }
            return state.pending
        }
        wake.finish()
        for write in orphans {
            write.reply.resume(throwing: TroupeError.unavailable("state store: closed before the write was flushed"))
        }
    }

    /// Takes the oldest writes, one per actor, up to the batch limit; the rest keep their order.
    private func nextBatch() -> [Write] {
        state.withLock { state in
            var batch: [Write] = []
            var keys = Set<ActorKey>()
            var rest: [Write] = []
            for write in state.pending {
                if batch.count < maxBatch, keys.insert(write.key).inserted {
                    batch.append(write)
                } else {
                    rest.append(write)
                }
            }
            state.pending = rest
            return batch
        }
    }
}
