import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing
import TroupeCluster
import TroupeMembership
import TroupeTestSupport
import TroupeWire

/// A DNS lookup that answers at once the first `answered` times, then hangs (as `getaddrinfo`
/// does with a resolver that does not answer) until released, 30 s at most.
final class HangingLookup: Sendable {
    private let answered: Int
    private let calls = Atomic<Int>(0)
    private let hanging = Atomic<Int>(0)
    private let released = Atomic<Bool>(false)

    init(answered: Int = 1) { self.answered = answered }

    func lookup(_ name: String) -> [String] {
        guard calls.wrappingAdd(1, ordering: .relaxed).newValue > answered else { return [] }
        hanging.wrappingAdd(1, ordering: .relaxed)
        defer { hanging.wrappingSubtract(1, ordering: .relaxed) }
        let deadline = ContinuousClock.now + .seconds(30)
        while !released.load(ordering: .relaxed), ContinuousClock.now < deadline { usleep(10_000) }
        return []
    }

    /// A lookup is waiting now.
    var isHanging: Bool { hanging.load(ordering: .relaxed) > 0 }

    func release() { released.store(true, ordering: .relaxed) }
}

@Suite("Cluster discovery with a DNS resolver that does not answer")
struct DiscoveryTests {
    @Test func aHangingDNSLookupDoesNotHoldUpTheFailureDetector() async throws {
        var logger = Logger(label: "test.discovery")
        logger.logLevel = .critical
        try await withNodes(["a", "b"]) { nodes in
            let lookup = HangingLookup()
            defer { lookup.release() }
            var watching = ClusterMembership.Configuration()
            watching.seeds = [nodes[1].identity.address]
            watching.dnsName = "peers.troupe.test"
            watching.dnsLookup = { lookup.lookup($0) }
            watching.discoveryInterval = .milliseconds(100)
            let a = ClusterMembership(
                configuration: watching, transport: nodes[0].transport, localTypes: { [] }, logger: logger)
            let b = ClusterMembership(
                configuration: .init(), transport: nodes[1].transport, localTypes: { [] }, logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await a.run() }
                group.addTask { try await b.run() }
                defer { group.cancelAll() }
                try await waitFor("a to see b up") {
                    a.members.contains { $0.node == nodes[1].identity && $0.status == .up }
                }
                try await waitFor("the periodic DNS lookup to hang") { lookup.isHanging }

                // b falls silent without a farewell: only a's failure detector can tell.
                nodes[1].stop()
                try await waitFor("a to declare b down while the lookup hangs", timeout: .seconds(15)) {
                    a.members.contains { $0.node == nodes[1].identity && $0.status == .down }
                }
                #expect(lookup.isHanging)
            }
        }
    }

    @Test func aNodeWhoseFirstDNSLookupHangsStillShutsDownAtOnce() async throws {
        var logger = Logger(label: "test.discovery")
        logger.logLevel = .critical
        try await withNodes(["a"]) { nodes in
            let lookup = HangingLookup(answered: 0)
            defer { lookup.release() }
            var configuration = ClusterMembership.Configuration()
            configuration.dnsName = "peers.troupe.test"
            configuration.dnsLookup = { lookup.lookup($0) }
            let a = ClusterMembership(
                configuration: configuration, transport: nodes[0].transport, localTypes: { [] }, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [a], logger: logger))
            let running = Task { try await group.run() }
            try await waitFor("the first DNS lookup to hang") { lookup.isHanging }
            await group.triggerGracefulShutdown()
            try await running.value
            #expect(lookup.isHanging, "run() waited for the lookup to give up")
        }
    }
}
