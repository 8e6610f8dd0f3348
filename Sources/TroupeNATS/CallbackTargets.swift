import Synchronization

/// Finds the Swift object a libnats callback is meant for.
///
/// libnats hands each callback the `void *closure` it was registered with, on one of its own
/// threads, possibly after the Swift side has let go of the object. So the closure is a number,
/// not an object pointer: a late callback looks the number up, finds nothing, and does nothing,
/// instead of touching freed memory.
final class CallbackTargets<Target: AnyObject & Sendable>: Sendable {
    private struct Table {
        var next: UInt = 1
        var targets: [UInt: Target] = [:]
    }

    private let table = Mutex(Table())

    /// Registers `target`; the returned id goes to libnats as the callback's closure.
    func add(_ target: Target) -> UInt {
        table.withLock { table in
            let id = table.next
            table.next += 1
            table.targets[id] = target
            return id
        }
    }

    func remove(_ id: UInt) {
        _ = table.withLock { $0.targets.removeValue(forKey: id) }
    }

    func lookup(_ closure: UnsafeMutableRawPointer?) -> Target? {
        guard let closure else { return nil }
        let id = UInt(bitPattern: closure)
        return table.withLock { $0.targets[id] }
    }
}

/// The closure pointer libnats carries for callback id `id`.
func closurePointer(_ id: UInt) -> UnsafeMutableRawPointer? {
    UnsafeMutableRawPointer(bitPattern: id)
}

/// The connections whose callbacks are live.
let connectionTargets = CallbackTargets<ConnectionCore>()
/// The subscriptions whose message callbacks are live.
let subscriptionTargets = CallbackTargets<SubscriptionTarget>()

/// What a subscription's messages are handed to.
final class SubscriptionTarget: Sendable {
    let handler: @Sendable (NATSMessage) -> Void

    init(_ handler: @escaping @Sendable (NATSMessage) -> Void) {
        self.handler = handler
    }
}
