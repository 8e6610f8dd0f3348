import Testing
import TroupePlacement

@Suite("Rendezvous placement")
struct RendezvousPlacementTests {
    let keys = (0..<10_000).map { "tickets/actor-\($0)" }

    @Test func theHashIsStableAcrossProcessesAndVersions() {
        // Pinned values: a change here means nodes of different builds would disagree on owners.
        #expect(StableHash.hash("") == StableHash.mix(0xcbf2_9ce4_8422_2325))
        #expect(StableHash.hash("node-a") == StableHash.hash("node-a"))
        #expect(StableHash.hash("node-a") != StableHash.hash("node-b"))
        #expect(StableHash.mix(0) == 0xe220_a839_7b1d_cdaf)
    }

    @Test func everyNodeComputesTheSameOwnerWhateverTheOrderOfMembers() {
        let nodes = ["node-a", "node-b", "node-c", "node-d"]
        for key in keys.prefix(500) {
            let owner = RendezvousPlacement.owner(of: key, among: nodes)
            #expect(RendezvousPlacement.owner(of: key, among: nodes.reversed()) == owner)
            #expect(RendezvousPlacement.owner(of: key, among: nodes.shuffled()) == owner)
            #expect(RendezvousPlacement.ranking(of: key, among: nodes.shuffled()).first == owner)
        }
    }

    @Test func candidatesHashedOnceAnswerAsTheFullRanking() {
        let nodes = ["node-a", "node-b", "node-c", "node-d", "node-e"]
        let candidates = RendezvousCandidates(nodes)
        #expect(candidates.nodes == nodes)
        for key in keys.prefix(500) {
            #expect(candidates.owner(of: key) == RendezvousPlacement.ranking(of: key, among: nodes).first)
        }
        #expect(RendezvousCandidates([String]()).owner(of: "x") == nil)
    }

    @Test func noNodesMeansNoOwner() {
        #expect(RendezvousPlacement.owner(of: "x", among: [String]()) == nil)
    }

    @Test func actorsSpreadEvenlyOverNodes() {
        let nodes = ["node-a", "node-b", "node-c", "node-d"]
        var counts: [String: Int] = [:]
        for key in keys { counts[RendezvousPlacement.owner(of: key, among: nodes)!, default: 0] += 1 }
        for node in nodes {
            // 2,500 expected each; ±10% is far outside chance for 10,000 keys.
            #expect((2250...2750).contains(counts[node] ?? 0), "\(node) owns \(counts[node] ?? 0)")
        }
    }

    @Test func aJoinMovesAboutOneNthAndOnlyToTheNewNode() {
        let before = ["node-a", "node-b", "node-c"]
        let after = before + ["node-d"]
        var moved = 0
        for key in keys {
            let old = RendezvousPlacement.owner(of: key, among: before)
            let new = RendezvousPlacement.owner(of: key, among: after)
            if old != new {
                moved += 1
                #expect(new == "node-d", "\(key) moved between two old nodes")
            }
        }
        // 1/4 of 10,000 expected.
        #expect((2200...2800).contains(moved), "\(moved) moved")
    }

    @Test func aLeaveMovesExactlyTheLeaversActors() {
        let before = ["node-a", "node-b", "node-c", "node-d"]
        let after = ["node-a", "node-b", "node-d"]
        for key in keys {
            let old = RendezvousPlacement.owner(of: key, among: before)
            let new = RendezvousPlacement.owner(of: key, among: after)
            if old != "node-c" {
                #expect(new == old, "\(key) moved although its owner stayed")
            } else {
                #expect(new == RendezvousPlacement.ranking(of: key, among: before)[1])
            }
        }
    }
}
