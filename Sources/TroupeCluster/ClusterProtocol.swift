import TroupeMembership
public import TroupeProto
public import TroupeWire

/// Constants and checks of the cluster protocol (proto/troupe/cluster/v1/cluster.proto).
public enum ClusterProtocol {
    /// The cluster protocol major version this build speaks.
    public static let version: UInt32 = 1
    /// The largest envelope body a node accepts by default (``ClusterTransport/Configuration/maxFrameBytes``).
    public static let maxFrameBytes: UInt32 = 16 * 1024 * 1024

    /// Why the handshake `handshake` is refused by a node of `system`, or nil to accept it.
    public static func refusal(of handshake: ClusterHandshake, system: String) -> TroupeError? {
        guard handshake.protocolVersion == version else {
            return .failedPrecondition(
                "cluster protocol version \(handshake.protocolVersion) is not supported; this node speaks version \(version)",
                details: ["supported": "\(version)", "offered": "\(handshake.protocolVersion)"])
        }
        guard handshake.system == system else {
            return .failedPrecondition(
                "this node belongs to ActorSystem '\(system)', not '\(handshake.system)'",
                details: ["system": system, "offered": handshake.system])
        }
        guard handshake.hasNode, !handshake.node.name.isEmpty, !handshake.node.address.isEmpty else {
            return .invalidArgument("the handshake names no node name and address")
        }
        return nil
    }
}

extension ClusterNode {
    init(_ identity: NodeIdentity) {
        self.init()
        name = identity.name
        address = identity.address
        incarnation = identity.uid
    }

    var identity: NodeIdentity { NodeIdentity(name: name, address: address, uid: incarnation) }
}

extension MemberStatus {
    init(_ wire: ClusterMemberStatus) {
        switch wire {
        case .joining: self = .joining
        case .up: self = .up
        case .suspect: self = .suspect
        case .leaving: self = .leaving
        case .down: self = .down
        case .UNRECOGNIZED: self = .suspect
        }
    }

    var wire: ClusterMemberStatus {
        switch self {
        case .joining: .joining
        case .up: .up
        case .suspect: .suspect
        case .leaving: .leaving
        case .down: .down
        }
    }
}

extension SWIM.Message {
    /// The message on the wire, each member with the actor types `types` knows for it.
    func wire(types: (NodeIdentity) -> [String]) -> ClusterSwim {
        func members(_ gossip: [Member]) -> [ClusterMember] {
            gossip.map { member in
                var wire = ClusterMember()
                wire.node = ClusterNode(member.node)
                wire.status = member.status.wire
                wire.incarnation = member.incarnation
                wire.actorTypes = types(member.node)
                return wire
            }
        }
        var swim = ClusterSwim()
        switch self {
        case .ping(let probe, let gossip):
            swim.kind = .ping
            swim.probe = probe
            swim.gossip = members(gossip)
        case .pingRequest(let probe, let target, let gossip):
            swim.kind = .pingRequest
            swim.probe = probe
            swim.target = ClusterNode(target)
            swim.gossip = members(gossip)
        case .ack(let probe, let target, let gossip):
            swim.kind = .ack
            swim.probe = probe
            swim.target = ClusterNode(target)
            swim.gossip = members(gossip)
        }
        return swim
    }

    /// Reads a SWIM message; nil for a kind this build does not know.
    package init?(_ wire: ClusterSwim) {
        let gossip = wire.gossip.map {
            Member(node: $0.node.identity, status: MemberStatus($0.status), incarnation: $0.incarnation)
        }
        switch wire.kind {
        case .ping: self = .ping(probe: wire.probe, gossip: gossip)
        case .pingRequest: self = .pingRequest(probe: wire.probe, target: wire.target.identity, gossip: gossip)
        case .ack: self = .ack(probe: wire.probe, target: wire.target.identity, gossip: gossip)
        case .UNRECOGNIZED: return nil
        }
    }
}
