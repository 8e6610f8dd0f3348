/// The SWIM failure detector and membership protocol as a pure state machine.
///
/// It does no I/O and reads no clock: the runtime feeds it the time (``tick(now:)``) and the
/// messages that arrive (``receive(_:from:now:)``), and carries out the ``SWIM/Directive``s it
/// returns (send a message, announce a membership change). That keeps the protocol testable with
/// a simulated network and clock.
///
/// Each probe interval a node pings one member (round robin over a shuffled list). No ack within
/// the ping timeout → it asks `indirectProbes` other members to ping the target for it. No ack
/// through them either → the target becomes *suspect*, and *down* after the suspicion timeout
/// unless it refutes by announcing a higher incarnation. Membership changes travel piggybacked on
/// the pings and acks (gossip), each retransmitted a few times per member count.
///
/// Two refinements from Lifeguard (Dadgar et al., 2018), against false suspicions:
/// - A ping to a suspect carries the suspicion, so the suspect hears it and refutes on the next
///   probe instead of waiting for the rumor to reach it.
/// - A tick that comes ``Settings/stallThreshold`` or more after the previous one means this node
///   itself was not running (paused, starved of CPU). Acks and refutations may be waiting to be
///   read, so its probes, relays and suspicions get that time back instead of expiring at once.
///   Only an isolated stall is given back: when the tick before was late too, the node keeps
///   stalling, and its timeouts run on the clock, or it would never suspect anyone.
public struct SWIM: Sendable {
    public struct Settings: Sendable, Equatable {
        /// How often this node probes one member.
        public var probeInterval: Int64 = 500
        /// How long a direct ping may take before indirect probes start.
        public var pingTimeout: Int64 = 200
        /// How long the indirect probes may take before the target is suspected.
        public var indirectTimeout: Int64 = 400
        /// Members asked to probe on this node's behalf.
        public var indirectProbes = 3
        /// How long a suspect has to refute before it is declared down.
        public var suspicionTimeout: Int64 = 1000
        /// Gossip entries piggybacked on one message.
        public var maxGossip = 8
        /// A gap this long between two ticks is time this node did not run, not time the others
        /// failed to answer. Well above the runtime's tick interval, well below the timeouts'.
        public var stallThreshold: Int64 = 300

        public init() {}
    }

    /// Messages between nodes. Every message carries gossip; its first entry is the sender itself.
    public enum Message: Sendable, Equatable {
        case ping(probe: UInt64, gossip: [Member])
        case pingRequest(probe: UInt64, target: NodeIdentity, gossip: [Member])
        case ack(probe: UInt64, target: NodeIdentity, gossip: [Member])
    }

    public enum Directive: Sendable, Equatable {
        case send(Message, to: NodeIdentity)
        /// A member's status changed as this node sees it (`previous` nil: newly known).
        case changed(Member, previous: MemberStatus?)
    }

    private struct Probe {
        var id: UInt64
        var target: NodeIdentity
        var started: Int64
        var indirect: Bool
    }

    private struct Relay {
        var requester: NodeIdentity
        var requesterProbe: UInt64
        var target: NodeIdentity
        var started: Int64
    }

    private struct Rumor {
        var member: Member
        var sent: Int
    }

    public let settings: Settings
    public private(set) var myself: Member
    private var known: [NodeIdentity: Member] = [:]
    private var probe: Probe?
    private var nextProbeAt: Int64 = 0
    private var probeOrder: [NodeIdentity] = []
    private var relays: [UInt64: Relay] = [:]
    private var suspicions: [NodeIdentity: Int64] = [:]
    private var rumors: [NodeIdentity: Rumor] = [:]
    private var nextProbeID: UInt64 = 1
    private var lastTick: Int64?
    private var lastTickStalled = false
    private var random: SplitMix

    public init(myself node: NodeIdentity, settings: Settings = Settings(), seed: UInt64) {
        self.settings = settings
        self.myself = Member(node: node, status: .joining, incarnation: 0)
        self.random = SplitMix(seed: seed ^ StableSeed.of(node))
    }

    /// Every member this node knows, itself included, ordered by name.
    public var members: [Member] {
        ([myself] + known.values).sorted { $0.node < $1.node }
    }

    /// The members placement may use: up ones, this node included when it is up.
    public var upMembers: [NodeIdentity] {
        members.filter { $0.status == .up }.map(\.node)
    }

    /// Starts talking to a seed node (from configuration or DNS).
    public mutating func join(_ seed: NodeIdentity, now: Int64) -> [Directive] {
        guard seed != myself.node, known[seed] == nil else { return [] }
        var directives = apply(Member(node: seed, status: .joining, incarnation: 0))
        directives.append(.send(.ping(probe: allocateProbeID(), gossip: gossip()), to: seed))
        return directives
    }

    /// Starts leaving: the cluster learns this node takes no new actors.
    public mutating func leave() -> [Directive] {
        guard myself.status < .leaving else { return [] }
        let previous = myself.status
        myself.status = .leaving
        spread(myself)
        return [.changed(myself, previous: previous)] + broadcast()
    }

    /// The last word before exiting: members mark this node down at once, without suspicion.
    public mutating func depart() -> [Directive] {
        let previous = myself.status
        myself.status = .down
        spread(myself)
        return [.changed(myself, previous: previous)] + broadcast()
    }

    /// Advances time: starts and times out probes, and ends suspicions.
    public mutating func tick(now: Int64) -> [Directive] {
        let stalled = lastTick.map { now - $0 >= settings.stallThreshold } ?? false
        if stalled, !lastTickStalled, let lastTick { postpone(by: now - lastTick) }
        lastTick = now
        lastTickStalled = stalled
        var directives: [Directive] = []
        if myself.status == .joining, known.values.allSatisfy({ $0.status == .down }) {
            // Nobody to confirm us: a cluster of one is up.
            directives += promoteMyself()
        }
        directives += advanceProbe(now: now)
        for (node, deadline) in suspicions where now >= deadline {
            suspicions.removeValue(forKey: node)
            if var member = known[node], member.status == .suspect {
                member.status = .down
                directives += apply(member)
            }
        }
        relays = relays.filter { now - $0.value.started < settings.pingTimeout + settings.indirectTimeout }
        return directives
    }

    /// Handles a message from `sender`.
    public mutating func receive(_ message: Message, from sender: NodeIdentity, now: Int64) -> [Directive] {
        var directives: [Directive] = []
        let rumors: [Member]
        switch message {
        case .ping(_, let gossip), .pingRequest(_, _, let gossip), .ack(_, _, let gossip): rumors = gossip
        }
        for rumor in rumors { directives += apply(rumor, now: now) }
        if myself.status == .joining { directives += promoteMyself() }
        guard myself.status != .down else { return directives }
        if let stale = known[sender], stale.status == .down {
            // A process we declared down is still talking (it was paused or cut off). Down is
            // final: tell it, so it stops instead of declaring everyone else down in turn.
            let verdict = Message.ack(probe: 0, target: myself.node, gossip: [myself, stale])
            return directives + [.send(verdict, to: sender)]
        }
        switch message {
        case .ping(let id, _):
            directives.append(.send(.ack(probe: id, target: myself.node, gossip: gossip()), to: sender))
        case .pingRequest(let id, let target, _):
            let relayed = allocateProbeID()
            relays[relayed] = Relay(requester: sender, requesterProbe: id, target: target, started: now)
            directives.append(.send(.ping(probe: relayed, gossip: gossip()), to: target))
        case .ack(let id, let target, _):
            if let probe, probe.id == id, probe.target == target {
                self.probe = nil
            } else if let relay = relays.removeValue(forKey: id) {
                directives.append(
                    .send(
                        .ack(probe: relay.requesterProbe, target: relay.target, gossip: gossip()), to: relay.requester))
            }
        }
        return directives
    }

    /// Gives the running probe, the relays and the suspicions back `stall` ms this node did not run.
    private mutating func postpone(by stall: Int64) {
        probe?.started += stall
        for id in Array(relays.keys) { relays[id]?.started += stall }
        for node in Array(suspicions.keys) { suspicions[node]? += stall }
    }

    // MARK: Probing

    private mutating func advanceProbe(now: Int64) -> [Directive] {
        if var current = probe {
            if !current.indirect, now - current.started >= settings.pingTimeout {
                current.indirect = true
                current.started = now
                probe = current
                let helpers = pick(settings.indirectProbes, excluding: current.target)
                if !helpers.isEmpty {
                    return helpers.map {
                        .send(.pingRequest(probe: current.id, target: current.target, gossip: gossip()), to: $0)
                    }
                }
            }
            if current.indirect, now - current.started >= settings.indirectTimeout {
                probe = nil
                guard var member = known[current.target], member.status != .suspect, member.status != .down else {
                    return []
                }
                // A leaving member that stops answering has gone: no need to wait for a refutation.
                member.status = member.status == .leaving ? .down : .suspect
                return apply(member, now: now)
            }
            return []
        }
        guard now >= nextProbeAt, let target = nextTarget() else { return [] }
        nextProbeAt = now + settings.probeInterval
        let id = allocateProbeID()
        probe = Probe(id: id, target: target, started: now, indirect: false)
        return [.send(.ping(probe: id, gossip: gossip(tellingSuspect: target)), to: target)]
    }

    private mutating func nextTarget() -> NodeIdentity? {
        probeOrder.removeAll { known[$0] == nil || known[$0]?.status == .down }
        if probeOrder.isEmpty {
            probeOrder = known.values.filter { $0.status != .down }.map(\.node).sorted()
            random.shuffle(&probeOrder)
        }
        return probeOrder.isEmpty ? nil : probeOrder.removeFirst()
    }

    private mutating func pick(_ count: Int, excluding target: NodeIdentity) -> [NodeIdentity] {
        var candidates = known.values.filter { $0.node != target && $0.status < .suspect }.map(\.node).sorted()
        random.shuffle(&candidates)
        return Array(candidates.prefix(count))
    }

    private mutating func allocateProbeID() -> UInt64 {
        defer { nextProbeID &+= 1 }
        return nextProbeID
    }

    // MARK: Membership

    private mutating func promoteMyself() -> [Directive] {
        guard myself.status == .joining else { return [] }
        myself.status = .up
        spread(myself)
        return [.changed(myself, previous: .joining)]
    }

    /// Merges one report into what this node knows.
    private mutating func apply(_ report: Member, now: Int64 = 0) -> [Directive] {
        if report.node == myself.node {
            if report.status == .down, myself.status != .down {
                // The cluster declared this process down while it could not answer: that is final
                // (its actors may be active elsewhere by now). The runtime has to stop it.
                let previous = myself.status
                myself.status = .down
                return [.changed(myself, previous: previous)]
            }
            // Only we may say we are alive: refute a suspicion with a higher incarnation.
            guard report.status == .suspect, myself.status < .leaving, report.incarnation >= myself.incarnation else {
                return []
            }
            myself.incarnation = report.incarnation + 1
            spread(myself)
            return []
        }
        var directives: [Directive] = []
        if report.node.name == myself.node.name, report.node.uid != myself.node.uid {
            return []  // An older or newer process under our name is not us; ignore reports of it.
        }
        // A newer process of the same name replaces the old member.
        for (node, old) in known where node.name == report.node.name && node.uid != report.node.uid {
            if node.uid > report.node.uid { return [] }
            if old.status != .down {
                var gone = old
                gone.status = .down
                known[node] = gone
                suspicions.removeValue(forKey: node)
                spread(gone)
                directives.append(.changed(gone, previous: old.status))
            }
        }
        if let current = known[report.node] {
            guard report.supersedes(current) else { return directives }
            known[report.node] = report
            if report.status != current.status { directives.append(.changed(report, previous: current.status)) }
        } else {
            known[report.node] = report
            directives.append(.changed(report, previous: nil))
        }
        if report.status == .suspect {
            if suspicions[report.node] == nil { suspicions[report.node] = now + settings.suspicionTimeout }
        } else {
            suspicions.removeValue(forKey: report.node)
        }
        spread(report)
        return directives
    }

    // MARK: Gossip

    private mutating func spread(_ member: Member) {
        rumors[member.node] = Rumor(member: member, sent: 0)
    }

    /// How many times a rumor is sent: enough to reach everyone with high probability.
    private var retransmitLimit: Int {
        var bits = 0
        var count = known.count + 1
        while count > 0 {
            bits += 1
            count >>= 1
        }
        return 3 * bits
    }

    /// This node's entry, then the least-sent rumors. With `target` suspect, its suspicion comes
    /// right after this node's entry, whether or not it is still a rumor to spread.
    private mutating func gossip(tellingSuspect target: NodeIdentity? = nil) -> [Member] {
        let limit = retransmitLimit
        var head = [myself]
        if let target, let member = known[target], member.status == .suspect { head.append(member) }
        let chosen = rumors.values.filter { rumor in !head.contains { $0.node == rumor.member.node } }
            .sorted { ($0.sent, $0.member.node) < ($1.sent, $1.member.node) }
            .prefix(max(0, settings.maxGossip - head.count))
        for rumor in chosen {
            let node = rumor.member.node
            rumors[node]?.sent += 1
            if let sent = rumors[node]?.sent, sent >= limit { rumors.removeValue(forKey: node) }
        }
        return head + chosen.map(\.member)
    }

    /// Sends this node's news to every member at once (leave, depart).
    private mutating func broadcast() -> [Directive] {
        known.values.filter { $0.status != .down }.map(\.node).sorted().map {
            .send(.ping(probe: allocateProbeID(), gossip: gossip()), to: $0)
        }
    }
}

/// A small deterministic generator, so tests with the same seed replay the same probe order.
struct SplitMix: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    mutating func shuffle<T>(_ values: inout [T]) {
        guard values.count > 1 else { return }
        for index in stride(from: values.count - 1, to: 0, by: -1) {
            let other = Int(next() % UInt64(index + 1))
            values.swapAt(index, other)
        }
    }
}

enum StableSeed {
    static func of(_ node: NodeIdentity) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in node.name.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash ^ node.uid
    }
}
