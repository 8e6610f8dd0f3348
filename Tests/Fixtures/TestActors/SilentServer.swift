import NIOCore
import NIOPosix
import Synchronization

/// A listener on 127.0.0.1 that accepts and never speaks, for tests of clients that wait for a
/// greeting: libnats, for one, waits for the server's INFO until its connect timeout.
public final class SilentServer: Sendable {
    private final class Accepted: Sendable {
        let channels = Mutex<[any Channel]>([])
    }

    private let listener: any Channel
    private let accepted = Accepted()

    /// Listens on `port` (0: any free one), reusing it even if a server that just died held it.
    public init(port: Int = 0) async throws {
        let accepted = self.accepted
        listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                accepted.channels.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: port).get()
    }

    public var port: Int { listener.localAddress?.port ?? 0 }

    /// The connections accepted so far, in order.
    public var connections: [any Channel] { accepted.channels.withLock { $0 } }

    /// Stops listening and closes every accepted connection.
    public func close() async throws {
        try await listener.close()
        for channel in connections { try? await channel.close() }
    }
}
