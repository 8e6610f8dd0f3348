import Testing
import TroupeTestActors
import TroupeTestSupport

@testable import Troupe

@Suite("TroupeClient.executor")
struct ClientExecutorTests {
    @Test func aCallerThatPrefersTheClientsExecutorSendsAndResumesOnTheConnectionsEventLoop() async throws {
        try await withSidecar { sidecar in
            let client = try await sidecar.client()
            let loop = client.connection.eventLoop
            let (total, everyResumeOnLoop) = try await withTaskExecutorPreference(client.executor) {
                var onLoop = loop.inEventLoop
                var total = 0
                for amount in 1...20 {
                    total = try await client.invoke("counter", action: "add", amount, as: Int.self)
                    onLoop = onLoop && loop.inEventLoop
                }
                return (total, onLoop)
            }
            #expect(total == 210)
            #expect(everyResumeOnLoop, "the caller left the connection's event loop between calls")
            // Without the preference the caller runs on the global pool, never on the loop.
            let _: Int = try await client.invoke("counter", action: "get")
            #expect(!loop.inEventLoop)
            await client.close()
        }
    }
}
