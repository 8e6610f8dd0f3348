import Testing
import TroupePlacement

@testable import TroupeCluster

@Suite("Placement table")
struct PlacementTableTests {
    let placement: [String: Set<String>] = ["n1": ["cart", "order"], "n2": ["order"], "n3": []]

    @Test func aNamedActorIsPlacedAmongTheNodesServingItsTypeThisNodeIncluded() {
        let table = PlacementTable(placement: placement, localTypes: ["cart"], myself: "n0", myselfUp: true)
        #expect(Set(table.candidates(for: "cart", spawnFrom: "").nodes) == ["n0", "n1"])
        #expect(Set(table.candidates(for: "order", spawnFrom: "").nodes) == ["n1", "n2"])
    }

    @Test func thisNodeIsNoCandidateWhileItDoesNotKeepActors() {
        let table = PlacementTable(placement: placement, localTypes: ["cart"], myself: "n0", myselfUp: false)
        #expect(table.candidates(for: "cart", spawnFrom: "").nodes == ["n1"])
        #expect(Set(table.candidates(for: "spawned-1", spawnFrom: "cart").nodes) == ["n1", "n2"])
    }

    @Test func spawnsAndUnservedNamesGoAmongEveryNodeServingSomeType() {
        let table = PlacementTable(placement: placement, localTypes: ["cart"], myself: "n0", myselfUp: true)
        // n3 serves nothing, so nothing is placed there.
        #expect(Set(table.candidates(for: "cart-7", spawnFrom: "cart").nodes) == ["n0", "n1", "n2"])
        #expect(Set(table.candidates(for: "unknown", spawnFrom: "").nodes) == ["n0", "n1", "n2"])
        // A spawn named like a type is still a spawn.
        #expect(Set(table.candidates(for: "order", spawnFrom: "cart").nodes) == ["n0", "n1", "n2"])
    }

    @Test func noServingNodeMeansNoOwner() {
        let table = PlacementTable(placement: ["n3": []], localTypes: [], myself: "n0", myselfUp: true)
        #expect(table.candidates(for: "cart", spawnFrom: "").isEmpty)
        #expect(table.candidates(for: "cart", spawnFrom: "").owner(of: "sys/cart") == nil)
    }
}
