import Foundation
import NIOCore
import NIOPosix
import Testing
import TroupeTestActors

/// The ports test servers restart on must never be ones the kernel hands out as source ports.
@Suite struct LoopbackPortTests {
    @Test func testServerPortsLieOutsideTheRangeTheKernelPicksFromAndAreNeverHandedOutTwice() async throws {
        let text = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let bounds = text.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        try #require(bounds.count == 2)
        let ephemeral = bounds[0]...bounds[1]
        // The kernel's own pick, as for the source port of an outgoing connection.
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let kernelPick = try #require(listener.localAddress?.port)
        try await listener.close()
        #expect(ephemeral.contains(kernelPick))

        var ports: Set<Int> = []
        for _ in 0..<50 {
            let port = try LoopbackPort.free()
            #expect(!ephemeral.contains(port), "port \(port) is in the ephemeral range \(ephemeral)")
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
