import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// Broadcasts returned by an action as a workflow effect, against a real sidecar and SDK host.
@Suite("Broadcast as a workflow effect")
struct BroadcastEffectTests {
    @Test func aBroadcastFromAnActionReachesEverySubscriberExactlyOnce() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            for number in 1...5 {
                #expect(try await client.invoke("announcer", action: "announce", number, as: Int.self) == number)
            }
            // A last broadcast marks the end: each listener's calls queue in the order they were
            // sent, so when the marker has arrived every earlier broadcast, and any copy of one,
            // arrived before it.
            #expect(try await client.invoke("announcer", action: "announce", 0, as: Int.self) == 0)
            let counters = ["tick-counter-1", "tick-counter-2"]
            for counter in counters {
                try await waitFor("\(counter) to hear the marker") {
                    try await client.invoke(counter, action: "log", as: TickLog.self).numbers.contains(0)
                }
                let log: TickLog = try await client.invoke(counter, action: "log")
                #expect(log.numbers == [1, 2, 3, 4, 5, 0], "\(counter)")
                // The listeners see the announcer as their caller, and the broadcast's header.
                #expect(log.callers == ["test/announcer"])
                #expect(log.headers == ["yes"])
            }
            await client.close()
        }
    }

    @Test func anActionWithAnInvalidBroadcastIsRefusedAndNothingIsSent() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.invalidArgument) {
                let _: Int = try await client.invoke("announcer", action: "announce-badly", 7)
            }
            #expect(try await client.invoke("announcer", action: "announce", 8, as: Int.self) == 8)
            try await waitFor("the valid broadcast") {
                try await client.invoke("tick-counter-1", action: "log", as: TickLog.self).numbers.contains(8)
            }
            #expect(try await client.invoke("tick-counter-1", action: "log", as: TickLog.self).numbers == [8])
            await client.close()
        }
    }

    @Test func aBroadcastFromAnActionReachesTheSubscribersOfEverySystemOverTheBridge() async throws {
        try await withTwoSystems { _, alpha, beta in
            let fromAlpha = try await alpha.client()
            let fromBeta = try await beta.client()
            #expect(try await fromAlpha.invoke("announcer", action: "announce", 1, as: Int.self) == 1)
            #expect(try await fromAlpha.invoke("announcer", action: "announce", 2, as: Int.self) == 2)
            for (client, system) in [(fromAlpha, "alpha"), (fromBeta, "beta")] {
                for counter in ["tick-counter-1", "tick-counter-2"] {
                    try await waitFor("\(counter) of \(system) to hear both broadcasts") {
                        try await client.invoke(counter, action: "log", as: TickLog.self).numbers.count >= 2
                    }
                    let log: TickLog = try await client.invoke(counter, action: "log")
                    #expect(log.numbers == [1, 2], "\(counter) of \(system)")
                    // Across the bridge too, the listener sees the announcing actor of alpha.
                    #expect(log.callers == ["alpha/announcer"], "\(counter) of \(system)")
                    #expect(log.headers == ["yes"])
                }
            }
            await fromAlpha.close()
            await fromBeta.close()
        }
    }
}
