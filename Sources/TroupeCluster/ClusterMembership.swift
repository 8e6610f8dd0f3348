import Foundation
public import Logging
import Metrics
public import NIOCore
public import ServiceLifecycle
import Synchronization
public import TroupeActors
public import TroupeMembership
import TroupePlacement
import TroupeProto
public import TroupeStore
import TroupeWire

/// Runs the SWIM state machine of ``TroupeMembership`` with real timers over the cluster
/// transport, and places actors on the members it reports up (or leaving: a draining member
/// keeps its actors until it is down).
///
/// Seeds (from configuration, or every A record of a DNS name) are contacted until they are
/// members. Every member's gossip entry carries the actor types its hosts registered, and
/// placement (rendezvous hashing, ``RendezvousPlacement``) picks among the *up* members that
/// serve an actor's type, so every node computes the same owner without a coordinator.
public final class ClusterMembership: Service, InvocationRouter, Sendable {
    public struct Configuration: Sendable {
        /// Seed addresses, HOST:PORT.
        public var seeds: [String] = []
        /// A DNS name (a headless Service) and the cluster port: every A record is a seed.
        public var dnsName: String?
        public var dnsPort = 7946
        /// Looks up the addresses of ``dnsName``; it may block (on a thread of its own).
        public var dnsLookup: @Sendable (String) -> [String] = DNSDiscovery.addresses
        /// How often the failure detector's clock advances.
        public var tickInterval: TimeAmount = .milliseconds(100)
        /// How often seeds and DNS are tried again while they are not members.
        public var discoveryInterval: TimeAmount = .seconds(1)
        /// How long after placement changed an actor that moved here is first released by the
        /// node that had it (``handOffSource(of:spawnFrom:)``). Later activations skip the
        /// round trip: the other node let go of its moved actors long before.
        public var handOffWindow: TimeAmount = .seconds(60)
        public var swim = SWIM.Settings()

        public init() {}
    }

    private struct State {
        var swim: SWIM
        /// Actor types each node (by name) serves, from its own gossip entries.
        var types: [String: Set<String>] = [:]
        /// Up members by name, with their types: what placement uses.
        var placement: [String: Set<String>] = [:]
        /// This node's types, refreshed every tick, so placement never calls into the directory.
        var localTypes: Set<String> = []
        /// Set when the cluster declared this process down while it could not answer (paused,
        /// cut off). Down is final, so ``run()`` ends with an error and the sidecar stops.
        var declaredDown = false
        /// Set just before this node's own farewell, which also makes it down.
        var departing = false
        /// A DNS lookup of discovery is in flight.
        var lookingUp = false
        /// When placement last changed (this node's start counts as a change).
        var placementChangedAt = NIODeadline.now()
        /// The candidates of each actor type, derived from `placement`, `localTypes` and whether
        /// this node keeps actors; nil once any of them changed. Every call asks for an owner.
        var table: PlacementTable?

        /// The candidate table, built again only after the inputs changed.
        mutating func placementTable(myself: String) -> PlacementTable {
            let myselfUp = swim.myself.status.keepsItsActors
            if let table, table.myselfUp == myselfUp { return table }
            let built = PlacementTable(placement: placement, localTypes: localTypes, myself: myself, myselfUp: myselfUp)
            table = built
            return built
        }
    }

    public let configuration: Configuration
    private let transport: ClusterTransport
    private let myself: NodeIdentity
    private let localTypes: @Sendable () -> Set<String>
    private let moved: @Sendable (ClusterMembership) -> Void
    private let logger: Logger
    private let state: Mutex<State>
    private let started = NIODeadline.now()
    private let upGauge = Gauge(label: "troupe_cluster_members_up")
    private let downCounter = Counter(label: "troupe_cluster_members_down_total")

    /// - Parameters:
    ///   - localTypes: the actor types this node's hosts registered now.
    ///   - moved: called after placement changed, so actors that belong elsewhere now can go.
    public init(
        configuration: Configuration, transport: ClusterTransport, localTypes: @escaping @Sendable () -> Set<String>,
        moved: @escaping @Sendable (ClusterMembership) -> Void = { _ in }, logger: Logger
    ) {
        self.configuration = configuration
        self.transport = transport
        self.myself = transport.configuration.myself
        self.localTypes = localTypes
        self.moved = moved
        var logger = logger
        logger[metadataKey: "troupe.node"] = "\(myself.name)"
        self.logger = logger
        state = Mutex(State(swim: SWIM(myself: myself, settings: configuration.swim, seed: myself.uid)))
    }

    private var now: Int64 { (NIODeadline.now() - started).nanoseconds / 1_000_000 }

    /// This node's cluster address.
    public var address: String { myself.address }

    /// This node's own status: up once it joined (or, with no member reachable, founded) a cluster.
    public var status: MemberStatus { state.withLock { $0.swim.myself.status } }

    /// Every member this node knows, itself included.
    public var members: [Member] { state.withLock { $0.swim.members } }

    /// The actor types a member's hosts registered, as far as this node knows.
    public func actorTypes(of node: String) -> [String] {
        state.withLock { node == myself.name ? $0.localTypes : $0.types[node] ?? [] }.sorted()
    }

    // MARK: Placement

    /// The owner of `actor`: rendezvous hashing over the up members serving its type. A named
    /// actor's type is its name. An unnamed actor (a spawn, or a name no member serves as a
    /// type) is placed over the up members that serve any type, since its type is only in the
    /// store: every node must compute the same owner from the key alone.
    public func owner(of actor: ActorKey, spawnFrom: String) -> String? {
        candidates(for: actor, spawnFrom: spawnFrom).nodes.owner(of: actor.description)
    }

    public func remoteOwner(of actor: ActorKey, spawnFrom: String) -> String? {
        guard let owner = owner(of: actor, spawnFrom: spawnFrom), owner != myself.name else { return nil }
        return owner
    }

    /// The owner `actor` would have without this node, when this node owns it and placement
    /// changed within ``Configuration/handOffWindow``.
    ///
    /// Removing the highest-weight node from a rendezvous ranking leaves the rest in order, so
    /// this is where the actor lived before this node joined (or started serving its type), and
    /// where it lived while this node was away (a restart). After any other change it names a
    /// node that never had the actor, which answers at once.
    public func handOffSource(of actor: ActorKey, spawnFrom: String) -> String? {
        let (nodes, changedAt) = candidates(for: actor, spawnFrom: spawnFrom)
        guard NIODeadline.now() - changedAt < configuration.handOffWindow,
            nodes.owner(of: actor.description) == myself.name
        else { return nil }
        return nodes.removing(myself.name).owner(of: actor.description)
    }

    /// The nodes placement picks `actor`'s owner among, and when placement last changed.
    private func candidates(for actor: ActorKey, spawnFrom: String) -> (
        nodes: RendezvousCandidates, changedAt: NIODeadline
    ) {
        let (table, changedAt) = state.withLock { ($0.placementTable(myself: myself.name), $0.placementChangedAt) }
        return (table.candidates(for: actor.name, spawnFrom: spawnFrom), changedAt)
    }

    // MARK: Running

    /// Announces that this node is draining: members see it *leaving* from now on, until it
    /// departs (down) when ``run()`` ends. It keeps its actors meanwhile: they move only once
    /// their state is flushed and the node is down, so no other node activates one too early.
    public func beginLeaving() {
        let directives = state.withLock { $0.swim.leave() }
        execute(directives)
    }

    /// Probes, gossips and discovers until graceful shutdown; then announces this node's departure.
    ///
    /// - Throws: `unavailable` when the other members declared this node down while it could not
    ///   answer them (it was paused or cut off for longer than the failure detector waits). Its
    ///   actors may be active elsewhere by then, so it must not serve any more: the sidecar stops,
    ///   and its restart (Kubernetes restarts the container) joins as a new member.
    public func run() async throws {
        transport.onSwim { [weak self] swim, peer in self?.receive(swim, from: peer) }
        await cancelWhenGracefulShutdown { await self.waitForFirstDiscovery() }
        await cancelWhenGracefulShutdown {
            var nextDiscovery = NIODeadline.now() + self.configuration.discoveryInterval
            while !Task.isCancelled, !self.state.withLock({ $0.declaredDown }) {
                try? await Task.sleep(for: .nanoseconds(self.configuration.tickInterval.nanoseconds))
                let types = self.localTypes()
                let (directives, typesChanged) = self.state.withLock { state in
                    let typesChanged = state.localTypes != types
                    if typesChanged {
                        state.localTypes = types
                        state.placementChangedAt = .now()
                        state.table = nil
                    }
                    return (state.swim.tick(now: self.now), typesChanged)
                }
                self.execute(directives)
                if typesChanged { self.moved(self) }
                if NIODeadline.now() >= nextDiscovery {
                    nextDiscovery = NIODeadline.now() + self.configuration.discoveryInterval
                    self.discover()
                }
            }
        }
        if state.withLock({ $0.declaredDown }) {
            logger.critical(
                "the cluster declared this node down while it could not answer (paused or cut off); stopping: a restart joins as a new member"
            )
            throw TroupeError.unavailable(
                "node \(myself.name) was declared down by the cluster", details: ["node": myself.name])
        }
        let farewell = state.withLock { state in
            state.departing = true
            return state.swim.depart()
        }
        execute(farewell)
        // Give the farewell a moment to leave before the transport closes.
        try? await Task.sleep(for: .milliseconds(100))
        logger.info("left the cluster")
    }

    /// Contacts the seeds now and the DNS records once their lookup is done; the future completes
    /// then. At most one lookup is in flight: while one is, only the seeds are contacted.
    ///
    /// The lookup runs on a thread of its own, since `getaddrinfo` waits out a slow resolver
    /// (seconds per try, for each name of the search list). The first discovery is waited for
    /// before the failure detector starts (a node that knows nobody when it first ticks founds a
    /// cluster of its own); the later ones are not, so probes, suspicions and gossip go on.
    @discardableResult
    private func discover() -> EventLoopFuture<Void> {
        contact(configuration.seeds)
        let loop = transport.eventLoop
        guard let name = configuration.dnsName,
            state.withLock({ state in
                defer { state.lookingUp = true }
                return !state.lookingUp
            })
        else { return loop.makeSucceededVoidFuture() }
        let lookup = configuration.dnsLookup
        let found = BlockingCalls.pool.runIfActive(eventLoop: loop) { lookup(name) }.recover { _ in [] }
        return found.map { [self] found in
            state.withLock { $0.lookingUp = false }
            contact(found.map { "\($0):\(configuration.dnsPort)" })
        }
    }

    /// Waits for the first ``discover()`` unless the task is cancelled first (graceful shutdown):
    /// a resolver that does not answer must not keep a draining sidecar from exiting. The lookup
    /// goes on on its thread, and its records are contacted if it ever returns.
    private func waitForFirstDiscovery() async {
        let discovered = discover()
        let done = discovered.eventLoop.makePromise(of: Void.self)
        discovered.cascade(to: done)
        // A promise completed twice keeps its first result, so the two may race.
        await withTaskCancellationHandler {
            try? await done.futureResult.get()
        } onCancel: {
            done.succeed()
        }
    }

    /// Asks the nodes at `addresses` that are not members yet to join.
    private func contact(_ addresses: [String]) {
        let known = state.withLock { state in
            Set(state.swim.members.filter { $0.status != .down }.map(\.node.address))
        }
        for address in Set(addresses) where address != myself.address && !known.contains(address) {
            transport.identify(address).whenComplete { [self] result in
                switch result {
                case .success(let node):
                    let directives = state.withLock { $0.swim.join(node, now: now) }
                    execute(directives)
                case .failure(let error):
                    logger.debug(
                        "seed not reachable", metadata: ["troupe.address": "\(address)", "troupe.error": "\(error)"])
                }
            }
        }
    }

    private func receive(_ wire: ClusterSwim, from peer: NodeIdentity) {
        guard let message = SWIM.Message(wire) else { return }
        if let own = wire.gossip.first, own.node.name == peer.name {
            state.withLock { $0.types[peer.name] = Set(own.actorTypes) }
        }
        let directives = state.withLock { $0.swim.receive(message, from: peer, now: now) }
        execute(directives)
        refreshPlacement()
    }

    private func execute(_ directives: [SWIM.Directive]) {
        var changed = false
        for directive in directives {
            switch directive {
            case .send(let message, let node):
                let wire = message.wire { [self] node in actorTypes(of: node.name) }
                transport.send(swim: wire, to: node.address)
            case .changed(let member, let previous):
                changed = true
                guard member.node != myself else {
                    logger.info(
                        "this node is \(member.status)", metadata: ["troupe.incarnation": "\(member.incarnation)"])
                    if member.status == .down {
                        state.withLock { if !$0.departing { $0.declaredDown = true } }
                    }
                    continue
                }
                if member.status == .down {
                    downCounter.increment()
                    transport.nodeDown(member.node)
                } else {
                    transport.setAddress(of: member.node)
                }
                logger.info(
                    "member \(member.node.name) is \(member.status)",
                    metadata: [
                        "troupe.member": "\(member.node)", "troupe.address": "\(member.node.address)",
                        "troupe.previous": "\(previous.map { "\($0)" } ?? "new")",
                    ])
            }
        }
        if changed { refreshPlacement() }
    }

    /// Recomputes the members placement uses (up and leaving); tells the directory when they changed.
    private func refreshPlacement() {
        let changed = state.withLock { state -> Bool in
            var placement: [String: Set<String>] = [:]
            for member in state.swim.members where member.status.keepsItsActors && member.node != myself {
                placement[member.node.name] = state.types[member.node.name] ?? []
            }
            guard placement != state.placement else { return false }
            state.placement = placement
            state.placementChangedAt = .now()
            state.table = nil
            return true
        }
        guard changed else { return }
        upGauge.record(state.withLock { $0.placement.count } + 1)
        moved(self)
    }
}

/// Every A record of a name: the members behind a headless Kubernetes Service.
enum DNSDiscovery {
    static func addresses(of name: String) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let entry = next {
            if let address = entry.pointee.ai_addr, entry.pointee.ai_family == AF_INET {
                var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { ipv4 in
                    var inAddress = ipv4.pointee.sin_addr
                    _ = inet_ntop(AF_INET, &inAddress, &text, socklen_t(INET_ADDRSTRLEN))
                }
                addresses.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            next = entry.pointee.ai_next
        }
        return Array(Set(addresses)).sorted()
    }
}
