import TroupePlacement

/// Placement's candidates per actor type, derived from the up members' types (``ClusterMembership``
/// keeps one until membership or this node's types change).
struct PlacementTable: Sendable {
    let myselfUp: Bool
    /// Each type served somewhere, with the nodes that serve it.
    private let byType: [String: RendezvousCandidates]
    /// The nodes that serve any type: where unnamed actors and spawns go.
    private let anyType: RendezvousCandidates

    init(placement: [String: Set<String>], localTypes: Set<String>, myself: String, myselfUp: Bool) {
        self.myselfUp = myselfUp
        var served = placement
        if myselfUp { served[myself] = localTypes }
        var nodesByType: [String: [String]] = [:]
        for (node, types) in served {
            for type in types { nodesByType[type, default: []].append(node) }
        }
        byType = nodesByType.mapValues { RendezvousCandidates($0) }
        anyType = RendezvousCandidates(served.filter { !$0.value.isEmpty }.keys)
    }

    /// The nodes that may own actor `name`: those serving the type `name` when it is not a spawn
    /// (`spawnFrom` empty) and someone serves it, otherwise those serving any type.
    func candidates(for name: String, spawnFrom: String) -> RendezvousCandidates {
        if spawnFrom.isEmpty, let nodes = byType[name] { return nodes }
        return anyType
    }
}
