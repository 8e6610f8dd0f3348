import TroupeMembership

/// SWIM nodes on a simulated network and clock: messages arrive at once unless the node is dead,
/// paused, or the link between two nodes is cut (they are lost), or the node is stalled (they
/// wait for it).
struct SimulatedCluster {
    /// The settings of the nodes added from now on.
    var settings = SWIM.Settings()
    var nodes: [NodeIdentity: SWIM] = [:]
    var dead: Set<NodeIdentity> = []
    /// Nodes that neither run nor receive: what is sent to them is lost.
    var paused: Set<NodeIdentity> = []
    /// Nodes that do not run, as a process starved of CPU: what is sent to them waits, as in a
    /// socket buffer, and is read after their first tick once they run again (``resume(_:)``).
    private(set) var stalled: Set<NodeIdentity> = []
    private var held: [(from: NodeIdentity, to: NodeIdentity, message: SWIM.Message)] = []
    var cut: Set<[NodeIdentity]> = []
    var now: Int64 = 0
    /// Every status change each node announced, in order.
    var changes: [(observer: NodeIdentity, member: Member)] = []

    static func identity(_ name: String, uid: UInt64 = 1) -> NodeIdentity {
        NodeIdentity(name: name, address: "127.0.0.1:\(7000 + name.utf8.reduce(0) { $0 + Int($1) })", uid: uid)
    }

    mutating func add(_ node: NodeIdentity, joining seed: NodeIdentity? = nil) {
        nodes[node] = SWIM(myself: node, settings: settings, seed: 42)
        if let seed { deliver(nodes[node]!.join(seed, now: now), from: node) }
    }

    func canReach(_ from: NodeIdentity, _ to: NodeIdentity) -> Bool {
        !dead.contains(to) && !paused.contains(to) && !paused.contains(from) && !cut.contains([from, to])
    }

    mutating func deliver(_ directives: [SWIM.Directive], from origin: NodeIdentity) {
        var queue = directives.map { (origin, $0) }
        var steps = 0
        while !queue.isEmpty, steps < 10_000 {
            steps += 1
            let (from, directive) = queue.removeFirst()
            switch directive {
            case .changed(let member, _):
                changes.append((from, member))
            case .send(let message, let to):
                guard canReach(from, to), nodes[to] != nil else { continue }
                if stalled.contains(to) {
                    held.append((from, to, message))
                    continue
                }
                let more = nodes[to]!.receive(message, from: from, now: now)
                queue += more.map { (to, $0) }
            }
        }
    }

    /// Advances the clock in 50 ms steps for `milliseconds`, ticking every live node.
    mutating func run(for milliseconds: Int64) {
        let end = now + milliseconds
        while now < end {
            now += 50
            for node in nodes.keys.sorted()
            where !dead.contains(node) && !paused.contains(node) && !stalled.contains(node) {
                deliver(nodes[node]!.tick(now: now), from: node)
            }
        }
    }

    /// Stops `node` running; what is sent to it waits.
    mutating func stall(_ node: NodeIdentity) { stalled.insert(node) }

    /// Lets `node` run again: it ticks first, then reads what waited for it, which is the worst
    /// order for it (its timers fire before it sees the answers that came meanwhile).
    mutating func resume(_ node: NodeIdentity) {
        stalled.remove(node)
        deliver(nodes[node]!.tick(now: now), from: node)
        let waiting = held.filter { $0.to == node }
        held.removeAll { $0.to == node }
        for (from, to, message) in waiting {
            deliver(nodes[to]!.receive(message, from: from, now: now), from: to)
        }
    }

    /// Runs until `condition` holds, for at most `limit` ms; returns the time it took, or nil.
    mutating func run(until limit: Int64, _ condition: (SimulatedCluster) -> Bool) -> Int64? {
        let start = now
        while now - start < limit {
            if condition(self) { return now - start }
            run(for: 50)
        }
        return condition(self) ? now - start : nil
    }

    func status(of member: NodeIdentity, seenBy observer: NodeIdentity) -> MemberStatus? {
        nodes[observer]?.members.first { $0.node == member }?.status
    }
}
