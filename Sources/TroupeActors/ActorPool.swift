import Metrics
import NIOCore
import TroupeProto
import TroupeWire

/// The instances of one pooled actor type on this sidecar, and the calls waiting for one.
///
/// A value kept under the ``ActorDirectory``'s lock. Its methods only decide: which instance
/// takes a call, when the pool grows, which call waits or is refused, which instances retire.
/// The directory creates the ``ActorProcess`` of each new instance and wakes instances up.
///
/// Every instance runs one call at a time (strict turns, as any activation). An idle instance
/// is handed a call directly; with none idle the pool grows by one instance up to its maximum;
/// at the maximum the call waits in one FIFO queue shared by the instances, bounded by the
/// type's mailbox capacity.
struct ActorPool {
    struct Instance {
        /// Nil until the directory has created it (right after the pool decided to grow).
        var process: ActorProcess?
        var loop: (any EventLoop)?
        var host: ObjectIdentifier
        /// The call handed to this instance while it was idle or being created.
        var handed: Call?
        var busy: Bool
        var lastActivity: NIODeadline
    }

    /// A new instance the directory must create; `id` is also its activation id.
    struct Growth {
        var id: UInt64
        var host: any ActorHost
        var info: ActorTypeInfo
    }

    /// What happens to an admitted call.
    enum Admission {
        /// Handed to an idle instance: pump it on `loop`.
        case wake(ActorProcess, any EventLoop)
        /// Handed to a new instance the directory must create.
        case grow(Growth)
        /// Waits in the queue for the next free instance.
        case queued
        case refused(TroupeError)
    }

    private(set) var info: ActorTypeInfo
    private(set) var instances: [UInt64: Instance] = [:]
    /// Idle, created instances; the most recently used last, so the least used retire first.
    private var idle: [UInt64] = []
    private var queue = CircularBuffer<(call: Call, since: NIODeadline)>(initialCapacity: 16)
    private var busyCount = 0
    /// Instance ids grow and are never reused, so a retired instance's late wake-up finds nothing.
    private var nextInstance: UInt64 = 1
    /// New instances go to the type's hosts in turn.
    private var nextHost = 0
    private(set) var peak = 0
    private(set) var queuedTotal: UInt64 = 0
    private let meters: PoolMeters

    init(info: ActorTypeInfo) {
        self.info = info
        self.meters = PoolMeters(actorType: info.name)
        meters.record(instances: 0, busy: 0)
    }

    var minimum: Int { info.poolMin }
    var maximum: Int { info.poolMax }
    var queuedCount: Int { queue.count }
    /// Calls running or waiting: zero once the pool has nothing left to do.
    var pendingCount: Int { busyCount + queue.count }

    /// Takes a newer definition of the type (a host registered it again). Sizes apply from the
    /// next call and the next idle sweep on.
    mutating func update(_ info: ActorTypeInfo) {
        self.info = info
    }

    /// Places `call`; a new instance runs on the next of `hosts` (the hosts serving the type now).
    mutating func admit(_ call: Call, hosts: [any ActorHost]) -> Admission {
        let now = NIODeadline.now()
        if let id = idle.popLast() {
            instances[id]!.handed = call
            instances[id]!.busy = true
            instances[id]!.lastActivity = now
            busyCount += 1
            meters.record(instances: instances.count, busy: busyCount)
            let instance = instances[id]!
            return .wake(instance.process!, instance.loop!)
        }
        if instances.count < maximum, !hosts.isEmpty {
            let growth = grow(hosts: hosts, handing: call, now: now)
            busyCount += 1
            noteSize()
            return .grow(growth)
        }
        guard queue.count < info.mailboxCapacity else {
            return .refused(
                .resourceExhausted(
                    "pool of '\(info.name)' is full: \(instances.count) instances busy and \(queue.count) calls waiting",
                    details: ["actor_type": info.name]))
        }
        queue.append((call, now))
        queuedTotal += 1
        meters.queued.increment()
        return .queued
    }

    /// Installs the process of an instance the pool grew by. Returns true if it has a call to
    /// run (pump it); false if it joined the idle ones or is gone (its host left meanwhile).
    mutating func created(_ id: UInt64, process: ActorProcess, loop: any EventLoop) -> Bool {
        guard instances[id] != nil else { return false }
        instances[id]!.process = process
        instances[id]!.loop = loop
        if instances[id]!.handed != nil { return true }
        if !instances[id]!.busy { idle.append(id) }
        return false
    }

    private mutating func grow(hosts: [any ActorHost], handing call: Call?, now: NIODeadline) -> Growth {
        let id = nextInstance
        nextInstance += 1
        let host = hosts[nextHost % hosts.count]
        nextHost &+= 1
        instances[id] = Instance(host: ObjectIdentifier(host), handed: call, busy: call != nil, lastActivity: now)
        return Growth(id: id, host: host, info: info)
    }

    /// The next call for instance `id`: the one it was handed, else the oldest waiting one. Nil
    /// when there is none (the instance is idle from now on) or the instance was retired.
    mutating func next(for id: UInt64) -> Call? {
        guard instances[id] != nil else { return nil }
        let now = NIODeadline.now()
        instances[id]!.lastActivity = now
        if let call = instances[id]!.handed {
            instances[id]!.handed = nil
            return call
        }
        if let (call, since) = queue.popFirst() {
            meters.queueWait.recordNanoseconds((now - since).nanoseconds)
            return call
        }
        if instances[id]!.busy {
            instances[id]!.busy = false
            busyCount -= 1
            idle.append(id)
            meters.record(instances: instances.count, busy: busyCount)
        }
        return nil
    }

    /// Instances to create so that the pool has at least its minimum, plus one per waiting call
    /// up to its maximum (after its host left, or on registration). Each takes a waiting call.
    mutating func refill(hosts: [any ActorHost]) -> [Growth] {
        var growths: [Growth] = []
        let now = NIODeadline.now()
        while !hosts.isEmpty, instances.count < maximum, instances.count < minimum || !queue.isEmpty {
            let handed = queue.popFirst()?.call
            if handed != nil { busyCount += 1 }
            growths.append(grow(hosts: hosts, handing: handed, now: now))
        }
        noteSize()
        return growths
    }

    /// Removes the instances of a host that left. A call handed to one of them that it has not
    /// taken yet goes back to the head of the queue. Returns the waiting calls when `hostsLeft`
    /// is false, since nothing will serve them; otherwise ``refill(hosts:)`` should follow.
    mutating func remove(host: ObjectIdentifier, hostsLeft: Bool) -> [Call] {
        let now = NIODeadline.now()
        for (id, instance) in instances where instance.host == host {
            instances.removeValue(forKey: id)
            if instance.busy { busyCount -= 1 }
            if let handed = instance.handed { queue.prepend((handed, now)) }
        }
        idle.removeAll { instances[$0] == nil }
        noteSize()
        guard !hostsLeft else { return [] }
        return takeQueue()
    }

    /// Retires idle instances above the minimum that had no call for the type's idle timeout,
    /// longest idle first. Returns how many retired.
    mutating func retireIdle(now: NIODeadline) -> Int {
        var retired = 0
        while instances.count > minimum, let oldest = idle.first,
            now - instances[oldest]!.lastActivity >= info.idleTimeout
        {
            idle.removeFirst()
            instances.removeValue(forKey: oldest)
            retired += 1
        }
        if retired > 0 { noteSize() }
        return retired
    }

    /// Empties the pool (shutdown); returns the calls still waiting.
    mutating func takeQueue() -> [Call] {
        let calls = queue.map(\.call)
        queue.removeAll()
        return calls
    }

    mutating func removeAll() {
        instances.removeAll()
        idle.removeAll()
        busyCount = 0
        noteSize()
    }

    /// The pool as DescribeSidecar reports it.
    var wireInfo: WireActorPoolInfo {
        var info = WireActorPoolInfo()
        info.actorType = self.info.name
        info.instances = UInt32(clamping: instances.count)
        info.busy = UInt32(clamping: busyCount)
        info.queued = UInt32(clamping: queue.count)
        info.min = UInt32(clamping: minimum)
        info.max = UInt32(clamping: maximum)
        info.peakInstances = UInt32(clamping: peak)
        info.queuedTotal = queuedTotal
        return info
    }

    private mutating func noteSize() {
        peak = max(peak, instances.count)
        meters.record(instances: instances.count, busy: busyCount)
    }
}

/// The metrics of one pool: `troupe_pool_instances`, `troupe_pool_busy_instances`,
/// `troupe_pool_queued_calls_total` and `troupe_pool_queue_wait_seconds`, by `actor_type`.
/// Handles are made once per pool, not per call.
struct PoolMeters: Sendable {
    let instances: Gauge
    let busy: Gauge
    let queued: Counter
    let queueWait: Timer

    init(actorType: String) {
        let dimensions = [("actor_type", actorType)]
        instances = Gauge(label: "troupe_pool_instances", dimensions: dimensions)
        busy = Gauge(label: "troupe_pool_busy_instances", dimensions: dimensions)
        queued = Counter(label: "troupe_pool_queued_calls_total", dimensions: dimensions)
        queueWait = Timer(
            label: "troupe_pool_queue_wait_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
    }

    func record(instances count: Int, busy busyCount: Int) {
        instances.record(count)
        busy.record(busyCount)
    }
}
