import CNats
import Synchronization
import TroupeWire

/// An interest in a subject. Messages stop when it is unsubscribed, drained, or released.
public final class NATSSubscription: Sendable {
    // libnats subscriptions are thread-safe; the handle is destroyed once, in deinit.
    nonisolated(unsafe) private let handle: OpaquePointer
    private let targetID: UInt
    /// Keeps the connection (and its libnats handle) alive as long as the subscription.
    private let connection: NATSConnection
    private let stopped = Atomic<Bool>(false)
    public let subject: String
    public let queue: String?

    init(handle: OpaquePointer, targetID: UInt, connection: NATSConnection, subject: String, queue: String?) {
        self.handle = handle
        self.targetID = targetID
        self.connection = connection
        self.subject = subject
        self.queue = queue
    }

    deinit {
        let unsubscribe = !stopped.exchange(true, ordering: .acquiringAndReleasing)
        if unsubscribe { subscriptionTargets.remove(targetID) }
        // Thread-safe like every libnats handle; nothing else uses it after this deinit.
        nonisolated(unsafe) let handle = handle
        connection.core.callTakingTheLock {
            if unsubscribe { _ = natsSubscription_Unsubscribe(handle) }
            natsSubscription_Destroy(handle)
        }
    }

    /// Removes the interest at once; a message already being delivered may still reach the handler.
    ///
    /// It does not wait for the network: while the link is down, libnats is told from a thread
    /// of its own (the server forgets the interest with the old link anyway).
    public func unsubscribe() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        subscriptionTargets.remove(targetID)
        connection.core.callTakingTheLock { [self] in _ = natsSubscription_Unsubscribe(handle) }
    }

    /// Removes the interest but lets the messages the server already sent be handled. Returns
    /// once they have been (or after `timeout`).
    public func drain(timeout: Duration = .seconds(10)) async {
        guard !stopped.load(ordering: .acquiring) else { return }
        // Down: nothing more can arrive, and libnats would wait for the link's lock.
        guard connection.core.isUp,
            natsSubscription_DrainTimeout(handle, max(1, timeout.natsMilliseconds)) == NATS_OK
        else {
            unsubscribe()
            return
        }
        let deadline = ContinuousClock.now + timeout
        // libnats signals drain completion only to a blocked waiter; poll instead of parking a thread.
        while natsSubscription_IsValid(handle), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        unsubscribe()
    }
}

/// The messages of a subscription as an `AsyncSequence`, from
/// ``NATSConnection/messages(on:queue:bufferLimit:)``. Iterate it once.
public struct NATSMessages: AsyncSequence, Sendable {
    public typealias Element = NATSMessage
    let stream: AsyncStream<NATSMessage>
    /// The subscription behind the stream.
    public let subscription: NATSSubscription
    let finish: @Sendable () -> Void

    public func makeAsyncIterator() -> AsyncStream<NATSMessage>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Unsubscribes and ends the sequence.
    public func cancel() {
        subscription.unsubscribe()
        finish()
    }
}
