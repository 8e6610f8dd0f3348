import Foundation
import NIOCore
import NIOPosix
import Testing
import TroupeTestActors

/// The ports test servers restart on must never be ones the kernel hands out as source ports.
@Suite struct LoopbackPortTests {
    @Test func testServerPortsLieBelowThePortsTheKernelPicksAndAreNeverHandedOutTwice() async throws {
        // The kernel's own pick, for an outgoing connection or a bind to port 0.
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let kernelPick = try #require(listener.localAddress?.port)
        try await listener.close()

        var ports: Set<Int> = []
        for _ in 0..<50 {
            let port = try LoopbackPort.free()
            #expect(port < kernelPick, "port \(port) is not below the kernel's pick \(kernelPick)")
            #expect(ports.insert(port).inserted, "port \(port) was handed out twice")
        }
        // Free means a server can listen there now.
        let port = try #require(ports.first)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: port).get()
        #expect(server.localAddress?.port == port)
        try await server.close()
    }
}
