import NIOCore
import Synchronization

/// Lets through one log line per interval for an event that can happen for every actor at once
/// (a host that goes away fails the firings of all its actors' timers): the first line of each
/// interval goes out and says how many were held back since the last one; the metric counts
/// every event either way.
///
/// ```swift
/// if let suppressed = limit.admit() {
///     logger.warning("timer firing failed", metadata: ["troupe.suppressed": "\(suppressed)"])
/// }
/// ```
final class LogRateLimit: Sendable {
    private struct State {
        var next: NIODeadline = .uptimeNanoseconds(0)
        var suppressed = 0
    }

    private let interval: TimeAmount
    private let state = Mutex(State())

    init(interval: TimeAmount = .seconds(1)) {
        self.interval = interval
    }

    /// nil when this event is held back; otherwise how many were held back before it.
    func admit(now: NIODeadline = .now()) -> Int? {
        state.withLock { state in
            guard now >= state.next else {
                state.suppressed += 1
                return nil
            }
            defer { state.suppressed = 0 }
            state.next = now + interval
            return state.suppressed
        }
    }
}
