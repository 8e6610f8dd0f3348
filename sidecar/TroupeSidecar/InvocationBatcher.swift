import Metrics
import NIOCore
import TroupeProto
import TroupeWire

/// Gathers the timer and reminder firings one host connection sends during an event-loop tick
/// and sends them as one `ActorInvocationBatch`: one frame, one pending request and one timeout
/// for all of them instead of one each. A timer heap hands out thousands of firings at once, and
/// per firing the frame machinery cost more than the host's action.
///
/// Lives on the connection's event loop; only ``HostSession`` creates it, and only for a host
/// whose Hello asked for batches.
final class InvocationBatcher {
    private struct Entry {
        var invocation: WireActorInvocation
        var promise: EventLoopPromise<WireActorInvocationResult>
    }

    /// How many invocations one batch carries at most, and what the Welcome announces.
    static let defaultMaxBatch = 512

    /// Batches sent, and the invocations they carried (their ratio is the mean batch size).
    private static let batches = Counter(label: "troupe_host_invocation_batches_total")
    private static let batched = Counter(label: "troupe_host_batched_invocations_total")

    private let connection: PeerConnection
    private let maxBatch: Int
    private var entries: [Entry] = []
    /// The longest timeout among `entries`: the batch waits as long as its most patient entry.
    private var timeout = TimeAmount.zero
    /// A rough upper bound of the batch's encoded size, to stay well under the peer's frame limit.
    private var estimatedBytes = 0
    private var flushScheduled = false

    init(connection: PeerConnection, maxBatch: Int) {
        self.connection = connection
        self.maxBatch = maxBatch
    }

    /// Queues `invocation` for the batch of this tick; the future completes with its own outcome.
    /// Nil for a large invocation, which goes alone, so that one big payload never pushes a batch
    /// over the frame limit.
    func add(_ invocation: WireActorInvocation, timeout: TimeAmount) -> EventLoopFuture<WireActorInvocationResult>? {
        let size = Self.estimatedSize(invocation)
        guard size <= Int(connection.peerMaxFrameBytes) / 16 else { return nil }
        let promise = connection.eventLoop.makePromise(of: WireActorInvocationResult.self)
        entries.append(Entry(invocation: invocation, promise: promise))
        self.timeout = max(self.timeout, timeout)
        estimatedBytes += size
        if entries.count >= maxBatch || estimatedBytes >= Int(connection.peerMaxFrameBytes) / 2 {
            flush()
        } else if !flushScheduled {
            flushScheduled = true
            // Behind every task already queued on the loop, so the firings of one wheel pass
            // and the turns they start all land in the same batch.
            connection.eventLoop.assumeIsolated().execute { [self] in
                flushScheduled = false
                flush()
            }
        }
        return promise.futureResult
    }

    private func flush() {
        guard !entries.isEmpty else { return }
        let sent = entries
        let timeout = self.timeout
        entries = []
        self.timeout = .zero
        estimatedBytes = 0
        if sent.count == 1 {
            single(sent[0], timeout: timeout)
            return
        }
        Self.batches.increment()
        Self.batched.increment(by: sent.count)
        let body: FrameBuffer
        do { body = try FrameBuffer.invocationBatch(sent.map(\.invocation)) } catch {
            let error = TroupeError.internalError("cannot encode a batch of invocations: \(error)")
            for entry in sent { entry.promise.fail(error) }
            return
        }
        connection.request(encoded: body, timeout: timeout).whenComplete { result in
            switch result {
            case .success(.actorBatchResult(let answer)) where answer.outcomes.count == sent.count:
                for (entry, outcome) in zip(sent, answer.outcomes) {
                    switch outcome.outcome {
                    case .result(let result)?: entry.promise.succeed(result)
                    case .failure(let failure)?: entry.promise.fail(TroupeError(failure))
                    case nil:
                        entry.promise.fail(TroupeError.internalError("the host's batch result left an outcome empty"))
                    }
                }
            case .success(.actorBatchResult(let answer)):
                let error = TroupeError.internalError(
                    "the host answered a batch of \(sent.count) invocations with \(answer.outcomes.count) outcomes")
                for entry in sent { entry.promise.fail(error) }
            case .success(let other):
                let error = TroupeError.internalError(
                    "the host answered an ActorInvocationBatch with \(other.kindName)")
                for entry in sent { entry.promise.fail(error) }
            case .failure(let error):
                // The whole request failed (deadline, connection closed, a Failure frame): so
                // does each of its invocations, with the same error.
                let error = TroupeError(wrapping: error)
                for entry in sent { entry.promise.fail(error) }
            }
        }
    }

    /// Sends a lone invocation as the plain frame it would have been without batching.
    private func single(_ entry: Entry, timeout: TimeAmount) {
        connection.request(.actorInvocation(entry.invocation), timeout: timeout).flatMapThrowing { answer in
            guard case .actorResult(let result) = answer else {
                throw TroupeError.internalError("the host answered an ActorInvocation with \(answer.kindName)")
            }
            return result
        }.cascade(to: entry.promise)
    }

    /// An upper bound of the encoded size, without encoding: the bytes of every variable field
    /// plus a generous allowance for tags, lengths and the fixed fields.
    private static func estimatedSize(_ invocation: WireActorInvocation) -> Int {
        var size = 128 + invocation.actor.name.utf8.count + invocation.actor.system.utf8.count
        size += invocation.actorType.utf8.count + invocation.action.utf8.count + invocation.timer.utf8.count
        size += invocation.payload.value.count + invocation.payload.typeURL.utf8.count
        size += invocation.state.value.count + invocation.state.typeURL.utf8.count
        for (key, value) in invocation.metadata { size += 8 + key.utf8.count + value.utf8.count }
        for (key, value) in invocation.tags { size += 8 + key.utf8.count + value.utf8.count }
        size += invocation.chain.id.utf8.count
        for hop in invocation.chain.path { size += 8 + hop.system.utf8.count + hop.name.utf8.count }
        return size
    }
}
