import TroupeActors
public import TroupeWire

/// The NATS subjects and queue groups of the bridge protocol, version 1 (docs/protocol.md, "Bridge").
public enum BridgeSubjects {
    /// Where calls to actors of `system` are published: `troupe.v1.<system>.invoke`.
    public static func invoke(_ system: String) -> String {
        "troupe.v1.\(system).invoke"
    }

    /// The queue group every sidecar of `system` joins, so that one of them takes each call.
    public static func queueGroup(_ system: String) -> String {
        "troupe.\(system)"
    }

    /// Where broadcasts on `channel` are published: `troupe.v1.broadcast.<channel>`.
    public static func broadcast(_ channel: String) -> String {
        "troupe.v1.broadcast.\(channel)"
    }

    /// What every sidecar subscribes to for the broadcasts of other systems.
    public static let allBroadcasts = "troupe.v1.broadcast.>"

    /// Checks that `system` can be one token of a NATS subject.
    ///
    /// - Throws: `invalidArgument` for an empty name or one with `.`, `*`, `>` or white space.
    public static func validate(system: String) throws(TroupeError) {
        try validateToken(system, "system")
    }

    /// Checks that `channel` can be one token of a NATS subject.
    ///
    /// - Throws: `invalidArgument` for an empty name or one with `.`, `*`, `>` or white space.
    public static func validate(channel: String) throws(TroupeError) {
        try validateToken(channel, "channel")
    }

    private static func validateToken(_ value: String, _ what: String) throws(TroupeError) {
        try SubjectToken.validate(value, as: what)
    }
}
