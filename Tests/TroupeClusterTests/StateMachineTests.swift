import NIOCore
import Testing
import TroupeProto
import TroupeWire

@testable import TroupeCluster

@Suite("Cluster state machines")
struct StateMachineTests {
    @Test func pendingCallsExpireInDeadlineOrderAndTellWhenTheTimerMustMoveForward() {
        var calls = PendingCalls<String>()
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let first = calls.insert(1, deadline: start + .seconds(3), "late")
        let earlier = calls.insert(2, deadline: start + .seconds(1), "early")
        let later = calls.insert(3, deadline: start + .seconds(2), "middle")
        #expect(first)
        #expect(earlier)
        #expect(!later)
        #expect(calls.earliestDeadline == start + .seconds(1))

        let due = calls.expire(now: start + .seconds(2))
        #expect(due.map(\.value) == ["early", "middle"])
        #expect(calls.count == 1)
        #expect(calls.contains(1))
        #expect(!calls.contains(2))
        #expect(calls.earliestDeadline == start + .seconds(3))
        #expect(calls.remove(1) == "late")
        #expect(calls.remove(1) == nil)
        #expect(calls.earliestDeadline == nil)
    }

    @Test func theEarliestDeadlineFollowsRemovalsOfTheEarliestCall() {
        var calls = PendingCalls<String>()
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        calls.insert(1, deadline: start + .seconds(1), "a")
        calls.insert(2, deadline: start + .seconds(1), "b")
        calls.insert(3, deadline: start + .seconds(4), "c")
        #expect(calls.remove(1) == "a")
        #expect(calls.earliestDeadline == start + .seconds(1))
        #expect(calls.remove(2) == "b")
        #expect(calls.earliestDeadline == start + .seconds(4))
        #expect(calls.expire(now: start + .seconds(2)).isEmpty)
        calls.insert(4, deadline: start + .seconds(3), "d")
        #expect(calls.earliestDeadline == start + .seconds(3))
        #expect(calls.remove(4) == "d")
        #expect(calls.earliestDeadline == start + .seconds(4))
    }

    @Test func pendingCallsAreAllFailedTogether() {
        var calls = PendingCalls<Int>()
        for id in 1...5 { calls.insert(UInt64(id), deadline: .now() + .seconds(10), id) }
        #expect(calls.removeAll().sorted() == [1, 2, 3, 4, 5])
        #expect(calls.isEmpty)
    }

    @Test func backoffDoublesUpToItsMaximumAndResetsAfterSuccess() {
        var backoff = ReconnectBackoff(initial: .milliseconds(50), maximum: .milliseconds(400))
        let delays = (0..<6).map { _ in backoff.failed(jitter: 0).nanoseconds / 1_000_000 }
        #expect(delays == [50, 100, 200, 400, 400, 400])
        #expect(backoff.failed(jitter: 1).nanoseconds / 1_000_000 == 300)
        backoff.succeeded()
        #expect(backoff.failed(jitter: 0).nanoseconds / 1_000_000 == 50)
    }

    @Test func handshakesOfAnotherSystemOrVersionOrWithoutANodeAreRefused() {
        var handshake = ClusterHandshake()
        handshake.protocolVersion = ClusterProtocol.version
        handshake.system = "tickets"
        handshake.node.name = "a"
        handshake.node.address = "127.0.0.1:1"
        #expect(ClusterProtocol.refusal(of: handshake, system: "tickets") == nil)

        let otherSystem = ClusterProtocol.refusal(of: handshake, system: "billing")
        #expect(otherSystem?.code == .failedPrecondition)
        #expect(otherSystem?.message.contains("billing") == true)

        var newer = handshake
        newer.protocolVersion = ClusterProtocol.version + 1
        let version = ClusterProtocol.refusal(of: newer, system: "tickets")
        #expect(version?.code == .failedPrecondition)
        #expect(version?.message.contains("version") == true)

        var anonymous = handshake
        anonymous.node.address = ""
        #expect(ClusterProtocol.refusal(of: anonymous, system: "tickets")?.code == .invalidArgument)
    }

    @Test func addressesSplitIntoHostAndPort() {
        #expect(ClusterTransport.split("127.0.0.1:7946")! == ("127.0.0.1", 7946))
        #expect(ClusterTransport.split("[::1]:80")! == ("::1", 80))
        #expect(ClusterTransport.split("nohost") == nil)
        #expect(ClusterTransport.split(":80") == nil)
        #expect(ClusterTransport.split("a:99999") == nil)
    }
}

@Suite("DNS discovery")
struct DNSDiscoveryTests {
    /// Every A record of the name is a peer. `localhost` resolves from /etc/hosts, so the test
    /// sends nothing to a DNS server.
    @Test func everyARecordOfANameIsReturned() {
        #expect(DNSDiscovery.addresses(of: "localhost").contains("127.0.0.1"))
    }
}
