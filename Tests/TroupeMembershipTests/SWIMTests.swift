import Testing
import TroupeMembership
import TroupePlacement

@Suite("SWIM membership on a simulated network")
struct SWIMTests {
    let a = SimulatedCluster.identity("node-a")
    let b = SimulatedCluster.identity("node-b")
    let c = SimulatedCluster.identity("node-c")

    func formed() -> SimulatedCluster {
        var cluster = SimulatedCluster()
        cluster.add(a)
        cluster.add(b, joining: a)
        cluster.add(c, joining: a)
        return cluster
    }

    func allSee(
        _ cluster: SimulatedCluster, _ member: NodeIdentity, as status: MemberStatus, among observers: [NodeIdentity]
    ) -> Bool {
        observers.allSatisfy { cluster.status(of: member, seenBy: $0) == status }
    }

    @Test func aLoneNodeBecomesUp() {
        var cluster = SimulatedCluster()
        cluster.add(a)
        cluster.run(for: 100)
        #expect(cluster.nodes[a]?.myself.status == .up)
    }

    @Test func threeNodesJoinThroughOneSeedAndAllSeeEachOtherUp() {
        var cluster = formed()
        let took = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { member in allSee(cluster, member, as: .up, among: [a, b, c]) }
        }
        #expect(took != nil, "members: \(cluster.nodes.mapValues(\.members))")
        // Every node then computes the same placement.
        let owners = [a, b, c].map { node in
            RendezvousPlacement.owner(of: "tickets/concert-1", among: cluster.nodes[node]!.upMembers.map(\.name))
        }
        #expect(Set(owners).count == 1)
    }

    @Test func aKilledNodeIsDeclaredDownByEveryoneWithinTheDetectorsBound() {
        var cluster = formed()
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.dead.insert(c)
        let took = cluster.run(until: 10_000) { allSee($0, c, as: .down, among: [a, b]) }
        let bound = SWIM.Settings()
        // Worst case: a full probe round over the others, both probe timeouts, then the suspicion.
        let limit = 2 * bound.probeInterval + bound.pingTimeout + bound.indirectTimeout + bound.suspicionTimeout + 100
        #expect(took != nil)
        #expect((took ?? .max) <= limit, "took \(took ?? -1) ms, bound \(limit) ms")
        #expect(cluster.changes.contains { $0.member.node == c && $0.member.status == .suspect })
    }

    @Test func aBrokenDirectLinkIsBridgedByIndirectProbes() {
        var cluster = formed()
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.cut = [[a, c], [c, a]]
        cluster.run(for: 8000)
        #expect(allSee(cluster, c, as: .up, among: [a, b]))
        #expect(allSee(cluster, a, as: .up, among: [b, c]))
        #expect(!cluster.changes.contains { $0.member.status == .down })
    }

    @Test func aPausedNodeThatComesBackInTimeRefutesSuspicion() {
        var cluster = formed()
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.paused.insert(c)
        _ = cluster.run(until: 5000) { cluster in
            cluster.status(of: c, seenBy: a) == .suspect || cluster.status(of: c, seenBy: b) == .suspect
        }
        cluster.paused.remove(c)
        let took = cluster.run(until: 3000) { allSee($0, c, as: .up, among: [a, b]) }
        #expect(took != nil)
        #expect((cluster.nodes[c]?.myself.incarnation ?? 0) >= 1)
        #expect(!cluster.changes.contains { $0.member.node == c && $0.member.status == .down })
    }

    @Test func aSuspectThatResumesAfterTheRumorDiedDownLearnsItFromTheNextPingAndRefutes() {
        var cluster = SimulatedCluster()
        // Long enough for the suspicion to stop travelling as gossip before it could end.
        cluster.settings.suspicionTimeout = 60_000
        cluster.add(a)
        cluster.add(b, joining: a)
        cluster.add(c, joining: a)
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.paused.insert(c)
        let suspected = cluster.run(until: 5000) { allSee($0, c, as: .suspect, among: [a, b]) }
        #expect(suspected != nil)
        cluster.run(for: 10_000)
        cluster.paused.remove(c)
        let took = cluster.run(until: 3000) { allSee($0, c, as: .up, among: [a, b]) }
        #expect(took != nil, "c is still suspect: nobody told it")
        #expect((cluster.nodes[c]?.myself.incarnation ?? 0) >= 1)
    }

    @Test func aNodeThatStallsReadsTheRefutationWaitingForItBeforeItsSuspicionEnds() {
        func stallWhileTheSuspectRefutes(stallThreshold: Int64) -> SimulatedCluster {
            var cluster = SimulatedCluster()
            cluster.settings.stallThreshold = stallThreshold
            cluster.add(a)
            cluster.add(b, joining: a)
            cluster.add(c, joining: a)
            _ = cluster.run(until: 5000) { cluster in
                [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
            }
            cluster.paused.insert(c)
            _ = cluster.run(until: 5000) { allSee($0, c, as: .suspect, among: [a, b]) }
            // a stops running for longer than the suspicion lasts; meanwhile c is back and
            // refutes, and what c and b tell a waits in a's sockets.
            cluster.stall(a)
            cluster.paused.remove(c)
            cluster.run(for: 1200)
            cluster.resume(a)
            cluster.run(for: 1000)
            return cluster
        }
        let guarded = stallWhileTheSuspectRefutes(stallThreshold: SWIM.Settings().stallThreshold)
        #expect(!guarded.changes.contains { $0.member.node == c && $0.member.status == .down })
        #expect(allSee(guarded, c, as: .up, among: [a, b]))
        #expect(guarded.nodes[c]?.myself.status == .up)
        // The same stall, the guard off: a's first tick ends the suspicion before a reads the refutation.
        let unguarded = stallWhileTheSuspectRefutes(stallThreshold: .max)
        #expect(unguarded.changes.contains { $0.observer == a && $0.member.node == c && $0.member.status == .down })
    }

    @Test func aNodeWhoseEveryTickIsLateStillDeclaresADeadMemberDown() {
        var cluster = SimulatedCluster()
        cluster.add(a)
        cluster.add(b, joining: a)
        _ = cluster.run(until: 5000) { allSee($0, a, as: .up, among: [b]) && allSee($0, b, as: .up, among: [a]) }
        cluster.dead.insert(b)
        // a runs only every 400 ms from now on, so each of its ticks is a stall; nobody else can tell it.
        var took: Int64?
        for round in 1...50 {
            cluster.stall(a)
            cluster.run(for: 400)
            cluster.resume(a)
            if cluster.status(of: b, seenBy: a) == .down {
                took = Int64(round) * 400
                break
            }
        }
        #expect(took != nil, "a never declared the dead b down")
        #expect((took ?? .max) <= 5000, "took \(took ?? -1) ms")
    }

    @Test func aPausedNodeDeclaredDownLearnsItWhenItResumesAndDownsNobodyElse() {
        var cluster = formed()
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.paused.insert(c)
        let declared = cluster.run(until: 10_000) { allSee($0, c, as: .down, among: [a, b]) }
        #expect(declared != nil)
        cluster.paused.remove(c)
        let learned = cluster.run(until: 5000) { $0.nodes[c]?.myself.status == .down }
        #expect(learned != nil, "c still believes it is \(cluster.nodes[c]?.myself.status.description ?? "?")")
        // It never got to declare the others down, and they stay up for each other.
        #expect(!cluster.changes.contains { $0.observer == c && $0.member.node != c && $0.member.status == .down })
        #expect(allSee(cluster, a, as: .up, among: [b]) && allSee(cluster, b, as: .up, among: [a]))
    }

    @Test func aRestartedNodeReplacesItsOldIncarnation() {
        var cluster = formed()
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.dead.insert(c)
        let restarted = SimulatedCluster.identity("node-c", uid: 2)
        cluster.add(restarted, joining: a)
        let took = cluster.run(until: 5000) { cluster in
            allSee(cluster, restarted, as: .up, among: [a, b]) && allSee(cluster, c, as: .down, among: [a, b])
        }
        #expect(took != nil, "members: \(cluster.nodes[a]?.members ?? [])")
        #expect(cluster.nodes[a]?.upMembers.filter { $0.name == "node-c" } == [restarted])
    }

    @Test func aLeavingNodeIsSeenLeavingThenDownWithoutSuspicion() {
        var cluster = formed()
        _ = cluster.run(until: 5000) { cluster in
            [a, b, c].allSatisfy { allSee(cluster, $0, as: .up, among: [a, b, c]) }
        }
        cluster.deliver(cluster.nodes[c]!.leave(), from: c)
        #expect(allSee(cluster, c, as: .leaving, among: [a, b]))
        #expect(cluster.nodes[a]?.upMembers.contains(c) == false)
        cluster.deliver(cluster.nodes[c]!.depart(), from: c)
        cluster.dead.insert(c)
        #expect(allSee(cluster, c, as: .down, among: [a, b]))
        #expect(!cluster.changes.contains { $0.member.node == c && $0.member.status == .suspect })
    }

    @Test func statusPrecedenceFollowsIncarnationThenLifecycle() {
        let node = SimulatedCluster.identity("x")
        let up1 = Member(node: node, status: .up, incarnation: 1)
        #expect(Member(node: node, status: .suspect, incarnation: 1).supersedes(up1))
        #expect(!Member(node: node, status: .suspect, incarnation: 0).supersedes(up1))
        #expect(
            Member(node: node, status: .up, incarnation: 2).supersedes(
                Member(node: node, status: .suspect, incarnation: 1)))
        #expect(
            !Member(node: node, status: .up, incarnation: 9).supersedes(
                Member(node: node, status: .down, incarnation: 1)))
        #expect(Member(node: node, status: .down, incarnation: 0).supersedes(up1))
    }
}
