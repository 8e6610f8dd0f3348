import TroupeMembership

/// SWIM nodes on a simulated network and clock: messages arrive at once unless the node is dead,
/// paused, or the link between two nodes is cut.
struct SimulatedCluster {
    var nodes: [NodeIdentity: SWIM] = [:]
    var dead: Set<NodeIdentity> = []
    var paused: Set<NodeIdentity> = []
    var cut: Set<[NodeIdentity]> = []
    var now: Int64 = 0
    /// Every status change each node announced, in order.
    var changes: [(observer: NodeIdentity, member: Member)] = []

    static func identity(_ name: String, uid: UInt64 = 1) -> NodeIdentity {
        NodeIdentity(name: name, address: "127.0.0.1:\(7000 + name.utf8.reduce(0) { $0 + Int($1) })", uid: uid)
    }

    mutating func add(_ node: NodeIdentity, joining seed: NodeIdentity? = nil) {
        nodes[node] = SWIM(myself: node, seed: 42)
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
            for node in nodes.keys.sorted() where !dead.contains(node) && !paused.contains(node) {
                deliver(nodes[node]!.tick(now: now), from: node)
            }
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
