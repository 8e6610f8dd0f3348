public import TroupeWire

/// Which other ActorSystems may call which actor types and actions of this system, and
/// broadcast on which channels, over the bridge (docs/bridge.md, "Authorization").
///
/// It is read from two rule strings, one per kind of message, each a `;`-separated list of
/// `CALLER:ITEM,ITEM,...` entries:
///
/// ```
/// calls:      billing:account/deposit,account/get; *:echo/*
/// broadcasts: billing:prices; *:news
/// ```
///
/// `CALLER` is a system name or `*` (every system). A call item is `TYPE/ACTION`, where either
/// part may be `*`; a broadcast item is a channel name or `*`. Whatever no entry allows is denied.
public struct BridgePolicy: Sendable, Equatable {
    struct Call: Sendable, Equatable {
        var type: String
        var action: String
    }

    private var calls: [String: [Call]] = [:]
    private var channels: [String: [String]] = [:]

    /// A policy from the two rule strings; an empty string allows nothing of its kind.
    ///
    /// - Throws: `invalidArgument` naming the entry that is wrong and why.
    public init(calls: String, broadcasts: String) throws(TroupeError) {
        for (caller, items) in try Self.entries(calls, "calls") {
            for item in items {
                let parts = item.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2 else {
                    throw .invalidArgument(
                        "call rule '\(item)' of '\(caller)' must be TYPE/ACTION (either may be *)",
                        details: ["rule": item])
                }
                try Self.checkName(parts[0], "actor type", in: item)
                try Self.checkName(parts[1], "action", in: item)
                self.calls[caller, default: []].append(Call(type: parts[0], action: parts[1]))
            }
        }
        for (caller, items) in try Self.entries(broadcasts, "broadcasts") {
            for item in items {
                if item != "*" {
                    do { try BridgeSubjects.validate(channel: item) } catch {
                        throw .invalidArgument(
                            "broadcast rule of '\(caller)': \(error.message)", details: ["rule": item])
                    }
                }
                channels[caller, default: []].append(item)
            }
        }
    }

    /// This policy with the call rules and channels of `other` added.
    public func merging(_ other: BridgePolicy) -> BridgePolicy {
        var merged = self
        merged.calls.merge(other.calls, uniquingKeysWith: +)
        merged.channels.merge(other.channels, uniquingKeysWith: +)
        return merged
    }

    /// Whether system `caller` may invoke `action` on an actor of type `type`.
    public func allowsCall(from caller: String, type: String, action: String) -> Bool {
        for rules in [calls[caller], calls["*"]] {
            for rule in rules ?? []
            where (rule.type == "*" || rule.type == type) && (rule.action == "*" || rule.action == action) {
                return true
            }
        }
        return false
    }

    /// Whether system `caller` may broadcast on `channel` to this system's listeners.
    public func allowsBroadcast(from caller: String, channel: String) -> Bool {
        for rules in [channels[caller], channels["*"]]
        where rules?.contains(where: { $0 == "*" || $0 == channel }) == true {
            return true
        }
        return false
    }

    /// `CALLER:ITEM,...` entries of `text`, in order; empty entries (a trailing `;`) are skipped.
    private static func entries(_ text: String, _ what: String) throws(TroupeError) -> [(String, [String])] {
        var result: [(String, [String])] = []
        for entry in text.split(separator: ";") {
            let entry = trimmed(entry)
            if entry.isEmpty { continue }
            let halves = entry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard halves.count == 2 else {
                throw .invalidArgument(
                    "\(what) entry '\(entry)' must be CALLER:RULE,RULE,... (CALLER a system or *)",
                    details: ["entry": entry])
            }
            let caller = trimmed(halves[0])
            if caller != "*" {
                do { try BridgeSubjects.validate(system: caller) } catch {
                    throw .invalidArgument("\(what) entry '\(entry)': \(error.message)", details: ["entry": entry])
                }
            }
            let items = halves[1].split(separator: ",", omittingEmptySubsequences: false).map(trimmed)
            guard !items.contains(where: \.isEmpty) else {
                throw .invalidArgument(
                    "\(what) entry '\(entry)' has an empty rule: list at least one, separated by ','",
                    details: ["entry": entry])
            }
            result.append((caller, items))
        }
        return result
    }

    /// A type or action of a rule: `*`, or a name without spaces, `*` inside, `:`, `;` or `,`.
    private static func checkName(_ name: String, _ what: String, in item: String) throws(TroupeError) {
        guard
            name == "*"
                || (!name.isEmpty && !name.contains(where: { $0.isWhitespace || "*:;,/".contains($0) }))
        else {
            throw .invalidArgument(
                "call rule '\(item)': the \(what) '\(name)' must be a name or *", details: ["rule": item])
        }
    }
}

/// `text` without white space at either end.
private func trimmed(_ text: Substring) -> String {
    String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
}
