import TroupeWire

/// The identity of one actor instance within the store: its ActorSystem and its instance name.
public struct ActorKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public var system: String
    public var name: String

    public init(system: String, name: String) {
        self.system = system
        self.name = name
    }

    public var description: String { "\(system)/\(name)" }

    /// Parses ``description``, `SYSTEM/NAME` (the name may contain `/`); nil unless both parts are there.
    public init?(path: String) {
        // Every remote call parses one: the common shape without the allocations of `split`.
        let utf8 = path.utf8
        if let slash = utf8.firstIndex(of: UInt8(ascii: "/")), slash != utf8.startIndex,
            utf8.index(after: slash) != utf8.endIndex
        {
            self.init(system: String(path[..<slash]), name: String(path[path.index(after: slash)...]))
            return
        }
        let parts = path.split(separator: "/", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        self.init(system: String(parts[0]), name: String(parts[1]))
    }
}

/// An actor's state as the store keeps it: opaque bytes and the name of their type.
public struct StateBlob: Sendable, Hashable {
    public var typeURL: String
    public var bytes: [UInt8]

    public init(typeURL: String, bytes: [UInt8]) {
        self.typeURL = typeURL
        self.bytes = bytes
    }
}

/// What the store holds for one actor.
public struct ActorRecord: Sendable, Hashable {
    /// The registered type the actor was created as (for a named actor, its own name).
    public var actorType: String
    /// The latest state, or nil if none was ever written.
    public var state: StateBlob?
    /// Grows by one on every write; 0 means never written.
    public var revision: UInt64
    /// Milliseconds since 1970 of the latest write (or of creation).
    public var updatedAtMillis: Int64

    public init(actorType: String, state: StateBlob?, revision: UInt64, updatedAtMillis: Int64) {
        self.actorType = actorType
        self.state = state
        self.revision = revision
        self.updatedAtMillis = updatedAtMillis
    }
}

/// The result of ``StateStore/activate(_:actorType:)``.
public struct Activation: Sendable, Hashable {
    /// The fencing token of this activation: larger than every token handed out before for the
    /// same actor. Writes must carry it.
    public var fencingToken: UInt64
    /// The actor as stored, after the activation.
    public var record: ActorRecord

    public init(fencingToken: UInt64, record: ActorRecord) {
        self.fencingToken = fencingToken
        self.record = record
    }
}

/// Where actor state lives. The sidecar owns state; hosts never see the store.
///
/// Every implementation passes the same behavioural suite (Tests/TroupeStoreTests), so the
/// runtime can rely on these rules whatever the backend:
///
/// - ``activate(_:actorType:)`` creates the actor if it does not exist and always returns a
///   fencing token larger than any earlier one for that actor.
/// - ``write(_:state:fencingToken:)`` succeeds only while the token is the actor's latest; a
///   write from an older activation fails with `failedPrecondition` and changes nothing. So a
///   zombie activation can never overwrite newer state.
/// - Failures are ``TroupeError``s: `unavailable` when the backend cannot be reached,
///   `notFound`, `alreadyExists`, `failedPrecondition` as documented on each method.
public protocol StateStore: Sendable {
    /// A short description for logs and `troupe` output, such as `sqlite:/data/troupe.sqlite`.
    var description: String { get }

    /// Starts a new activation of `key`: creates the actor as `actorType` if absent, takes a new
    /// fencing token and returns the stored record.
    ///
    /// - Throws: `failedPrecondition` if the actor exists with another type.
    func activate(_ key: ActorKey, actorType: String) async throws -> Activation

    /// Stores `state` as the actor's new state if `fencingToken` is its latest token, and returns
    /// the new revision.
    ///
    /// - Throws: `failedPrecondition` if a newer activation took over; `notFound` if the actor
    ///   does not exist.
    func write(_ key: ActorKey, state: StateBlob, fencingToken: UInt64) async throws -> UInt64

    /// Creates each actor of `keys` as `actorType` unless it exists; returns those it created.
    ///
    /// - Throws: `alreadyExists` if one of them exists with another type (then none is created).
    func spawn(_ keys: [ActorKey], actorType: String) async throws -> [ActorKey]

    /// The stored record of `key` without activating it, or nil if the actor does not exist.
    func read(_ key: ActorKey) async throws -> ActorRecord?

    /// Releases connections and files. Further calls fail with `unavailable`.
    func close() async throws
}
