import Metrics
import NIOCore
import Synchronization
import TroupeWire

/// Counts and times the calls of one actor type, by action and outcome:
/// `troupe_invocations_total{actor_type, action, status}` and
/// `troupe_invocation_duration_seconds{actor_type, action}` (from the call leaving the mailbox to
/// its answer: the host's action and, for write-through, the store write).
///
/// One per registered type, shared by all its activations: a cache per activation held two
/// dictionaries and two metric handles for each of 100,000 idle actors, about 1 KiB apiece. The
/// cache turns the factory lookup behind `Counter(label:dimensions:)` into one per action and
/// outcome instead of one per call; its lock is taken once per call and is almost never
/// contended, as an actor type's activations mostly share one event loop.
final class InvocationMeters: Sendable {
    private struct Handles {
        var counters: [OutcomeKey: Counter] = [:]
        var timers: [String: Timer] = [:]
    }

    private struct OutcomeKey: Hashable {
        var action: String
        var status: TroupeError.Code?
    }

    let actorType: String
    /// The registered actions: any other name is recorded as `<unknown>`, so a caller cannot
    /// create label values without limit.
    let actions: Set<String>
    private let handles = Mutex(Handles())

    init(actorType: String, actions: Set<String>) {
        self.actorType = actorType
        self.actions = actions
    }

    func record(action: String, failure: TroupeError?, since started: NIODeadline) {
        let action = actions.isEmpty || actions.contains(action) ? action : "<unknown>"
        let nanoseconds = (NIODeadline.now() - started).nanoseconds
        let (counter, timer) = handles.withLock { handles -> (Counter, Timer) in
            let key = OutcomeKey(action: action, status: failure?.code)
            let counter: Counter
            if let cached = handles.counters[key] {
                counter = cached
            } else {
                counter = Counter(
                    label: "troupe_invocations_total",
                    dimensions: [
                        ("actor_type", actorType), ("action", action), ("status", failure.map { "\($0.code)" } ?? "ok"),
                    ])
                handles.counters[key] = counter
            }
            let timer: Timer
            if let cached = handles.timers[action] {
                timer = cached
            } else {
                timer = Timer(
                    label: "troupe_invocation_duration_seconds",
                    dimensions: [("actor_type", actorType), ("action", action)],
                    preferredDisplayUnit: .seconds)
                handles.timers[action] = timer
            }
            return (counter, timer)
        }
        counter.increment()
        timer.recordNanoseconds(nanoseconds)
    }
}
