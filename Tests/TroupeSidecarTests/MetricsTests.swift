import Foundation
import Testing
import Troupe
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// What a sidecar process counts, read from its /metrics as Prometheus would.
@Suite("Operator metrics", .serialized)
struct MetricsTests {
    @Test func invocationsAndFailedSideEffectsAreCountedAndTheStoreIsTimed() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let processes = try await ReadySidecar.start(
            system: "metrics", in: directory, ["--data-path", directory.path("state.sqlite")])
        defer { processes.kill9() }
        let (socket, sidecar, host, port) = (processes.socket, processes.sidecar, processes.host, processes.adminPort)
        let client = try await TroupeClient.connect(system: "metrics", to: .unix(path: socket))
        for amount in [1, 2, 3] { let _: Int = try await client.invoke("counter", action: "add", amount) }
        await expectCode(.notFound) { let _: Int = try await client.invoke("counter", action: "no-such-action") }
        // A side effect aimed at an actor that does not exist: the reply is fine, the failure counted.
        let notified: String = try await client.invoke("notifier", action: "notify-nobody", "k")
        #expect(notified == "notified")
        await client.close()
        try await waitFor("the failed side effect to be counted") {
            try await httpGet(port: port, "/metrics").body.split(separator: "\n")
                .contains("troupe_side_effect_failures_total 1")
        }

        let body = try await httpGet(port: port, "/metrics").body
        let lines = body.split(separator: "\n").map(String.init)
        func sample(_ name: String, _ labels: [String]) -> String? {
            lines.first { line in line.hasPrefix(name + "{") && labels.allSatisfy { line.contains($0) } }
        }
        let ok = sample("troupe_invocations_total", ["actor_type=\"counter\"", "action=\"add\"", "status=\"ok\""])
        #expect(ok?.hasSuffix(" 3") == true, "\(ok ?? "no ok sample")\n\(body)")
        // An unknown action is counted under one label value, whatever the caller sent.
        let refused = sample(
            "troupe_invocations_total", ["actor_type=\"counter\"", "action=\"<unknown>\"", "status=\"notFound\""])
        #expect(refused?.hasSuffix(" 1") == true, "\(refused ?? "no notFound sample")\n\(body)")
        let timed = sample("troupe_invocation_duration_seconds_count", ["actor_type=\"counter\"", "action=\"add\""])
        #expect(timed?.hasSuffix(" 3") == true, "\(timed ?? "no duration sample")\n\(body)")
        // Three write-throughs, after one activation; the readiness probe reads the store too.
        let writes = sample("troupe_store_operation_duration_seconds_count", ["operation=\"write\""])
        #expect(writes?.hasSuffix(" 3") == true, "\(writes ?? "no store write sample")\n\(body)")
        let activations = sample("troupe_store_operation_duration_seconds_count", ["operation=\"activate\""])
        #expect(activations?.hasSuffix(" 1") == true, "\(activations ?? "no store activate sample")\n\(body)")
        // Every call that reached a mailbox recorded its depth there.
        let depths = lines.first { $0.hasPrefix("troupe_mailbox_depth_count ") }
        #expect(depths.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0 >= 4, "\(depths ?? "no depth")\n\(body)")

        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0, "sidecar log:\n\(sidecar.log)")
        host.signal(SIGTERM)
        try await host.waitForExit()
    }

    @Test func refusedAndInterleavedCallsBackIntoATurnAndHopLimitRefusalsAreCounted() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let processes = try await ReadySidecar.start(
            system: "metrics", in: directory,
            ["--data-path", directory.path("state.sqlite"), "--max-forward-hops", "3", "--max-call-depth", "3"])
        defer { processes.kill9() }
        let client = try await TroupeClient.connect(system: "metrics", to: .unix(path: processes.socket))
        await expectCode(.failedPrecondition) {
            let _: Int = try await client.invoke("strict-loop", action: "add-one-and-bounce", "count")
        }
        #expect(try await client.invoke("reentrant-loop", action: "bounce", "count", as: Int.self) == 0)
        await expectCode(.resourceExhausted) { let _: Int = try await client.invoke("spinner", action: "forward-spin") }
        // Three forwards went out, the fourth was refused.
        #expect(try await client.invoke("spinner", action: "count", as: Int.self) == 4)
        // Two calls of the actor into itself were interleaved, the third was one too deep.
        await expectCode(.resourceExhausted) {
            let _: Int = try await client.invoke("reentrant-loop", action: "recurse")
        }
        await client.close()

        let body = try await httpGet(port: processes.adminPort, "/metrics").body
        let lines = body.split(separator: "\n").map(String.init)
        #expect(lines.contains("troupe_reentrant_calls_total{outcome=\"refused\"} 1"), "\(lines)")
        #expect(lines.contains("troupe_reentrant_calls_total{outcome=\"interleaved\"} 3"), "\(lines)")
        #expect(lines.contains("troupe_hop_limit_refusals_total 1"), "\(lines)")
        #expect(lines.contains("troupe_call_depth_refusals_total 1"), "\(lines)")
    }
}
