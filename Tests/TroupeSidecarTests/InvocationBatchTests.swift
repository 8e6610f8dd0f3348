import Foundation
import Logging
import Synchronization
import Testing
import Troupe
import TroupeProto
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// Timer firings sent to the host in `ActorInvocationBatch`es: negotiated in the handshake, each
/// entry answered on its own, and every way a batch can go wrong failing its firings cleanly.
@Suite("Invocation batches", .serialized)
struct InvocationBatchTests {
    @Test func batchedFiringsReachEveryActorExactlyOnce() async throws {
        try await withSidecar(host: false) { sidecar in
            let host = try await RawTimerHost.connect(to: sidecar.endpoint, system: "test", batches: true, arms: 64)
            #expect(host.welcome.maxInvocationBatch > 1)
            let client = try await sidecar.client()
            // One-shot timers, set by answers the host sends together: all due at nearly one moment.
            try await armAll(64, through: client)
            try await waitFor("every actor's firing") { host.seen.withLock { $0.ticks.count } == 64 }
            // Bounded: a duplicate would come within the next passes of the timer heap.
            try await Task.sleep(for: .milliseconds(300))
            let seen = host.seen.withLock { $0 }
            #expect(seen.ticks.values.allSatisfy { $0 == 1 }, "\(seen.ticks)")
            #expect(seen.batchSizes.contains { $0 > 1 }, "batches \(seen.batchSizes), single ticks \(seen.singleTicks)")
            #expect(seen.duplicateInBatch == false)
            await client.close()
            host.connection.close()
        }
    }

    @Test func aHostThatDoesNotAskForBatchesGetsSingleFrames() async throws {
        try await withSidecar(host: false) { sidecar in
            let host = try await RawTimerHost.connect(to: sidecar.endpoint, system: "test", batches: false, arms: 32)
            #expect(host.welcome.maxInvocationBatch == 0)
            let client = try await sidecar.client()
            try await armAll(32, through: client)
            try await waitFor("every actor's firing") { host.seen.withLock { $0.ticks.count } == 32 }
            try await Task.sleep(for: .milliseconds(300))
            let seen = host.seen.withLock { $0 }
            #expect(seen.ticks.values.allSatisfy { $0 == 1 }, "\(seen.ticks)")
            #expect(seen.batchSizes.isEmpty)
            #expect(seen.singleTicks == 32)
            await client.close()
            host.connection.close()
        }
    }

    @Test func theSDKHostServesBatchedFiringsAndSeesTheirLag() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let names = (0..<40).map { "alarm-batch-\($0)" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in names {
                    group.addTask {
                        let _: NoPayload = try await client.invoke(
                            name, action: "set-timer", AlarmRequest(name: "b", afterMs: 100, note: name),
                            spawnFrom: "alarm")
                    }
                }
                try await group.waitForAll()
            }
            for name in names {
                try await waitFor("\(name)'s firing") {
                    try await client.invoke(name, action: "rings", as: [Ring].self).count == 1
                }
            }
            for name in names {
                #expect(try await client.invoke(name, action: "rings", as: [Ring].self) == [Ring(timer: "b", note: name)])
            }
            // A firing carries its due time, so the action knows how late it came.
            let _: NoPayload = try await client.invoke("lag-1", action: "set", 20, spawnFrom: "lag-probe")
            try await waitFor("the probe's firing") {
                try await client.invoke("lag-1", action: "lags", as: [Int64?].self).count == 1
            }
            let lags = try await client.invoke("lag-1", action: "lags", as: [Int64?].self)
            #expect(lags.count == 1 && lags[0] != nil, "\(lags)")
            await client.close()
        }
    }

    @Test func failedEntriesShortAnswersAndAClosedConnectionFailEachFiringAndAreCounted() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socket = directory.path("troupe.sock")
        let sidecar = try ChildProcess(
            "troupe-sidecar", ["--system", "batch", "--socket", socket, "--store", "memory"],
            logPath: directory.path("sidecar.log"))
        defer { sidecar.kill9() }
        let port = try await adminPort(of: sidecar)
        // Not /readyz: it waits for a host, and the host here connects only below.
        try await waitFor("/healthz to answer 200") { (try? await httpGet(port: port, "/healthz"))?.status == 200 }
        func metric(_ name: String) async throws -> Int {
            let lines = try await httpGet(port: port, "/metrics").body.split(separator: "\n")
            return lines.first { $0.hasPrefix(name + " ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        let host = try await RawTimerHost.connect(
            to: .unix(path: socket), system: "batch", batches: true, arms: 32, periodMs: 50)
        host.answer.withLock { $0 = .failOddEntries }
        let client = try await TroupeClient.connect(system: "batch", to: .unix(path: socket))
        try await armAll(32, through: client)
        // Half of each batch fails, yet every actor's timer goes on: a failed entry ends its
        // firing like a success does.
        try await waitFor("three firings of every actor, some in batches") {
            let seen = host.seen.withLock { $0 }
            return seen.ticks.count == 32 && seen.ticks.values.allSatisfy { $0 >= 3 }
                && seen.batchSizes.contains { $0 > 1 }
        }
        try await waitFor("the failed entries to be counted") {
            let failures = try await metric("troupe_timer_failures_total")
            let batched = try await metric("troupe_host_batched_invocations_total")
            return failures >= 1 && batched >= 2
        }

        // An answer with one outcome too few fails every firing of the batch; the timers go on.
        host.answer.withLock { $0 = .oneOutcomeShort }
        let failuresBefore = try await metric("troupe_timer_failures_total")
        let ticksBefore = host.seen.withLock { $0.ticks.values.reduce(0, +) }
        try await waitFor("short answers to be counted as failures, firings going on") {
            let ticks = host.seen.withLock { $0.ticks.values.reduce(0, +) }
            let failures = try await metric("troupe_timer_failures_total")
            return failures > failuresBefore + 2 && ticks > ticksBefore + 64
        }

        // The host goes away with a batch outstanding: each of its firings fails at once. The
        // count is read while the host answers in full, before the close can add to it.
        host.answer.withLock { $0 = .results }
        let ticksAnswered = host.seen.withLock { $0.ticks.values.reduce(0, +) }
        try await waitFor("firings answered in full again") {
            host.seen.withLock { $0.ticks.values.reduce(0, +) } > ticksAnswered + 64
        }
        let failuresBeforeClose = try await metric("troupe_timer_failures_total")
        host.answer.withLock { $0 = .closeConnection }
        try await waitFor("the connection to close") { !host.connection.channel.isActive }
        try await waitFor("the abandoned firings to be counted") {
            try await metric("troupe_timer_failures_total") > failuresBeforeClose
        }
        // Nothing waits on the lost host: a call gets `unavailable`, not a timeout.
        await expectCode(.unavailable) {
            let _: NoPayload = try await client.invoke("rt-0", action: "arm", timeout: .seconds(20))
        }
        await client.close()
        sidecar.signal(SIGTERM)
        #expect(try await sidecar.waitForExit() == 0, "sidecar log:\n\(sidecar.log)")
    }

    /// Arms `count` actors `rt-0…` concurrently (the host answers them all together).
    private func armAll(_ count: Int, through client: TroupeClient) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                group.addTask {
                    let _: NoPayload = try await client.invoke("rt-\(index)", action: "arm", spawnFrom: "rawtick")
                }
            }
            try await group.waitForAll()
        }
    }
}

/// A host written against the protocol alone, to see the frames firings arrive in and to answer
/// batches in ways the SDK never does.
final class RawTimerHost: PeerRequestHandler {
    enum BatchAnswer: Sendable {
        case results
        /// Entries 1, 3, 5… answered with a Failure, the others with a result.
        case failOddEntries
        case oneOutcomeShort
        case closeConnection
    }

    struct Seen: Sendable {
        var ticks: [String: Int] = [:]
        var batchSizes: [Int] = []
        var singleTicks = 0
        var duplicateInBatch = false
        /// Ids of `arm` invocations held back until all have come.
        var heldArms: [UInt64] = []
    }

    let seen = Mutex(Seen())
    let answer = Mutex(BatchAnswer.results)
    private let arms: Int
    private let periodMs: UInt64
    private let connectionBox = Mutex<PeerConnection?>(nil)
    private let welcomeBox = Mutex(WireWelcome())

    var connection: PeerConnection { connectionBox.withLock { $0! } }
    var welcome: WireWelcome { welcomeBox.withLock { $0 } }

    private init(arms: Int, periodMs: UInt64) {
        self.arms = arms
        self.periodMs = periodMs
    }

    /// Connects, registers the unnamed stateless type `rawtick` (actions `arm` and `tick`).
    /// `arm` sets timer `tick` due in 200 ms, repeating every `periodMs` (0 = once); the host
    /// answers the first `arms` of them together, so their timers come due together.
    static func connect(
        to endpoint: Endpoint, system: String, batches: Bool, arms: Int, periodMs: UInt64 = 0
    ) async throws -> RawTimerHost {
        let host = RawTimerHost(arms: arms, periodMs: periodMs)
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        hello.system = system
        hello.role = .host
        hello.name = "raw-timer-host"
        hello.acceptsInvocationBatches = batches
        let (connection, welcome) = try await PeerConnection.connect(
            to: endpoint, hello: hello, delegate: host, logger: Logger(label: "test.raw-host"))
        host.connectionBox.withLock { $0 = connection }
        host.welcomeBox.withLock { $0 = welcome }
        var definition = WireActorDefinition()
        definition.name = "rawtick"
        definition.kind = .unnamed
        definition.actions = ["arm", "tick"]
        var register = WireRegisterRequest()
        register.actors = [definition]
        _ = try await connection.call(.register(register), timeout: .seconds(10))
        return host
    }

    func handle(request: WireFrame.OneOf_Body, id: UInt64, on connection: PeerConnection) {
        switch request {
        case .actorInvocation(let invocation) where invocation.action == "arm":
            let release = seen.withLock { seen -> [UInt64] in
                seen.heldArms.append(id)
                guard seen.heldArms.count >= arms else { return [] }
                defer { seen.heldArms = [] }
                return seen.heldArms
            }
            var result = WireActorInvocationResult()
            var timer = WireTimerCommand()
            timer.name = "tick"
            timer.action = "tick"
            timer.dueMs = 200
            timer.periodMs = periodMs
            result.timers = [timer]
            // Within one event-loop tick: they leave in one write and are applied together.
            for held in release { connection.respond(to: held, with: .actorResult(result)) }
        case .actorInvocation(let invocation):
            seen.withLock { seen in
                seen.singleTicks += 1
                seen.ticks[invocation.actor.name, default: 0] += 1
            }
            connection.respond(to: id, with: .actorResult(WireActorInvocationResult()))
        case .actorInvocationBatch(let batch):
            seen.withLock { seen in
                seen.batchSizes.append(batch.invocations.count)
                let names = batch.invocations.map(\.actor.name)
                if Set(names).count != names.count { seen.duplicateInBatch = true }
                for name in names { seen.ticks[name, default: 0] += 1 }
            }
            answerBatch(batch, id: id, on: connection)
        default:
            connection.fail(id, with: .invalidArgument("this host serves only actor invocations"))
        }
    }

    private func answerBatch(_ batch: WireActorInvocationBatch, id: UInt64, on connection: PeerConnection) {
        var answer = WireActorInvocationBatchResult()
        answer.outcomes = batch.invocations.indices.map { index in
            var outcome = WireActorInvocationOutcome()
            if index % 2 == 1, self.answer.withLock({ $0 }) == .failOddEntries {
                outcome.failure = TroupeError.invalidArgument("entry \(index) refused").wire
            } else {
                outcome.result = WireActorInvocationResult()
            }
            return outcome
        }
        switch self.answer.withLock({ $0 }) {
        case .results, .failOddEntries:
            connection.respond(to: id, with: .actorBatchResult(answer))
        case .oneOutcomeShort:
            answer.outcomes.removeLast()
            connection.respond(to: id, with: .actorBatchResult(answer))
        case .closeConnection:
            connection.close()
        }
    }
}
