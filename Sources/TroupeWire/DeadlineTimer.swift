public import NIOCore

/// One scheduled task that stands for the deadlines of many requests of one owner on one event
/// loop: it is armed at the earliest deadline it was told about, and when it fires the owner
/// expires what is due and arms it again for its earliest deadline left.
///
/// A request then costs a comparison instead of a scheduled task of its own. NIO keeps every
/// scheduled task of a loop in one heap, and cancelling one (what happens to nearly every
/// request's timer, since nearly every request is answered in time) searches that heap linearly:
/// with a task per request, each answer cost more the more requests were in flight. Timeouts on
/// one connection are mostly of one length, so deadlines arrive in increasing order and the task
/// is scheduled about once per timeout period, not once per request.
///
/// Use it on one event loop only.
public struct DeadlineTimer: Sendable {
    private var armedAt: NIODeadline?
    private var scheduled: Scheduled<Void>?

    public init() {}

    /// Makes sure the timer fires on `loop` no later than `deadline`. Call on `loop`.
    ///
    /// `fire` runs when it does. It must call ``fired()`` first, then expire what is due, then
    /// call this again with the earliest deadline left, if any.
    public mutating func arm(for deadline: NIODeadline, on loop: any EventLoop, _ fire: @escaping () -> Void) {
        if let armedAt, armedAt <= deadline { return }
        scheduled?.cancel()
        armedAt = deadline
        scheduled = loop.assumeIsolated().scheduleTask(deadline: deadline, fire)
    }

    /// Records that the armed task ran, so that the next ``arm(for:on:_:)`` schedules a new one.
    public mutating func fired() {
        armedAt = nil
        scheduled = nil
    }

    /// Cancels the armed task: nothing fires until the timer is armed again.
    public mutating func stop() {
        scheduled?.cancel()
        fired()
    }
}
