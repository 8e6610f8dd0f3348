import Foundation
import Logging
import Testing
import Troupe
import TroupeProto
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// Pooled actors served by a troupe-sidecar process and a troupe-test-host process: `pool-worker`
/// (2...8 instances, 300 ms idle timeout) and `narrow-pool` (1...2 instances, 3 waiting calls).
@Suite("Pooled actors in a sidecar process", .serialized)
struct PoolTests {
    @Test func aPoolGrowsUnderConcurrentLoadNeverPastItsMaximumQueuesTheRestAndShrinksBackWhenIdle() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let processes = try await ReadySidecar.start(system: "pools", in: directory, ["--store", "memory"])
        defer { processes.kill9() }
        let client = try await TroupeClient.connect(system: "pools", to: .unix(path: processes.socket))
        let before = try #require(try await client.pools().first { $0.actorType == "pool-worker" })
        #expect(before.instances == 2 && before.min == 2 && before.max == 8, "\(before)")

        // 32 slow calls at once: 8 instances run them, the other calls wait and then run too.
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<32 {
                group.addTask {
                    try await client.invoke("pool-worker", action: "work", 500, timeout: .seconds(60))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        // Every call reached the pool by its type name, whichever instance ran it.
        #expect(answers.count == 32 && answers.allSatisfy { $0 == "pool-worker" }, "\(answers)")
        let loaded = try #require(try await client.pools().first { $0.actorType == "pool-worker" })
        #expect(loaded.peakInstances > loaded.min, "\(loaded)")
        #expect(loaded.peakInstances <= 8, "\(loaded)")
        #expect(loaded.queuedTotal > 0, "\(loaded)")

        let metrics = try await httpGet(port: processes.adminPort, "/metrics").body
        #expect(metrics.contains(#"troupe_pool_queued_calls_total{actor_type="pool-worker"}"#), "\(metrics)")
        #expect(metrics.contains(#"troupe_pool_queue_wait_seconds_count{actor_type="pool-worker"}"#), "\(metrics)")

        // Idle for longer than the type's idle timeout, the pool retires down to its minimum.
        var settled: ActorPoolStatus?
        try await waitFor("the pool to shrink back to 2 instances") {
            settled = try await client.pools().first { $0.actorType == "pool-worker" }
            return settled?.instances == 2
        }
        #expect(settled?.busy == 0 && settled?.queued == 0, "\(settled.map { "\($0)" } ?? "")")
        try await waitFor("the instance gauge to show the shrunken pool") {
            try await httpGet(port: processes.adminPort, "/metrics").body.split(separator: "\n")
                .contains(#"troupe_pool_instances{actor_type="pool-worker"} 2.0"#)
        }
        // A shrunken pool serves again, and grows again.
        let again: String = try await client.invoke("pool-worker", action: "work", 1)
        #expect(again == "pool-worker")
        await client.close()
    }

    @Test func callsBeyondAFullPoolQueueAreRefusedWithResourceExhausted() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let processes = try await ReadySidecar.start(system: "pools", in: directory, ["--store", "memory"])
        defer { processes.kill9() }
        let client = try await TroupeClient.connect(system: "pools", to: .unix(path: processes.socket))
        // 2 instances run 2 calls and 3 wait; the other calls find the queue full.
        let outcomes = await withTaskGroup(of: Result<Int, TroupeError>.self) { group in
            for _ in 0..<10 {
                group.addTask {
                    do {
                        return .success(
                            try await client.invoke("narrow-pool", action: "work", 1_500, timeout: .seconds(60)))
                    } catch let error as TroupeError {
                        return .failure(error)
                    } catch {
                        return .failure(TroupeError(.unknown, "\(error)"))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let refused = outcomes.compactMap { outcome -> TroupeError? in
            if case .failure(let error) = outcome { return error } else { return nil }
        }
        #expect(!refused.isEmpty, "\(outcomes)")
        #expect(refused.allSatisfy { $0.code == .resourceExhausted }, "\(refused)")
        #expect(outcomes.count - refused.count >= 5, "\(outcomes)")
        let pool = try #require(try await client.pools().first { $0.actorType == "narrow-pool" })
        #expect(pool.peakInstances == 2, "\(pool)")
        // Once the queue has room again, calls are taken as before.
        let served: Int = try await client.invoke("narrow-pool", action: "work", 1)
        #expect(served == 1)
        await client.close()
    }

    @Test func aPooledTypeMustBeStatelessAndItsMinimumWithinItsMaximum() async throws {
        try await withSidecar(host: false) { sidecar in
            let host = try await sidecar.connection(role: .host)
            defer { host.close() }
            func register(_ change: (inout WireActorDefinition) -> Void) async throws -> WireFrame.OneOf_Body {
                var definition = WireActorDefinition()
                definition.name = "bad-pool"
                definition.kind = .pooled
                definition.actions = ["work"]
                change(&definition)
                var register = WireRegisterRequest()
                register.actors = [definition]
                return try await host.call(.register(register), timeout: .seconds(5))
            }
            await expectCode(.invalidArgument) { _ = try await register { $0.stateful = true } }
            await expectCode(.invalidArgument) {
                _ = try await register {
                    $0.poolMin = 5
                    $0.poolMax = 4
                }
            }
            // A valid pool starts with its minimum of instances.
            _ = try await register {
                $0.poolMin = 3
                $0.poolMax = 4
            }
            let client = try await sidecar.client()
            let pool = try #require(try await client.pools().first { $0.actorType == "bad-pool" })
            #expect(pool.instances == 3 && pool.max == 4, "\(pool)")
            await client.close()
        }
        // The SDK refuses a pooled type with state before it reaches a sidecar.
        #expect(throws: TroupeError.self) {
            _ = try TroupeHost(system: "test", endpoint: .unix(path: "/tmp/unused.sock"), actors: [StatefulPool.self])
        }
    }

    @Test func aPooledTypeWhoseHostLeftIsUnavailableAndServesAgainWhenAHostReturns() async throws {
        try await withSidecar(host: false) { sidecar in
            let client = try await sidecar.client()
            let first = try TroupeHost(
                system: sidecar.configuration.system, endpoint: sidecar.endpoint, actors: [PoolWorker.self],
                logger: quietLogger)
            let running = Task { try await first.run() }
            try await sidecar.waitForRegistration(of: "pool-worker")
            let served: String = try await client.invoke("pool-worker", action: "work", 1)
            #expect(served == "pool-worker")
            running.cancel()
            _ = await running.result
            try await waitFor("the host to leave") {
                try await client.pools().first { $0.actorType == "pool-worker" }?.instances == 0
            }
            await expectCode(.unavailable) {
                let _: String = try await client.invoke("pool-worker", action: "work", 1)
            }
            let second = try TroupeHost(
                system: sidecar.configuration.system, endpoint: sidecar.endpoint, actors: [PoolWorker.self],
                logger: quietLogger)
            let again = Task { try await second.run() }
            defer { again.cancel() }
            try await waitFor("the pool to be refilled") {
                try await client.pools().first { $0.actorType == "pool-worker" }?.instances == 2
            }
            let servedAgain: String = try await client.invoke("pool-worker", action: "work", 1)
            #expect(servedAgain == "pool-worker")
            await client.close()
        }
    }
}

private let quietLogger: Logger = {
    var logger = Logger(label: "test.pool-host")
    logger.logLevel = .warning
    return logger
}()

/// Declares a pooled type with state, which no pool may have.
private struct StatefulPool: VirtualActor {
    struct State: Codable, Sendable { var count = 0 }
    static let name = "stateful-pool"
    static let kind = ActorKind.pooled()
    static func initialState() -> State { State() }
    static func actions(_ actions: inout Actions<Self>) {
        actions.on("count") { context -> Int in context.state.count }
    }
}
