import NIOCore
import NIOEmbedded
import Testing
import TroupeProto
import TroupeStore
import TroupeWire

@testable import TroupeActors

/// A host the pool only places instances on; the pool itself never calls it.
private final class PlacementOnlyHost: ActorHost {
    let hostName: String
    let loop = EmbeddedEventLoop()
    var eventLoop: any EventLoop { loop }

    init(_ name: String) { hostName = name }

    func invoke(_ invocation: WireActorInvocation, timeout: TimeAmount) -> EventLoopFuture<WireActorInvocationResult> {
        loop.makeFailedFuture(TroupeError.unavailable("not used by the pool's decisions"))
    }
}

/// The pool's decisions, without processes or sockets: grow, queue, refuse, hand over, retire.
@Suite("ActorPool decisions")
struct ActorPoolTests {
    private func pool(min: UInt32, max: UInt32, capacity: UInt32, idleMs: UInt32 = 100) -> ActorPool {
        var definition = WireActorDefinition()
        definition.name = "worker"
        definition.kind = .pooled
        definition.poolMin = min
        definition.poolMax = max
        definition.mailboxCapacity = capacity
        definition.idleTimeoutMs = idleMs
        return ActorPool(
            info: ActorTypeInfo(definition: definition, defaultIdleTimeout: .seconds(300), defaultMailboxCapacity: 1024)
        )
    }

    private func call(_ action: String = "work") -> Call {
        Call(
            invocation: Invocation(
                actor: ActorKey(system: "s", name: "worker"), action: action, deadline: .now() + .seconds(30)),
            reply: Reply { _ in })
    }

    @Test func aPoolGrowsToItsMaximumThenQueuesUpToItsCapacityThenRefuses() {
        var pool = pool(min: 0, max: 2, capacity: 2)
        let hosts: [any ActorHost] = [PlacementOnlyHost("a"), PlacementOnlyHost("b")]
        var grown: [ActorPool.Growth] = []
        for _ in 0..<2 {
            guard case .grow(let growth) = pool.admit(call(), hosts: hosts) else {
                Issue.record("expected the pool to grow")
                return
            }
            grown.append(growth)
        }
        // New instances go to the hosts in turn.
        #expect(Set(grown.map { ObjectIdentifier($0.host) }).count == 2)
        for _ in 0..<2 {
            guard case .queued = pool.admit(call(), hosts: hosts) else {
                Issue.record("expected the call to wait")
                return
            }
        }
        guard case .refused(let error) = pool.admit(call(), hosts: hosts) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(error.code == .resourceExhausted)
        #expect(pool.wireInfo.instances == 2 && pool.wireInfo.busy == 2 && pool.wireInfo.queued == 2)
        #expect(pool.peak == 2 && pool.queuedTotal == 2)
    }

    @Test func anInstanceTakesItsHandedCallThenTheQueueOldestFirstThenGoesIdle() {
        var pool = pool(min: 0, max: 1, capacity: 4)
        let hosts: [any ActorHost] = [PlacementOnlyHost("a")]
        guard case .grow(let growth) = pool.admit(call("first"), hosts: hosts) else {
            Issue.record("expected the pool to grow")
            return
        }
        _ = pool.admit(call("second"), hosts: hosts)
        _ = pool.admit(call("third"), hosts: hosts)
        #expect(pool.next(for: growth.id)?.invocation.action == "first")
        #expect(pool.next(for: growth.id)?.invocation.action == "second")
        #expect(pool.next(for: growth.id)?.invocation.action == "third")
        #expect(pool.next(for: growth.id) == nil)
        #expect(pool.wireInfo.busy == 0 && pool.pendingCount == 0)
        // A retired or unknown instance gets nothing.
        #expect(pool.next(for: 999) == nil)
    }

    @Test func refillStartsTheMinimumAndAnInstancePerWaitingCallUpToTheMaximum() {
        var pool = pool(min: 2, max: 3, capacity: 8)
        let hosts: [any ActorHost] = [PlacementOnlyHost("a")]
        #expect(pool.refill(hosts: hosts).count == 2)
        #expect(pool.wireInfo.instances == 2 && pool.wireInfo.busy == 0)
        // Without hosts nothing can start.
        var empty = self.pool(min: 2, max: 3, capacity: 8)
        #expect(empty.refill(hosts: []).isEmpty)
    }

    @Test func aHostThatLeavesGivesBackTheCallsItsInstancesHadNotTakenAndTheRestWaitOrFail() throws {
        var pool = pool(min: 0, max: 1, capacity: 4)
        let first = PlacementOnlyHost("a")
        guard case .grow(let growth) = pool.admit(call("handed"), hosts: [first]) else {
            Issue.record("expected the pool to grow")
            return
        }
        _ = pool.admit(call("waiting"), hosts: [first])
        // Another host remains: the handed call goes back to the head of the queue.
        let second = PlacementOnlyHost("b")
        #expect(pool.remove(host: ObjectIdentifier(first), hostsLeft: true).isEmpty)
        #expect(pool.next(for: growth.id) == nil)
        let refilled = pool.refill(hosts: [second])
        #expect(refilled.count == 1)
        let replacement = try #require(refilled.first)
        #expect(pool.next(for: replacement.id)?.invocation.action == "handed")
        #expect(pool.next(for: replacement.id)?.invocation.action == "waiting")
        // No host left: the waiting calls come back to be failed.
        _ = pool.admit(call("stranded"), hosts: [second])
        let failed = pool.remove(host: ObjectIdentifier(second), hostsLeft: false)
        #expect(failed.map(\.invocation.action) == ["stranded"])
        #expect(pool.wireInfo.instances == 0)
    }
}
