import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// Call chains against a real sidecar and SDK host: a call that comes back into a running turn
/// (A → B → A), refused or interleaved, and the hop limit that ends forward and pipe loops.
@Suite("Reentrancy and the hop limit", .serialized)
struct ReentrancyTests {
    /// The deadline the bouncer gives its call back into the first actor (Bouncer in TestActors):
    /// a call that waited for the running turn would fail at it with `deadlineExceeded`.
    static let callBackTimeout = Duration.seconds(10)

    @Test func aCallBackIntoAStrictActorsTurnIsRefusedAtOnceWithFailedPrecondition() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let clock = ContinuousClock()
            let started = clock.now
            let error = await expectCode(.failedPrecondition) {
                let _: Int = try await client.invoke(
                    "strict-loop", action: "add-one-and-bounce", "count", timeout: .seconds(30))
            }
            let elapsed = clock.now - started
            // Refused, not waited out: well inside the deadline of the call that came back.
            #expect(elapsed < Self.callBackTimeout, "took \(elapsed)")
            #expect(
                error?.message.contains("strict-loop → bouncer → strict-loop") == true, "\(String(describing: error))")
            #expect(error?.message.contains("not reentrant") == true)
            // The turn that failed stored nothing, and the actor serves the next call.
            #expect(try await client.invoke("strict-loop", action: "count", as: Int.self) == 0)
            #expect(try await client.invoke("strict-loop", action: "add-ten", as: Int.self) == 10)
            await client.close()
        }
    }

    @Test func aCallBackIntoAReentrantActorsTurnRunsInterleavedAndItsStateIsKept() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            #expect(try await client.invoke("reentrant-loop", action: "add-ten", as: Int.self) == 10)
            // The outer turn leaves the state alone; the call back into it adds ten.
            #expect(try await client.invoke("reentrant-loop", action: "bounce", "add-ten", as: Int.self) == 20)
            #expect(try await client.invoke("reentrant-loop", action: "count", as: Int.self) == 20)
            // The outer turn adds one; the call back only reads, and sees the state before the turn.
            #expect(
                try await client.invoke("reentrant-loop", action: "add-one-and-bounce", "count", as: Int.self) == 20)
            #expect(try await client.invoke("reentrant-loop", action: "count", as: Int.self) == 21)
            await client.close()
        }
    }

    @Test func anOuterTurnWhoseStateAnInterleavedCallChangedIsAbortedAndTheInterleavedWriteStands() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            // Both the outer turn (+1) and the call back into it (+10) change the state: storing
            // the outer one would silently lose the +10, so the outer call is refused instead.
            let error = await expectCode(.aborted) {
                let _: Int = try await client.invoke(
                    "reentrant-loop", action: "add-one-and-bounce", "add-ten", timeout: .seconds(30))
            }
            #expect(error?.message.contains("reentrant call") == true, "\(String(describing: error))")
            #expect(try await client.invoke("reentrant-loop", action: "count", as: Int.self) == 10)
            await client.close()
        }
    }

    @Test func anActorCallingItselfIsRefusedWhenStrictAndStopsAtTheCallDepthLimitWhenReentrant() async throws {
        try await withSidecar(configure: { $0.maxCallDepth = 5 }) { sidecar in
            let client = try await sidecar.client()
            let strict = await expectCode(.failedPrecondition) {
                let _: Int = try await client.invoke("strict-loop", action: "recurse", timeout: .seconds(30))
            }
            #expect(
                strict?.message.contains("strict-loop → strict-loop refused") == true, "\(String(describing: strict))")
            // Each level is interleaved into the one before; the sixth is one too deep.
            let deep = await expectCode(.resourceExhausted) {
                let _: Int = try await client.invoke("reentrant-loop", action: "recurse", timeout: .seconds(30))
            }
            #expect(
                deep?.message.contains("is 6 calls deep, more than max-call-depth (5)") == true,
                "\(String(describing: deep))")
            #expect(deep?.details["max_call_depth"] == "5")
            await client.close()
        }
    }

    @Test func aForwardLoopEndsAtTheDefaultHopLimitWithResourceExhausted() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let error = await expectCode(.resourceExhausted) {
                let _: Int = try await client.invoke("spinner", action: "forward-spin", timeout: .seconds(30))
            }
            #expect(error?.message.contains("max-forward-hops (32)") == true, "\(String(describing: error))")
            #expect(error?.details["max_forward_hops"] == "32")
            // The first turn and 32 forwarded ones ran; the 33rd forward was refused.
            #expect(try await client.invoke("spinner", action: "count", as: Int.self) == 33)
            await client.close()
        }
    }

    @Test func aPipeLoopEndsAtTheConfiguredHopLimit() async throws {
        try await withSidecar(configure: { $0.maxForwardHops = 5 }) { sidecar in
            let client = try await sidecar.client()
            await expectCode(.resourceExhausted) {
                let _: Int = try await client.invoke("spinner", action: "pipe-spin", 0, timeout: .seconds(30))
            }
            #expect(try await client.invoke("spinner", action: "count", as: Int.self) == 6)
            await client.close()
        }
    }

    @Test func aCallBackThroughAnotherActorSystemIsRefusedAtOnceToo() async throws {
        try await withTwoSystems { _, alpha, _ in
            let client = try await alpha.client()
            let clock = ContinuousClock()
            let started = clock.now
            // alpha's strict-loop → beta's bouncer → alpha's strict-loop, over the NATS bridge.
            let error = await expectCode(.failedPrecondition) {
                let _: Int = try await client.invoke(
                    "strict-loop", action: "add-one-and-bounce-in", "beta", timeout: .seconds(30))
            }
            #expect(clock.now - started < Self.callBackTimeout)
            #expect(
                error?.message.contains("strict-loop → beta/bouncer → strict-loop") == true,
                "\(String(describing: error))")
            #expect(try await client.invoke("strict-loop", action: "count", as: Int.self) == 0)
            await client.close()
        }
    }
}
