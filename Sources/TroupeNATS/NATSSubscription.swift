import CNats
import Synchronization

/// An interest in a subject. Messages stop when it is unsubscribed, drained, or released.
public final class NATSSubscription: Sendable {
    private let subscription: SyncSubscription
    /// Keeps the connection (and its libnats handle) alive as long as the subscription.
    private let connection: NATSConnection
    private let stopped = Atomic<Bool>(false)
    public let subject: String
    public let queue: String?

    init(_ subscription: SyncSubscription, connection: NATSConnection, subject: String, queue: String?) {
        self.subscription = subscription
        self.connection = connection
        self.subject = subject
        self.queue = queue
    }

    private var handle: OpaquePointer { subscription.handle }

    deinit {
        unsubscribe()
    }

    /// Removes the interest at once; a message already being delivered may still reach the handler.
    public func unsubscribe() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = connection.socketLoop.publishing { natsSubscription_Unsubscribe(handle) }
        connection.socketLoop.unregister(subscription)
    }

    /// Removes the interest but lets the messages the server already sent be handled. Returns
    /// once they have been (or after `timeout`).
    public func drain(timeout: Duration = .seconds(10)) async {
        guard !stopped.load(ordering: .acquiring) else { return }
        let status = connection.socketLoop.publishing {
            natsSubscription_DrainTimeout(handle, max(1, timeout.natsMilliseconds))
        }
        guard status == NATS_OK else {
            unsubscribe()
            return
        }
        connection.socketLoop.beginDraining(subscription)
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
