import HeapModule
import NIOCore
import Synchronization
import TroupeStore

/// Every activation timer of a sidecar in one min-heap, driven by one scheduled task on one event
/// loop: a hundred thousand timers cost one pending NIO task, not a task or a sleeping `Task` each.
///
/// Entries are never removed early. Cancelling or replacing a timer bumps its generation in the
/// directory, and an entry whose generation is stale is dropped when it comes due.
final class TimerWheel: Sendable {
    struct Entry: Comparable, Sendable {
        var at: NIODeadline
        var key: ActorKey
        var activationID: UInt64
        var name: String
        var generation: UInt64

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            (lhs.at, lhs.generation) < (rhs.at, rhs.generation)
        }
        static func == (lhs: Entry, rhs: Entry) -> Bool { lhs.at == rhs.at && lhs.generation == rhs.generation }
    }

    private struct State {
        var heap = Heap<Entry>()
        /// When the driver task runs next, if one is scheduled.
        var armedAt: NIODeadline?
        var armed: Scheduled<Void>?
        var stopped = false
        /// Receives the entries that came due, outside the lock, in due order.
        var fire: (@Sendable ([Entry]) -> Void)?
    }

    private let loop: any EventLoop
    private let state = Mutex(State())

    init(loop: any EventLoop) {
        self.loop = loop
    }

    /// Sets who receives the entries that come due (outside the lock, in due order).
    func onFire(_ fire: @escaping @Sendable ([Entry]) -> Void) {
        state.withLock { $0.fire = fire }
    }

    /// Adds `entries`, rearming the driver if one of them is due before it would run.
    func schedule(_ entries: [Entry]) {
        guard !entries.isEmpty else { return }
        let rearm = state.withLock { state -> NIODeadline? in
            guard !state.stopped else { return nil }
            for entry in entries { state.heap.insert(entry) }
            guard let first = state.heap.min?.at else { return nil }
            if let armedAt = state.armedAt, armedAt <= first { return nil }
            state.armed?.cancel()
            state.armedAt = first
            return first
        }
        if let rearm { arm(at: rearm) }
    }

    /// Entries waiting, stale ones included.
    var count: Int { state.withLock { $0.heap.count } }

    /// Drops every entry; nothing fires afterwards.
    func stop() {
        state.withLock { state in
            state.stopped = true
            state.armed?.cancel()
            state.armed = nil
            state.heap = Heap()
        }
    }

    private func arm(at deadline: NIODeadline) {
        let task = loop.scheduleTask(deadline: deadline) { [self] in run(armedFor: deadline) }
        let cancel = state.withLock { state -> Bool in
            // A later schedule() may have rearmed for an earlier time while this was being created.
            guard state.armedAt == deadline, !state.stopped else { return true }
            state.armed = task
            return false
        }
        if cancel { task.cancel() }
    }

    private func run(armedFor deadline: NIODeadline) {
        let now = NIODeadline.now()
        let (due, next, fire) = state.withLock { state -> ([Entry], NIODeadline?, (@Sendable ([Entry]) -> Void)?) in
            guard state.armedAt == deadline else { return ([], nil, nil) }
            var due: [Entry] = []
            while let top = state.heap.min, top.at <= now {
                due.append(state.heap.removeMin())
            }
            state.armed = nil
            state.armedAt = state.heap.min?.at
            return (due, state.armedAt, state.fire)
        }
        if let next { arm(at: next) }
        if !due.isEmpty { fire?(due) }
    }
}
