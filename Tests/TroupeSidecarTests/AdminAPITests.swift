import Foundation
import Testing
import Troupe
import TroupeSidecar
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// The admin endpoint's JSON API over real HTTP, against an in-process sidecar and SDK host.
@Suite("Admin JSON API")
struct AdminAPITests {
    @Test func curlUsersInvokeSpawnAndListWithTypedErrors() async throws {
        try await withSidecar { harness in
            let port = try #require(harness.sidecar.adminPort)
            try await harness.waitForRegistration(of: "counter")

            let added = try await httpRequest("POST", port: port, "/v1/actors/counter/add", body: "5")
            #expect(added.status == 200, "\(added)")
            #expect(added.body == "5")
            #expect(added.headers["content-type"] == "application/json")
            let again = try await httpRequest("POST", port: port, "/v1/actors/counter/add?timeout_ms=5000", body: "2")
            #expect(again.body == "7")
            // The state is the actor's own, whoever calls: the SDK client sees the same counter.
            let client = try await harness.client()
            #expect(try await client.invoke("counter", action: "get", as: Int.self) == 7)
            await client.close()

            // Unnamed actors: spawned from their type, then invoked.
            let spawned = try await httpRequest(
                "POST", port: port, "/v1/spawn", body: #"{"actorType": "account", "names": ["acct-1", "acct-2"]}"#)
            #expect(spawned.status == 200, "\(spawned)")
            #expect(spawned.body.contains("acct-1") && spawned.body.contains("acct-2"), "\(spawned.body)")
            let deposit = try await httpRequest("POST", port: port, "/v1/actors/acct-1/deposit", body: "40")
            #expect(deposit.body == "40", "\(deposit)")

            let actors = try await httpGet(port: port, "/v1/actors?type=account")
            #expect(actors.status == 200)
            #expect(actors.body.contains("acct-1"), "\(actors.body)")
            #expect(!actors.body.contains("\"counter\""), "filtered by type: \(actors.body)")
            let members = try await httpGet(port: port, "/v1/members")
            #expect(members.body.contains("test-node"), "\(members.body)")

            // Typed errors with the status that fits and a JSON body naming the code.
            let unknownActor = try await httpRequest("POST", port: port, "/v1/actors/nobody/add", body: "1")
            #expect(unknownActor.status == 404, "\(unknownActor)")
            #expect(unknownActor.body.contains("\"code\":\"notFound\""), "\(unknownActor.body)")
            let notJSON = try await httpRequest("POST", port: port, "/v1/actors/counter/add", body: "{five")
            #expect(notJSON.status == 400)
            #expect(notJSON.body.contains("invalidArgument"))
            let badTimeout = try await httpRequest("POST", port: port, "/v1/actors/counter/add?timeout_ms=-3", body: "1")
            #expect(badTimeout.status == 400)
            let badSpawn = try await httpRequest("POST", port: port, "/v1/spawn", body: #"{"names": 3}"#)
            #expect(badSpawn.status == 400, "\(badSpawn)")
            let slow = try await httpRequest(
                "POST", port: port, "/v1/actors/sleeper/sleep?timeout_ms=200", body: "2000")
            #expect(slow.status == 504, "\(slow)")
            #expect(slow.body.contains("deadlineExceeded"))
        }
    }

    @Test func withAnAdminTokenTheJSONAPIAnswersOnlyTheBearer() async throws {
        try await withSidecar(configure: { $0.adminToken = "s3cret-admin" }) { harness in
            let port = try #require(harness.sidecar.adminPort)
            try await harness.waitForRegistration(of: "counter")
            let anonymous = try await httpRequest("POST", port: port, "/v1/actors/counter/add", body: "1")
            #expect(anonymous.status == 401)
            #expect(try await httpGet(port: port, "/v1/members").status == 401)
            let wrong = try await httpRequest(
                "POST", port: port, "/v1/actors/counter/add", body: "1", authorization: "Bearer guess")
            #expect(wrong.status == 401)
            let bearer = try await httpRequest(
                "POST", port: port, "/v1/actors/counter/add", body: "1", authorization: "Bearer s3cret-admin")
            #expect(bearer.status == 200)
            #expect(bearer.body == "1", "only the authorized call ran: \(bearer.body)")
        }
    }
}
