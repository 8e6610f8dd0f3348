import NIOCore
import TroupeProto
import TroupeStore
import TroupeWire

/// The workflow effects an action may return besides its reply and state: a forward or a pipe
/// (someone else answers the caller) and side effects (calls nobody waits for).
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
    }

    private static func validate(_ target: WireEffectTarget, as what: String) throws(TroupeError) {
        guard !target.actor.name.isEmpty, !target.action.isEmpty else {
            throw .invalidArgument("the action's \(what) needs an actor name and an action")
        }
    }
}

extension Invocation {
    /// The call a forward, pipe or side effect of `actor` makes while serving `origin`: it carries
    /// the origin's metadata with the target's own on top, and names `actor` as its caller.
    init(
        effect target: WireEffectTarget, of origin: Invocation, by actor: ActorKey, payload: WirePayload,
        deadline: NIODeadline
    ) {
        var caller = WireActorId()
        caller.system = actor.system
        caller.name = actor.name
        self.init(
            actor: ActorKey(
                system: target.actor.system.isEmpty ? actor.system : target.actor.system, name: target.actor.name),
            action: target.action, payload: payload,
            metadata: origin.metadata.merging(target.metadata) { _, own in own }, caller: caller, deadline: deadline,
            spawnFrom: target.spawnFrom)
    }
}
