import Metrics
import NIOCore
import TroupeWire

/// Counts and times the calls one activation answers, by action and outcome:
/// `troupe_invocations_total{actor_type, action, status}` and
/// `troupe_invocation_duration_seconds{actor_type, action}` (from the call leaving the mailbox to
/// its answer: the host's action and, for write-through, the store write).
///
/// Kept by the activation, which is an actor, so the handles it caches need no lock; the
/// factory lookup behind `Counter(label:dimensions:)` then happens once per action and outcome
/// instead of once per call.
struct InvocationMeters {
    let actorType: String
    /// The registered actions: any other name is recorded as `<unknown>`, so a caller cannot
    /// create label values without limit.
    let actions: Set<String>
    private var counters: [String: Counter] = [:]
    private var timers: [String: Timer] = [:]

    init(actorType: String, actions: Set<String>) {
        self.actorType = actorType
        self.actions = actions
    }

    mutating func record(action: String, failure: TroupeError?, since started: NIODeadline) {
        let action = actions.isEmpty || actions.contains(action) ? action : "<unknown>"
        let status = failure.map { "\($0.code)" } ?? "ok"
        let counterKey = action + "\u{0}" + status
        if let counter = counters[counterKey] {
            counter.increment()
        } else {
            let counter = Counter(
                label: "troupe_invocations_total",
                dimensions: [("actor_type", actorType), ("action", action), ("status", status)])
            counters[counterKey] = counter
            counter.increment()
        }
        let nanoseconds = (NIODeadline.now() - started).nanoseconds
        if let timer = timers[action] {
            timer.recordNanoseconds(nanoseconds)
        } else {
            let timer = Timer(
                label: "troupe_invocation_duration_seconds", dimensions: [("actor_type", actorType), ("action", action)],
                preferredDisplayUnit: .seconds)
            timers[action] = timer
            timer.recordNanoseconds(nanoseconds)
        }
    }
}
