import Foundation
import Testing
import Troupe
import TroupeTestSupport

@Suite("The troupe CLI and the seat-reservation example against a sidecar", .serialized)
struct ToolTests {
    @Test func cliInvokesWithJSONAndListsActors() async throws {
        try await withSidecar { sidecar in
            let socket = sidecar.configuration.socket
            let (status, output) = try await runToCompletion(
                "troupe", ["invoke", "test", "counter", "add", "--json", "41", "--socket", socket])
            #expect(status == 0, "\(output)")
            #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "41")

            let (jsonStatus, json) = try await runToCompletion(
                "troupe", ["invoke", "test", "counter", "add", "--json", "1", "--output", "json", "--socket", socket])
            #expect(jsonStatus == 0)
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            #expect(object?["type_url"] as? String == "application/json")
            #expect(object?["value"] as? Int == 42)

            let (listStatus, list) = try await runToCompletion("troupe", ["actors", "--json", "--socket", socket])
            #expect(listStatus == 0)
            let listed = try JSONSerialization.jsonObject(with: Data(list.utf8)) as? [String: Any]
            let actors = listed?["actors"] as? [[String: Any]] ?? []
            #expect(actors.contains { $0["name"] as? String == "counter" && $0["revision"] as? Int == 2 })

            let (tableStatus, table) = try await runToCompletion("troupe", ["actors", "--socket", socket])
            #expect(tableStatus == 0)
            #expect(table.contains("counter"))
            #expect(table.contains("1 active actor(s)"))
        }
    }

    @Test func cliReportsTypedErrorsAndFailsForBadInput() async throws {
        try await withSidecar { sidecar in
            let socket = sidecar.configuration.socket
            let (status, output) = try await runToCompletion(
                "troupe", ["invoke", "test", "nobody", "get", "--socket", socket])
            #expect(status == 1)
            #expect(output.contains("error: notFound"))
            let (badStatus, bad) = try await runToCompletion(
                "troupe", ["invoke", "test", "counter", "add", "--json", "{nope", "--socket", socket])
            #expect(badStatus == 1)
            #expect(bad.contains("invalidArgument"))
        }
        let (status, output) = try await runToCompletion("troupe", ["actors", "--socket", "/tmp/troupe-no-such.sock"])
        #expect(status == 1)
        #expect(output.contains("error: unavailable"))
    }

    @Test func concurrentBuyersNeverDoubleBookASeat() async throws {
        try await withSidecar(system: "tickets", store: "sqlite", host: false) { sidecar in
            let socket = sidecar.configuration.socket
            let host = try ChildProcess(
                "seat-reservation", ["host", "--socket", socket, "--system", "tickets"],
                logPath: sidecar.directory.path("example-host.log"))
            defer { host.kill9() }
            try await sidecar.waitForRegistration(of: "event")
            let (status, output) = try await runToCompletion(
                "seat-reservation",
                [
                    "buyers", "--socket", socket, "--system", "tickets", "--event", "gig", "--seats", "30", "--buyers",
                    "6",
                ],
                timeout: .seconds(120))
            #expect(status == 0, "\(output)\nhost log:\n\(host.log)")
            #expect(output.contains("no seat was sold twice"))
            #expect(output.contains("30 taken, 0 free of 30"))
            host.signal(SIGTERM)
            try await host.waitForExit()
        }
    }
}
