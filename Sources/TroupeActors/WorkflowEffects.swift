import NIOCore
import TroupeProto
import TroupeStore
public import TroupeWire

/// The workflow effects an action may return besides its reply and state: a forward or a pipe
/// (someone else answers the caller), side effects (calls nobody waits for) and broadcasts.
enum WorkflowEffects {
    /// Checks every target before anything of the result is applied, so a malformed result
    /// changes nothing: the caller gets `invalidArgument` and the state stays as it was.
    static func validate(_ answer: WireActorInvocationResult) throws(TroupeError) {
        switch answer.route {
        case .forward(let target)?: try validate(target, as: "forward")
        case .pipe(let target)?: try validate(target, as: "pipe")
        case nil: break
        }
        for (index, effect) in answer.sideEffects.enumerated() {
            guard effect.hasTarget else { throw .invalidArgument("side effect \(index) has no target") }
            try validate(effect.target, as: "side effect \(index)")
        }
        for (index, broadcast) in answer.broadcasts.enumerated() {
            try SubjectToken.validate(broadcast.channel, as: "channel")
            guard !broadcast.action.isEmpty else {
                throw .invalidArgument("the action's broadcast \(index) on '\(broadcast.channel)' names no action")
            }
        }
        if answer.setTags.keys.contains(where: \.isEmpty) {
            throw .invalidArgument("the action sets a tag with an empty key")
        }
    }

    private static func validate(_ target: WireEffectTarget, as what: String) throws(TroupeError) {
        guard !target.actor.name.isEmpty, !target.action.isEmpty else {
            throw .invalidArgument("the action's \(what) needs an actor name and an action")
        }
    }
}

/// A name that must be one token of a NATS subject (a system or a channel).
public enum SubjectToken {
    /// - Throws: `invalidArgument` for an empty name or one with `.`, `*`, `>` or white space.
    public static func validate(_ value: String, as what: String) throws(TroupeError) {
        guard !value.isEmpty,
            !value.contains(where: { $0 == "." || $0 == "*" || $0 == ">" || $0.isWhitespace || $0.isNewline })
        else {
            throw .invalidArgument(
                "\(what) name '\(value)' cannot travel over NATS: it must be non-empty, without '.', '*', '>' or spaces",
                details: [what: value])
        }
    }
}

extension WireActorId {
    init(_ key: ActorKey) {
        self.init()
        system = key.system
        name = key.name
    }
}

extension WireCallChain {
    /// The chain one step on, through an effect (forward, pipe, side effect, broadcast) of
    /// `actor`: one more hop. A forward or pipe keeps the chain's id, since the caller still
    /// waits on it. A side effect or broadcast starts a chain of its own (an empty id gets a new
    /// one): nobody waits for it, so it cannot deadlock the chain that started it, and sharing
    /// the id would refuse calls that merely run at the same time as that chain.
    func continued(by actor: ActorKey, keepingID: Bool) -> WireCallChain {
        var next = self
        if !keepingID { next.id = "" }
        if next.path.last.map({ $0.system != actor.system || $0.name != actor.name }) ?? true {
            next.path.append(WireActorId(actor))
        }
        next.hops += 1
        return next
    }

    /// "a → b → a": the chain's path followed by `target`, for messages to people; a long path
    /// shows its first and last steps.
    func rendered(then target: ActorKey) -> String {
        var names = path.map { $0.system == target.system ? $0.name : "\($0.system)/\($0.name)" } + [target.name]
        if names.count > 9 { names = names.prefix(4) + ["…"] + names.suffix(4) }
        return names.joined(separator: " → ")
    }
}

extension Invocation {
    /// The call a forward, pipe or side effect of `actor` makes while serving `origin`: it carries
    /// the origin's metadata with the target's own on top, names `actor` as its caller, and
    /// continues the origin's call chain (see ``WireCallChain/continued(by:keepingID:)``).
    init(
        effect target: WireEffectTarget, of origin: Invocation, by actor: ActorKey, payload: WirePayload,
        deadline: NIODeadline, sameChain: Bool
    ) {
        self.init(
            actor: ActorKey(
                system: target.actor.system.isEmpty ? actor.system : target.actor.system, name: target.actor.name),
            action: target.action, payload: payload,
            metadata: origin.metadata.merging(target.metadata) { _, own in own }, caller: WireActorId(actor),
            deadline: deadline, spawnFrom: target.spawnFrom)
        self.chain = origin.chain.continued(by: actor, keepingID: sameChain)
    }
}
