import Foundation
import NIOCore
import Synchronization
import Testing
import Troupe
import TroupeProto
import TroupeTestActors
import TroupeTestSupport

@Suite("Invocations through a sidecar over a real socket", .serialized)
struct InvocationTests {
    @Test func namedStatefulActorKeepsItsStateBetweenCalls() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let first: Int = try await client.invoke("counter", action: "add", 5)
            let second: Int = try await client.invoke("counter", action: "add", 2)
            let read: Int = try await client.invoke("counter", action: "get")
            #expect(first == 5)
            #expect(second == 7)
            #expect(read == 7)
            let listed = try await client.activeActors()
            let counter = try #require(listed.first { $0.name == "counter" })
            #expect(counter.revision == 2)
            #expect(counter.node == "test-node")
            await client.close()
        }
    }

    @Test func unnamedActorsAreSpawnedByIDAndKeepSeparateState() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let created = try await client.spawn(["acct-1", "acct-2"], of: "account")
            #expect(Set(created) == ["acct-1", "acct-2"])
            #expect(try await client.spawn(["acct-1"], of: "account").isEmpty)
            let one: Int = try await client.invoke("acct-1", action: "deposit", 10)
            let two: Int = try await client.invoke("acct-2", action: "deposit", 3)
            #expect(one == 10)
            #expect(two == 3)
            // Spawn on invoke.
            let three: Int = try await client.invoke("acct-3", action: "deposit", 4, spawnFrom: "account")
            #expect(three == 4)
            await client.close()
        }
    }

    @Test func anUnnamedActorIsCreatedOnInvokeOnlyWhenTheCallerNamesItsTemplate() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            // Without spawn_from, an id nobody spawned is notFound, and the call creates nothing.
            for _ in 0..<2 {
                await expectCode(.notFound) { let _: Int = try await client.invoke("acct-new", action: "deposit", 1) }
            }
            #expect(try await client.activeActors(ofType: "account").isEmpty)
            // With it, the first call creates the actor from its template...
            let first: Int = try await client.invoke("acct-new", action: "deposit", 5, spawnFrom: "account")
            #expect(first == 5)
            // ...which exists from then on: no spawn_from needed, and spawning it again creates nothing.
            let second: Int = try await client.invoke("acct-new", action: "deposit", 2)
            #expect(second == 7)
            #expect(try await client.spawn(["acct-new"], of: "account").isEmpty)
            // Only unnamed types are templates: a named or pooled one in spawn_from is notFound.
            for template in ["counter", "pool-worker"] {
                await expectCode(.notFound) {
                    let _: Int = try await client.invoke("acct-x", action: "deposit", 1, spawnFrom: template)
                }
            }
            await client.close()
        }
    }

    @Test func unknownActorActionAndTypeAreNotFound() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.notFound) { let _: Int = try await client.invoke("nobody", action: "get") }
            await expectCode(.notFound) { let _: Int = try await client.invoke("counter", action: "explode") }
            await expectCode(.notFound) { _ = try await client.spawn(["x"], of: "no-such-type") }
            await expectCode(.notFound) {
                let _: Int = try await client.invoke("y", action: "get", spawnFrom: "no-such-type")
            }
            // A named type cannot serve as a template.
            await expectCode(.notFound) { _ = try await client.spawn(["z"], of: "counter") }
            await client.close()
        }
    }

    @Test func hostErrorsReachTheCallerWithTheirStatus() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.permissionDenied) {
                let _: String = try await client.invoke(
                    "echo", action: "fail", TroupeError.Code.permissionDenied.rawValue)
            }
            let echoed: String = try await client.invoke("echo", action: "echo", "still fine")
            #expect(echoed == "still fine")
            // A payload of the wrong type is refused by the host's decoder as invalidArgument.
            await expectCode(.invalidArgument) {
                let _: Int = try await client.invoke("counter", action: "add", "five")
            }
            await client.close()
        }
    }

    @Test func otherSystemsAreUnavailableWithoutABridge() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            await expectCode(.unavailable) {
                let _: Int = try await client.invoke("counter", action: "get", system: "elsewhere")
            }
            await client.close()
        }
    }

    @Test func callsRunOneAtATimeAndEachCallersOrderIsKept() async throws {
        try await withSidecar { sidecar in
            let callers = 4
            let perCaller = 25
            var connections: [PeerConnection] = []
            for _ in 0..<callers { connections.append(try await sidecar.connection()) }
            // Each caller pipelines its calls: all frames are sent before any answer is awaited.
            var futures: [EventLoopFuture<WireFrame.OneOf_Body>] = []
            for sequence in 0..<perCaller {
                for (caller, connection) in connections.enumerated() {
                    var request = WireInvokeRequest()
                    request.actor.name = "journal"
                    request.action = "append"
                    request.payload.typeURL = "application/json"
                    request.payload.value = try JSONEncoder().encode(JournalEntry(caller: caller, sequence: sequence))
                    futures.append(connection.request(.invoke(request), timeout: .seconds(30)))
                }
            }
            for future in futures { _ = try await future.get() }
            let client = try await sidecar.client()
            let journal: Journal.State = try await client.invoke("journal", action: "read")
            #expect(journal.entries.count == callers * perCaller)
            #expect(journal.maxConcurrent == 1)
            for caller in 0..<callers {
                let sequence = journal.entries.filter { $0.caller == caller }.map(\.sequence)
                #expect(sequence == Array(0..<perCaller), "caller \(caller) saw its calls reordered")
            }
            for connection in connections { connection.close() }
            await client.close()
        }
    }

    @Test func deadlinePassesWhileTheHostIsSlow() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let started = ContinuousClock.now
            await expectCode(.deadlineExceeded) {
                let _: Int = try await client.invoke("sleeper", action: "sleep", 3000, timeout: .milliseconds(200))
            }
            #expect(ContinuousClock.now - started < .seconds(2))
            await client.close()
        }
    }

    @Test func deadlinePassesWhileTheCallWaitsInTheMailbox() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let slow = Task {
                let _: Int = try await client.invoke("sleeper", action: "sleep", 3000, timeout: .seconds(10))
            }
            try await waitFor("the slow call to run", timeout: .seconds(5)) {
                try await client.activeActors().contains { $0.name == "sleeper" && $0.mailboxDepth >= 1 }
            }
            // Queued behind the slow call: the sidecar answers it at its deadline. Were it not
            // enforced there, the client's own backstop (2 s later) would answer it instead.
            let error = await expectCode(.deadlineExceeded) {
                let _: Int = try await client.invoke("sleeper", action: "sleep", 1, timeout: .milliseconds(200))
            }
            #expect(error?.message.contains("deadline passed") == true, "\(String(describing: error))")
            slow.cancel()
            await client.close()
        }
    }

    @Test func fullMailboxRefusesWithResourceExhausted() async throws {
        try await withSidecar(configure: { $0.mailboxCapacity = 2 }) { sidecar in
            let client = try await sidecar.client()
            let outcomes = await withTaskGroup(of: TroupeError.Code?.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        do {
                            let _: Int = try await client.invoke("sleeper", action: "sleep", 100)
                            return nil
                        } catch let error as TroupeError {
                            return error.code
                        } catch {
                            return .unknown
                        }
                    }
                }
                return await group.reduce(into: [TroupeError.Code?]()) { $0.append($1) }
            }
            let refused = outcomes.filter { $0 == .resourceExhausted }.count
            let served = outcomes.filter { $0 == nil }.count
            // All ten arrive within the first call's 100 ms: at most capacity + the running one fit.
            #expect(refused >= 1)
            #expect(served >= 2)
            #expect(served <= 3)
            #expect(refused + served == 10)
            await client.close()
        }
    }

    @Test func idleActorsAreDeactivatedAndKeepTheirState() async throws {
        try await withSidecar(configure: { $0.idleTimeoutMs = 200 }) { sidecar in
            let client = try await sidecar.client()
            let _: Int = try await client.invoke("counter", action: "add", 9)
            #expect(try await client.activeActors().contains { $0.name == "counter" })
            try await waitFor("the counter to be deactivated", timeout: .seconds(5)) {
                try await !client.activeActors().contains { $0.name == "counter" }
            }
            let value: Int = try await client.invoke("counter", action: "get")
            #expect(value == 9)
            await client.close()
        }
    }

    @Test func clientsCannotRegisterActors() async throws {
        try await withSidecar(host: false) { sidecar in
            let connection = try await sidecar.connection(role: .client)
            var register = WireRegisterRequest()
            var definition = WireActorDefinition()
            definition.name = "sneaky"
            definition.kind = .named
            register.actors = [definition]
            await expectCode(.permissionDenied) {
                _ = try await connection.call(.register(register), timeout: .seconds(5))
            }
            connection.close()
        }
    }

    @Test func namedActorWithoutItsHostIsUnavailableNotHanging() async throws {
        try await withSidecar(host: false) { sidecar in
            let hostConnection = try await sidecar.connection(role: .host)
            var register = WireRegisterRequest()
            var definition = WireActorDefinition()
            definition.name = "orphan"
            definition.kind = .named
            definition.actions = ["ping"]
            register.actors = [definition]
            _ = try await hostConnection.call(.register(register), timeout: .seconds(5))
            hostConnection.close()
            try await Task.sleep(for: .milliseconds(100))
            let client = try await sidecar.client()
            await expectCode(.unavailable) {
                let _: Int = try await client.invoke("orphan", action: "ping", timeout: .seconds(5))
            }
            await client.close()
        }
    }
}
