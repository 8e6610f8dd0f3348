import Logging
import Synchronization
import TroupeProto
import TroupeTracing

extension TroupeHost {
    /// Runs every invocation of a batch concurrently on the connection's event loop and answers
    /// with one outcome each, in the batch's order. A failed action fails its own outcome only.
    func serve(
        _ batch: WireActorInvocationBatch, id: UInt64, connection: PeerConnection, client: TroupeClient?
    ) {
        guard let client else {
            connection.fail(id, with: .unavailable("the host is still registering"))
            return
        }
        let invocations = batch.invocations
        running.wrappingAdd(1, ordering: .relaxed)
        // One unstructured task per batch, as `serve` uses one per invocation; shutdown waits
        // for `running` to reach zero.
        Task(executorPreference: client.executor) {
            defer { self.running.wrappingSubtract(1, ordering: .relaxed) }
            var answer = WireActorInvocationBatchResult()
            answer.outcomes = await withTaskGroup(of: (Int, WireActorInvocationOutcome).self) { group in
                for (index, invocation) in invocations.enumerated() {
                    // Children inherit the task's executor preference: they stay on the loop.
                    group.addTask { (index, await self.outcome(of: invocation, client: client)) }
                }
                var outcomes = [WireActorInvocationOutcome](
                    repeating: WireActorInvocationOutcome(), count: invocations.count)
                for await (index, outcome) in group { outcomes[index] = outcome }
                return outcomes
            }
            connection.respond(to: id, with: .actorBatchResult(answer))
        }
    }

    /// What one invocation of a batch comes to, as the outcome that answers it.
    private func outcome(of invocation: WireActorInvocation, client: TroupeClient) async -> WireActorInvocationOutcome {
        var outcome = WireActorInvocationOutcome()
        guard let actor = actors[invocation.actorType] else {
            outcome.failure = TroupeError.notFound("this host has no actor type '\(invocation.actorType)'").wire
            return outcome
        }
        do {
            outcome.result = try await CallChainScope.$current.withValue(invocation.chain) {
                try await actor.run(invocation, client.acting(as: invocation.actor.name, in: invocation.chain))
            }
        } catch let error as TroupeError {
            outcome.failure = error.wire
        } catch {
            outcome.failure = unexpected(error, of: invocation).wire
        }
        return outcome
    }

    /// An action threw something other than a `TroupeError`: logged here (the caller sees only
    /// the message), and sent as `unknown`.
    func unexpected(_ error: any Error, of invocation: WireActorInvocation) -> TroupeError {
        var metadata = TraceLogMetadata.metadata(of: invocation.metadata)
        metadata["troupe.actor_id"] = "\(invocation.actor.name)"
        metadata["troupe.action"] = "\(invocation.action)"
        metadata["troupe.error"] = "\(error)"
        logger.warning("action failed", metadata: metadata)
        return TroupeError(.unknown, "action '\(invocation.action)' failed: \(error)")
    }
}
