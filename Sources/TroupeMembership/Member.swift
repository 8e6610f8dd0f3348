/// One sidecar process in the cluster: its name, where it listens, and a number unique to this
/// start of the process. A restarted node has a new `uid`, so it is a new member that replaces
/// the old one rather than the old one coming back.
public struct NodeIdentity: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var name: String
    public var address: String
    public var uid: UInt64

    public init(name: String, address: String, uid: UInt64) {
        self.name = name
        self.address = address
        self.uid = uid
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.name, lhs.uid) < (rhs.name, rhs.uid)
    }

    public var description: String { "\(name)#\(uid)" }
}

/// Where a member is in its life. The order is the order of precedence when two reports of the
/// same incarnation disagree: the later stage wins.
public enum MemberStatus: Int, Sendable, Comparable, CustomStringConvertible {
    /// Known, not yet confirmed by an exchange with the cluster.
    case joining = 0
    /// Serving; counts for placement.
    case up = 1
    /// Missed its probes; declared down unless it refutes in time.
    case suspect = 2
    /// Draining on its way out: finishes its calls and flushes its actors, which stay placed on it
    /// until it is down, so that no other node activates one before its state is stored.
    case leaving = 3
    /// Gone for good. A member that is down never comes back; its process restarts as a new member.
    case down = 4

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// True for the members placement puts actors on: up ones, and leaving ones until they are
    /// down (their actors move only after their state is flushed).
    public var keepsItsActors: Bool { self == .up || self == .leaving }

    public var description: String {
        switch self {
        case .joining: "joining"
        case .up: "up"
        case .suspect: "suspect"
        case .leaving: "leaving"
        case .down: "down"
        }
    }
}

/// A member as one node knows it. `incarnation` is raised only by the member itself, to refute
/// a suspicion: a report with a higher incarnation is newer, whatever its status.
public struct Member: Hashable, Sendable, CustomStringConvertible {
    public var node: NodeIdentity
    public var status: MemberStatus
    public var incarnation: UInt64

    public init(node: NodeIdentity, status: MemberStatus, incarnation: UInt64) {
        self.node = node
        self.status = status
        self.incarnation = incarnation
    }

    /// True if this report should replace `known`, a report of the same node.
    public func supersedes(_ known: Member) -> Bool {
        if known.status == .down { return false }
        if status == .down { return true }
        if incarnation != known.incarnation { return incarnation > known.incarnation }
        return status > known.status
    }

    public var description: String { "\(node) \(status)@\(incarnation)" }
}
