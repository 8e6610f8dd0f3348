import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport

/// Forwards, pipes and side effects returned by actions, against a real sidecar and SDK host.
@Suite("Workflow effects: forward, pipe, side effects", .serialized)
struct WorkflowEffectTests {
    @Test func forwardChainRepliesWithTheLastActorsReplyAndCarriesMetadataAndCaller() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let report: ChainReport = try await client.invoke(
                "chain-a", action: "start", "the request", metadata: ["trace": "t-42"], timeout: .seconds(10))
            // chain-c got chain-a's original payload, not chain-a's or chain-b's return values.
            #expect(report.text == "the request")
            #expect(report.caller == "test/chain-b")
            // The caller's header arrived at the end; each hop's own header replaced the one before.
            #expect(report.metadata == ["trace": "t-42", "hop": "b"])
            await client.close()
        }
    }

    @Test func forwardingActorsStateIsStoredBeforeTheForwardAndItIsNotBlocked() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let first: ChainReport = try await client.invoke("chain-a", action: "start", "one", timeout: .seconds(10))
            // While chain-c ran, chain-a's new state was already written (revision 1) and chain-a
            // answered another call although the original caller was still waiting.
            #expect(first.firstRevision == 1)
            #expect(first.firstCount == 1)
            let second: ChainReport = try await client.invoke("chain-a", action: "start", "two", timeout: .seconds(10))
            #expect(second.firstRevision == 2)
            #expect(second.firstCount == 2)
            await client.close()
        }
    }

    @Test func writeBehindActorsNewStateIsItsOwnBeforeTheForwardGoesOut() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            // The forward's target calls the forwarding actor back and reads the state it just set.
            #expect(try await client.invoke("behind-forwarder", action: "add", 5, as: Int.self) == 5)
            #expect(try await client.invoke("behind-forwarder", action: "add", 2, as: Int.self) == 7)
            await client.close()
        }
    }

    @Test func aResultWithAnInvalidTargetIsRefusedAndItsStateIsNotStored() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.invalidArgument) {
                let _: String = try await client.invoke("chain-a", action: "start-nowhere", "x", timeout: .seconds(10))
            }
            #expect(try await client.invoke("chain-a", action: "count", as: Int.self) == 0)
            #expect(try await client.activeActors(ofType: "chain-a").first?.revision == 0)
            await client.close()
        }
    }

    @Test func noEffectGoesOutWhenTheStateCannotBeStored() async throws {
        let server = try await TestPostgresServer.start()
        defer { server.remove() }
        try await withSidecar(onFailingPostgres: server) { sidecar in
            let client = try await sidecar.client()
            let (lost, kept) = ("lost-\(UUID().uuidString.prefix(8))", "kept-\(UUID().uuidString.prefix(8))")
            #expect(try await client.invoke("chain-a", action: "count", as: Int.self) == 0)
            try server.crash()
            await expectCode(.unavailable) {
                let _: Int = try await client.invoke("chain-a", action: "count-and-notify", lost, timeout: .seconds(20))
            }
            try server.startAgain()
            try await waitFor("the sidecar to use the store again", timeout: .seconds(60)) {
                (try? await client.invoke("chain-a", action: "count", as: Int.self, timeout: .seconds(5))) != nil
            }
            #expect(try await client.invoke("chain-a", action: "count-and-notify", kept, as: Int.self) == 1)
            // The gate runs its calls in order: had the refused call's side effect gone out, it
            // would have reached the gate before the accepted one's.
            Gate.latches.open(lost)
            Gate.latches.open(kept)
            try await waitFor("the accepted call's side effect") { Gate.visits.withLock { $0[kept]?.passed == true } }
            #expect(Gate.visits.withLock { $0[lost] } == nil)
            await client.close()
        }
    }

    @Test func aPipeCanSpawnItsTargetFromAnUnnamedType() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let request = RedirectRequest(
                actor: "acct-piped", action: "deposit", pipe: true, value: 12, spawnFrom: "account")
            #expect(try await client.invoke("redirect", action: "to", request, as: Int.self) == 12)
            #expect(try await client.invoke("acct-piped", action: "balance", as: Int.self) == 12)
            await expectCode(.notFound) {
                let _: Int = try await client.invoke(
                    "redirect", action: "to", RedirectRequest(actor: "acct-other", action: "deposit", pipe: true))
            }
            await client.close()
        }
    }

    @Test func pipeChainRepliesWithThePipedActorsReply() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let answer: String = try await client.invoke(
                "pipeline", action: "times-ten", 3, metadata: ["trace": "p-7"], timeout: .seconds(10))
            // 3 × 10 = 30 → plus-one → 31 → describe, called by the pipe's last sender. The last
            // hop goes from pipeline-end to itself: it would wait forever if its turn were still on.
            #expect(answer == "31 from pipeline-end trace=p-7 stage=plus-one")
            await client.close()
        }
    }

    @Test func forwardOrPipeToAnUnknownTargetGivesTheCallerItsTypedError() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.notFound) {
                let _: String = try await client.invoke(
                    "redirect", action: "to", RedirectRequest(actor: "nobody", action: "x"), timeout: .seconds(10))
            }
            await expectCode(.notFound) {
                let _: String = try await client.invoke(
                    "redirect", action: "to", RedirectRequest(actor: "echo", action: "no-such-action", pipe: true),
                    timeout: .seconds(10))
            }
            await expectCode(.invalidArgument) {
                let _: String = try await client.invoke(
                    "redirect", action: "to", RedirectRequest(actor: "", action: "echo"), timeout: .seconds(10))
            }
            await expectCode(.unavailable) {
                let _: String = try await client.invoke(
                    "redirect", action: "to", RedirectRequest(actor: "echo", action: "echo", system: "elsewhere"),
                    timeout: .seconds(10))
            }
            // echo's "echo" takes a String: it got the forwarded RedirectRequest, and said so.
            await expectCode(.invalidArgument) {
                let _: String = try await client.invoke(
                    "redirect", action: "to", RedirectRequest(actor: "echo", action: "echo"), timeout: .seconds(10))
            }
            await client.close()
        }
    }

    @Test func pipedCallKeepsTheCallersDeadline() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            // The sleeper is piped 5000 (ms) but the caller only gives the whole chain 300 ms.
            await expectCode(.deadlineExceeded) {
                let _: Int = try await client.invoke(
                    "redirect", action: "to",
                    RedirectRequest(actor: "sleeper", action: "sleep", pipe: true, value: 5000),
                    timeout: .milliseconds(300))
            }
            // Within the deadline the sleeper's reply is the caller's.
            let slept: Int = try await client.invoke(
                "redirect", action: "to", RedirectRequest(actor: "sleeper", action: "sleep", pipe: true, value: 1),
                timeout: .seconds(10))
            #expect(slept == 1)
            await client.close()
        }
    }

    @Test func failingSideEffectDoesNotFailTheReply() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let reply: String = try await client.invoke("notifier", action: "notify-nobody", "k", timeout: .seconds(10))
            #expect(reply == "notified")
            await client.close()
        }
    }

    @Test func sideEffectsDoNotDelayTheReplyAndTheirTargetRuns() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let key = "visit-\(UUID().uuidString.prefix(8))"
            // The gate stays closed until after the reply is here: had the reply waited for the
            // side effect, it could never arrive (the call would fail at its deadline instead).
            let reply: String = try await client.invoke(
                "notifier", action: "notify", key, metadata: ["trace": "s-1"], timeout: .seconds(10))
            #expect(reply == "notified")
            try await waitFor("the side effect to reach the gate") { Gate.visits.withLock { $0[key] != nil } }
            Gate.latches.open(key)
            try await waitFor("the side effect to pass the gate") {
                Gate.visits.withLock { $0[key]?.passed == true }
            }
            let visit = try #require(Gate.visits.withLock { $0[key] })
            #expect(visit.caller == "test/notifier")
            #expect(visit.metadata == ["trace": "s-1", "effect": "yes"])
            await client.close()
        }
    }
}
