/// Rendezvous (highest random weight) placement: which node owns an actor.
///
/// Every node computes the owner locally from the same inputs (the actor's key and the list of
/// eligible nodes), so no coordinator sits on the call path. When a node joins or leaves, only the
/// actors whose owner changes move: about 1/N of them on a join, exactly the leaver's on a leave.
///
/// The weights come from ``StableHash``, never from Swift's `Hasher`, which is seeded per process
/// and would make every node disagree.
///
/// ```swift
/// let owner = RendezvousPlacement.owner(of: "tickets/concert-1", among: ["node-a", "node-b", "node-c"])
/// ```
public enum RendezvousPlacement {
    /// The node with the highest weight for `key`, or nil if `nodes` is empty. Ties (practically
    /// impossible with 64-bit weights) go to the smaller node name, so the answer never depends
    /// on the order of `nodes`.
    public static func owner<Nodes: Sequence<String>>(of key: String, among nodes: Nodes) -> String? {
        RendezvousCandidates(nodes).owner(of: key)
    }

    /// The nodes ordered by weight for `key`, highest first: the owner, then who takes over if it
    /// goes. Useful for hand-off and replicas.
    public static func ranking<Nodes: Sequence<String>>(of key: String, among nodes: Nodes) -> [String] {
        let keyHash = StableHash.hash(key)
        return nodes.map { ($0, StableHash.mix(keyHash ^ StableHash.hash($0))) }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
            .map(\.0)
    }
}

/// The nodes an actor may be placed on, with their hashes computed once: a node asks for an owner
/// on every call, while the candidates change only with membership.
///
/// ```swift
/// let candidates = RendezvousCandidates(["node-a", "node-b", "node-c"])
/// let owner = candidates.owner(of: "tickets/concert-1")  // as RendezvousPlacement.owner(of:among:)
/// ```
public struct RendezvousCandidates: Sendable {
    private var entries: [(node: String, hash: UInt64)]

    public init<Nodes: Sequence<String>>(_ nodes: Nodes) {
        entries = nodes.map { ($0, StableHash.hash($0)) }
    }

    /// The same candidates without `node`, their hashes kept.
    public func removing(_ node: String) -> Self {
        var rest = self
        rest.entries.removeAll { $0.node == node }
        return rest
    }

    /// The candidates, in the order they were given.
    public var nodes: [String] { entries.map(\.node) }
    public var isEmpty: Bool { entries.isEmpty }

    /// The candidate with the highest weight for `key`, or nil if there is none; the same answer
    /// as ``RendezvousPlacement/owner(of:among:)`` over ``nodes``.
    public func owner(of key: String) -> String? {
        let keyHash = StableHash.hash(key)
        var best: (node: String, weight: UInt64)?
        for entry in entries {
            let weight = StableHash.mix(keyHash ^ entry.hash)
            if let current = best,
                current.weight > weight || (current.weight == weight && current.node < entry.node)
            {
                continue
            }
            best = (entry.node, weight)
        }
        return best?.node
    }
}

/// A 64-bit hash that is the same in every process, on every machine and in every version:
/// FNV-1a over the UTF-8 bytes, finished with the SplitMix64 mixer for good avalanche.
public enum StableHash {
    public static func hash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return mix(hash)
    }

    /// SplitMix64's finalizer.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
