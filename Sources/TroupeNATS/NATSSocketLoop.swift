import CNats
import Foundation
import Logging
import Synchronization
import TroupeWire

#if canImport(Glibc)
    import Glibc
#endif

/// Drives one libnats connection's socket on a thread of its own, through libnats' external
/// event-loop API (`natsOptions_SetEventLoop`), and hands the messages of the connection's
/// synchronous subscriptions to their handlers on that same thread.
///
/// Without it, a message crosses two libnats threads before Swift sees it: the connection's
/// reader, then the subscription's delivery thread. Here the thread that sees the socket
/// readable parses the bytes (`natsConnection_ProcessReadEvent`) and then takes the messages
/// out of each subscription (`natsSubscription_NextMsg` without waiting): one wake-up fewer per
/// message. Publishing stays on the caller's thread: libnats buffers the bytes and asks for a
/// write, and the publisher writes them itself before it returns (`publishing(_:)`); only
/// writes libnats makes on its own (pings, a flush, resubscribing) wake this thread.
///
/// libnats still owns connecting, reconnecting (on its reconnect thread, which attaches the
/// new socket here) and its timers.
final class NATSSocketLoop: Sendable {
    private struct Socket {
        var fd: Int32 = -1
        /// The events the socket is registered for in `epoll`; 0: not registered.
        var registered: UInt32 = 0
        var wantsRead = false
        var wantsWriteEvents = false
    }

    /// libnats' connection handle, as a bit pattern (0 until attached): used only under `io`.
    private let connection = Atomic<UInt>(0)
    private let socket = Mutex(Socket())
    /// Serializes every call into libnats' event API, and tells whether it may still be made.
    private let io = Mutex<Bool>(false)
    /// The thread that holds `io` now (0: none), so that a callback libnats makes from inside
    /// an I/O call on the same thread does not wait for the lock that thread holds.
    private let ioOwner = Atomic<UInt>(0)
    /// libnats has bytes buffered and asked for them to be written (its write callback).
    private let writeWanted = Atomic<Bool>(false)
    /// Threads between buffering a publish and writing it themselves: a write request made
    /// meanwhile is theirs to carry out (``publishing(_:)``).
    private let writers = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)
    /// A drain is under way: the loop also wakes every 10 ms to finish the subscriptions' drains.
    private let draining = Atomic<Bool>(false)
    private let subscriptions = Mutex<[ObjectIdentifier: SyncSubscription]>([:])
    private let exited = Mutex<[CheckedContinuation<Void, Never>]?>([])
    private let epollFD: Int32
    private let wakeFD: Int32
    private let logger: Logger

    init(logger: Logger) throws(TroupeError) {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        self.logger = logger
        guard epollFD >= 0, wakeFD >= 0 else {
            if epollFD >= 0 { close(epollFD) }
            if wakeFD >= 0 { close(wakeFD) }
            throw .internalError("cannot create the NATS socket loop: errno \(errno)")
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event)
        Thread { [self] in run() }.start()
    }

    // MARK: The loop thread

    private func run() {
        // Set from the thread itself, so that `top -H` and perf show it.
        Thread.current.name = "troupe-nats"
        var events = [epoll_event](repeating: epoll_event(), count: 8)
        while !stopped.load(ordering: .acquiring) {
            let count = epoll_wait(
                epollFD, &events, Int32(events.count), draining.load(ordering: .relaxed) ? 10 : -1)
            if count < 0 {
                if errno == EINTR { continue }
                logger.error("the NATS socket loop failed", metadata: ["troupe.errno": "\(errno)"])
                break
            }
            var readable = false
            var writable = false
            for event in events.prefix(Int(count)) {
                if event.data.fd == wakeFD {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                } else {
                    if event.events & (EPOLLIN.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { readable = true }
                    if event.events & EPOLLOUT.rawValue != 0 { writable = true }
                }
            }
            if readable {
                // Replies libnats makes while parsing (a PONG) are written below, by this thread.
                writers.add(1, ordering: .sequentiallyConsistent)
                withIO { natsConnection_ProcessReadEvent($0) }
                writers.subtract(1, ordering: .sequentiallyConsistent)
            }
            // Also after a wake-up alone: a subscription registered after its first messages arrived.
            deliver()
            if readable || writable { flush() }
            if draining.load(ordering: .relaxed) {
                for subscription in subscriptions.withLock({ Array($0.values) }) { subscription.drainStep() }
            }
        }
        close(epollFD)
        close(wakeFD)
        let waiters = exited.withLock { waiters in
            defer { waiters = nil }
            return waiters ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Calls `body` with the connection, one I/O call at a time, unless it is detached.
    private func withIO(_ body: (OpaquePointer) -> Void) {
        io.withLock { attached in
            guard attached, let handle = OpaquePointer(bitPattern: connection.load(ordering: .acquiring)) else {
                return
            }
            ioOwner.store(currentThread, ordering: .releasing)
            body(handle)
            ioOwner.store(0, ordering: .releasing)
        }
    }

    /// Hands every message waiting in a synchronous subscription to its handler, in order.
    private func deliver() {
        let subscriptions = subscriptions.withLock { Array($0.values) }
        for subscription in subscriptions { subscription.deliverWaiting() }
    }

    // MARK: Writing

    /// Runs `body`, which buffers bytes in libnats (a publish), and writes them out on this
    /// thread before returning, instead of waking the loop's thread for it.
    func publishing<R>(_ body: () -> R) -> R {
        writers.add(1, ordering: .sequentiallyConsistent)
        let result = body()
        writers.subtract(1, ordering: .sequentiallyConsistent)
        flush()
        return result
    }

    /// Writes what libnats buffered, if it asked for a write; what the socket does not take
    /// now is left to the loop's thread, woken when the socket is writable.
    private func flush() {
        guard writeWanted.load(ordering: .sequentiallyConsistent) else { return }
        withIO { handle in
            // Checked again under `io`: a write of nothing would read as a closed connection.
            guard writeWanted.load(ordering: .sequentiallyConsistent) else { return }
            natsConnection_ProcessWriteEvent(handle)
        }
        if writeWanted.load(ordering: .sequentiallyConsistent) { setWriteEvents(true) }
    }

    // MARK: libnats' event-loop callbacks (on whichever thread libnats calls them)

    fileprivate func attach(_ handle: OpaquePointer, socket fd: Int32) {
        connection.store(UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle))), ordering: .releasing)
        io.withLock { $0 = true }
        socket.withLock { socket in
            if socket.fd != fd, socket.registered != 0 {
                // The old socket of a reconnect; closing it may already have removed it.
                epoll_ctl(epollFD, EPOLL_CTL_DEL, socket.fd, nil)
                socket.registered = 0
            }
            socket.fd = fd
            socket.wantsRead = true
            socket.wantsWriteEvents = false
            update(&socket)
        }
    }

    fileprivate func setRead(_ add: Bool) {
        socket.withLock { socket in
            socket.wantsRead = add
            update(&socket)
        }
    }

    fileprivate func setWrite(_ add: Bool) {
        writeWanted.store(add, ordering: .sequentiallyConsistent)
        if !add {
            setWriteEvents(false)
        } else if writers.load(ordering: .sequentiallyConsistent) == 0 {
            // Nobody in `publishing(_:)` will write these bytes: a libnats thread of its own
            // (a ping, a resubscription) or a flush. The loop's thread writes them.
            setWriteEvents(true)
        }
    }

    private func setWriteEvents(_ on: Bool) {
        socket.withLock { socket in
            guard socket.wantsWriteEvents != on else { return }
            socket.wantsWriteEvents = on
            update(&socket)
        }
    }

    /// Registers the socket in `epoll` for the events wanted now.
    private func update(_ socket: inout Socket) {
        guard socket.fd >= 0, !stopped.load(ordering: .acquiring) else { return }
        let wanted = (socket.wantsRead ? EPOLLIN.rawValue : 0) | (socket.wantsWriteEvents ? EPOLLOUT.rawValue : 0)
        guard wanted != socket.registered else { return }
        var event = epoll_event()
        event.events = wanted
        event.data.fd = socket.fd
        let operation = socket.registered == 0 ? EPOLL_CTL_ADD : (wanted == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD)
        if epoll_ctl(epollFD, operation, socket.fd, &event) != 0, operation == EPOLL_CTL_MOD || operation == EPOLL_CTL_ADD {
            // ENOENT: the kernel dropped a closed socket; EEXIST: registered under another state.
            let retry = operation == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD
            if epoll_ctl(epollFD, retry, socket.fd, &event) != 0 {
                logger.warning("cannot watch the NATS socket", metadata: ["troupe.errno": "\(errno)"])
            }
        }
        socket.registered = wanted
    }

    /// The connection is closed for good: no call into libnats may follow.
    fileprivate func detach() {
        connection.store(0, ordering: .releasing)
        // Waits for an I/O call on another thread to return. libnats may also close from inside
        // an I/O call of this very thread, which holds `io` already; the cleared handle stops
        // the calls after it.
        if ioOwner.load(ordering: .acquiring) != currentThread { io.withLock { $0 = false } }
        stop()
    }

    // MARK: Subscriptions

    func register(_ subscription: SyncSubscription) {
        subscriptions.withLock { $0[ObjectIdentifier(subscription)] = subscription }
        // Messages may have arrived between subscribing and registering.
        wake()
    }

    func unregister(_ subscription: SyncSubscription) {
        _ = subscriptions.withLock { $0.removeValue(forKey: ObjectIdentifier(subscription)) }
    }

    /// libnats drains the subscriptions: `subscription`, or all of them. libnats ends the drain
    /// of a synchronous subscription only in a `NextMsg` call that may wait, which the loop
    /// makes from now on (see ``SyncSubscription/drainStep()``).
    func beginDraining(_ subscription: SyncSubscription? = nil) {
        let subscriptions = subscription.map { [$0] } ?? self.subscriptions.withLock { Array($0.values) }
        for subscription in subscriptions { subscription.markDraining() }
        draining.store(true, ordering: .relaxed)
        wake()
    }

    // MARK: Lifecycle

    /// Ends the loop's thread (once the connection no longer needs it).
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        subscriptions.withLock { $0.removeAll() }
        wake()
    }

    /// Returns once the loop's thread has ended.
    func waitUntilStopped() async {
        await withCheckedContinuation { continuation in
            let done = exited.withLock { waiters -> Bool in
                guard waiters != nil else { return true }
                waiters?.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }
}

private var currentThread: UInt { UInt(pthread_self()) }

/// A synchronous libnats subscription whose messages the socket loop hands to `handler`.
final class SyncSubscription: Sendable {
    // libnats subscriptions are thread-safe; the handle is destroyed once, in deinit.
    nonisolated(unsafe) let handle: OpaquePointer
    private let handler: @Sendable (NATSMessage) -> Void
    private let draining = Atomic<Bool>(false)

    init(handle: OpaquePointer, handler: @escaping @Sendable (NATSMessage) -> Void) {
        self.handle = handle
        self.handler = handler
    }

    deinit {
        natsSubscription_Destroy(handle)
    }

    func markDraining() { draining.store(true, ordering: .relaxed) }

    /// On the loop's thread, while draining: takes one message, waiting at most 1 ms, which is
    /// where libnats notices a drained subscription is empty and completes its drain.
    func drainStep() {
        guard draining.load(ordering: .relaxed), natsSubscription_IsValid(handle) else { return }
        var message: OpaquePointer?
        guard natsSubscription_NextMsg(&message, handle, 1) == NATS_OK, let message else { return }
        handler(NATSMessage(copying: message))
        natsMsg_Destroy(message)
    }

    /// On the loop's thread: the messages libnats queued for this subscription, in order.
    func deliverWaiting() {
        var waiting: Int32 = 0
        guard natsSubscription_GetPending(handle, &waiting, nil) == NATS_OK else { return }
        for _ in 0..<waiting {
            var message: OpaquePointer?
            let status = natsSubscription_NextMsg(&message, handle, 0)
            if status == NATS_SLOW_CONSUMER || status == NATS_NO_RESPONDERS { continue }
            guard status == NATS_OK, let message else { return }
            handler(NATSMessage(copying: message))
            natsMsg_Destroy(message)
        }
    }
}

/// The socket loops libnats' event-loop callbacks are meant for.
let socketLoops = CallbackTargets<NATSSocketLoop>()

// The `loop` pointer libnats passes back is a `socketLoops` id, as for the other callbacks.

let onAttach: natsEvLoop_Attach = { userData, loop, connection, fd in
    guard let loopTarget = socketLoops.lookup(loop), let connection else { return NATS_ERR }
    loopTarget.attach(connection, socket: Int32(fd))
    userData?.pointee = loop
    return NATS_OK
}

let onReadEvents: natsEvLoop_ReadAddRemove = { userData, add in
    socketLoops.lookup(userData)?.setRead(add)
    return NATS_OK
}

let onWriteEvents: natsEvLoop_WriteAddRemove = { userData, add in
    socketLoops.lookup(userData)?.setWrite(add)
    return NATS_OK
}

let onDetach: natsEvLoop_Detach = { userData in
    socketLoops.lookup(userData)?.detach()
    return NATS_OK
}
