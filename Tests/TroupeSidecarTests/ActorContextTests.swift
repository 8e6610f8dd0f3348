import Foundation
import Testing
import Troupe
import TroupeProto
import TroupeTestActors
import TroupeTestSupport

/// What an action knows about itself and sets about itself, against a real sidecar and SDK host:
/// its identity, and tags that select it in listings.
@Suite("Actor context: identity and tags")
struct ActorContextTests {
    @Test func anActorReadsItsOwnIdentityAndTheCallingActors() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let identity: String = try await client.invoke("p-who", action: "whoami", spawnFrom: "player")
            #expect(identity == "test/player/p-who")
            // A client is nobody's actor; an action's calls name the actor that makes them.
            #expect(try await client.invoke("echo", action: "caller", as: String.self) == "-/-")
            let viaRelay: String = try await client.invoke(
                "relay", action: "call", RelayRequest(system: "test", actor: "echo", action: "caller", text: ""))
            #expect(viaRelay == "test/relay")
            await client.close()
        }
    }

    @Test func tagsAnActorSetsAreKeptWithItAndSelectItInListings() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            for (name, region) in [("p-1", "eu"), ("p-2", "us"), ("p-3", "eu")] {
                let tags: [String: String] = try await client.invoke(
                    name, action: "join", region, spawnFrom: "player")
                #expect(tags == ["region": region, "kind": "player"])
            }
            // The next call of the activation sees the tags the last one set.
            #expect(try await client.invoke("p-2", action: "tags", as: [String: String].self)["region"] == "us")

            let europeans = try await client.activeActors(tagged: ["region": "eu"])
            #expect(europeans.map(\.name) == ["p-1", "p-3"])
            #expect(europeans.allSatisfy { $0.tags == ["region": "eu", "kind": "player"] })
            #expect(try await client.activeActors(tagged: ["region": "eu", "kind": "player"]).count == 2)
            #expect(try await client.activeActors(tagged: ["region": "asia"]).isEmpty)

            // A removed tag no longer selects the actor; its other tags still do.
            #expect(try await client.invoke("p-1", action: "leave", as: [String: String].self) == ["kind": "player"])
            #expect(try await client.activeActors(tagged: ["region": "eu"]).map(\.name) == ["p-3"])
            #expect(try await client.activeActors(tagged: ["kind": "player"]).count == 3)

            // The admin JSON API filters the same way.
            let port = try #require(sidecar.sidecar.adminPort)
            let listed = try await httpGet(port: port, "/v1/actors?tag=region=eu")
            #expect(listed.status == 200, "\(listed)")
            let response = try WireListActorsResponse(jsonString: listed.body)
            #expect(response.actors.map(\.actor.name) == ["p-3"])
            #expect(response.actors.first?.tags == ["region": "eu", "kind": "player"])
            let both = try await httpGet(port: port, "/v1/actors?tag=kind=player&tag=region=us")
            #expect(try WireListActorsResponse(jsonString: both.body).actors.map(\.actor.name) == ["p-2"])
            let malformed = try await httpGet(port: port, "/v1/actors?tag=region")
            #expect(malformed.status == 400, "\(malformed)")
            #expect(malformed.body.contains("invalidArgument"))

            // And so does the CLI.
            let socket = sidecar.configuration.socket
            let (status, output) = try await runToCompletion(
                "troupe", ["actors", "--tag", "region=us", "--json", "--socket", socket])
            #expect(status == 0, "\(output)")
            let listing = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            let rows = listing?["actors"] as? [[String: Any]] ?? []
            #expect(rows.compactMap { $0["name"] as? String } == ["p-2"], "\(output)")
            #expect(rows.first?["tags"] as? [String: String] == ["region": "us", "kind": "player"])
            let (badStatus, badOutput) = try await runToCompletion(
                "troupe", ["actors", "--tag", "us", "--socket", socket])
            #expect(badStatus == 1)
            #expect(badOutput.contains("invalidArgument"), "\(badOutput)")
            await client.close()
        }
    }
}
