import Synchronization
import TroupeWire

/// Lets operations in while a store is open and lets `close` wait for the ones in flight.
///
/// Both stores need it: sqlite3_close refuses to close while statements are still running (and
/// sqlite-nio then drops the handle anyway), and the Postgres pool must not stop while queued
/// group-commit writes still wait for their answer.
package final class CloseGate: Sendable {
    private struct State {
        var closing = false
        var inFlight = 0
        var drained: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    package init() {}

    /// Whether ``close()`` has begun.
    package var isClosing: Bool { state.withLock { $0.closing } }

    /// Admits one operation; pair with ``leave()``.
    ///
    /// - Throws: `unavailable` once closing has begun.
    package func enter(_ what: @autoclosure () -> String) throws {
        try state.withLock { state in
            guard !state.closing else {
                throw TroupeError.unavailable("state store: \(what()) is closed")
            }
            state.inFlight += 1
        }
    }

    package func leave() {
        let drained = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.inFlight -= 1
            guard state.inFlight == 0 else { return nil }
            defer { state.drained = nil }
            return state.drained
        }
        drained?.resume()
    }

    /// Stops admitting operations and waits until the admitted ones have left.
    ///
    /// - Returns: true for the first caller, who then owns the actual closing.
    package func close() async -> Bool {
        let first = state.withLock { state in
            defer { state.closing = true }
            return !state.closing
        }
        guard first else { return false }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state in
                guard state.inFlight > 0 else { return true }
                state.drained = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        return true
    }
}
