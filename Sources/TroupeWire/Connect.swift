public import Logging
public import NIOCore
public import NIOPosix
public import TroupeProto

extension PeerConnection {
    /// Connects to a sidecar and performs the handshake.
    ///
    /// Sends `hello` as the first frame and waits for the `Welcome`. On success the connection
    /// knows the negotiated frame limit and has started its heartbeat. A refused handshake (an
    /// unsupported version, another ActorSystem) throws the sidecar's ``TroupeError``.
    ///
    /// ```swift
    /// var hello = WireHello()
    /// hello.protocolVersion = HostProtocol.version
    /// hello.system = "tickets"
    /// hello.role = .client
    /// let (connection, welcome) = try await PeerConnection.connect(
    ///     to: .unix(path: "/tmp/troupe/troupe.sock"), hello: hello, delegate: nil, logger: logger)
    /// ```
    public static func connect(
        to endpoint: Endpoint,
        hello: WireHello,
        delegate: (any PeerRequestHandler)?,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        timeout: TimeAmount = .seconds(10),
        logger: Logger
    ) async throws -> (PeerConnection, WireWelcome) {
        let limit = hello.maxFrameBytes == 0 ? HostProtocol.defaultMaxFrameBytes : hello.maxFrameBytes
        let bootstrap = ClientBootstrap(group: group).connectTimeout(timeout)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<PeerConnection> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try PeerConnection.install(
                    on: channel, side: .initiator, maxFrameBytes: limit, delegate: delegate, logger: logger)
            }
        }
        let connection: PeerConnection
        do {
            switch endpoint {
            case .unix(let path):
                connection = try await bootstrap.connect(
                    to: try SocketAddress(unixDomainSocketPath: path), channelInitializer: initializer)
            case .tcp(let host, let port):
                connection =
                    try await bootstrap
                    .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .connect(host: host, port: port, channelInitializer: initializer)
            }
        } catch {
            throw TroupeError.unavailable("cannot connect to the sidecar at \(endpoint): \(error)")
        }
        do {
            let answer = try await connection.call(.hello(hello), timeout: timeout)
            guard case .welcome(let welcome) = answer else {
                throw TroupeError.internalError("the sidecar answered Hello with \(answer)")
            }
            connection.peerMaxFrameBytes =
                welcome.maxFrameBytes == 0 ? HostProtocol.defaultMaxFrameBytes : welcome.maxFrameBytes
            let interval = welcome.heartbeatIntervalMs == 0 ? 5000 : welcome.heartbeatIntervalMs
            connection.startHeartbeat(interval: .milliseconds(Int64(interval)))
            return (connection, welcome)
        } catch {
            connection.close()
            throw error
        }
    }
}
