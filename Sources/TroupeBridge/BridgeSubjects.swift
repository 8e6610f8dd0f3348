import TroupeActors
public import TroupeWire

/// The NATS subjects and queue groups of the bridge protocol, version 1 (docs/protocol.md, "Bridge").
public enum BridgeSubjects {
    /// Where `caller` publishes its calls to actors of `system`: `troupe.v1.<system>.invoke.<caller>`.
    ///
    /// The caller is in the subject, not only in the envelope, so that NATS subject permissions
    /// can pin each system's credentials to its own name (docs/security.md).
    public static func invoke(_ system: String, from caller: String) -> String {
        "troupe.v1.\(system).invoke.\(caller)"
    }

    /// What the sidecars of `system` subscribe to: the calls of every caller.
    public static func invocations(of system: String) -> String {
        "troupe.v1.\(system).invoke.*"
    }

    /// The queue group every sidecar of `system` joins, so that one of them takes each call.
    public static func queueGroup(_ system: String) -> String {
        "troupe.\(system)"
    }

    /// Where `origin` publishes its broadcasts on `channel`: `troupe.v1.broadcast.<origin>.<channel>`.
    public static func broadcast(_ channel: String, from origin: String) -> String {
        "troupe.v1.broadcast.\(origin).\(channel)"
    }

    /// What every sidecar subscribes to for the broadcasts of other systems.
    public static let allBroadcasts = "troupe.v1.broadcast.*.*"

    /// The calling system named by a call subject of `system`, or nil if `subject` is not one.
    public static func caller(ofCall subject: String, to system: String) -> String? {
        token(after: "troupe.v1.\(system).invoke.", in: subject)
    }

    /// The origin and channel named by a broadcast subject, or nil if `subject` is not one.
    public static func origin(ofBroadcast subject: String) -> (origin: String, channel: String)? {
        guard let rest = token(after: "troupe.v1.broadcast.", in: subject, tokens: 2) else { return nil }
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        return (String(parts[0]), String(parts[1]))
    }

    /// The last `tokens` non-empty tokens of `subject` after `prefix`, or nil.
    private static func token(after prefix: String, in subject: String, tokens: Int = 1) -> String? {
        guard subject.hasPrefix(prefix) else { return nil }
        let rest = subject.dropFirst(prefix.count)
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == tokens, parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        return String(rest)
    }

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
