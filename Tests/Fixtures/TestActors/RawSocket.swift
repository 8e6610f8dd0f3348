public import NIOCore
import NIOPosix
import Synchronization
public import TroupeProto
public import TroupeWire

/// A bare framed socket that records what the sidecar sends, for input a well-behaved peer never sends.
public final class RawSocket: Sendable {
    public let channel: any Channel
    private let collector: Collector

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = InboundFrame
        let frames = Mutex<[InboundFrame]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = unwrapInboundIn(data)
            frames.withLock { $0.append(frame) }
        }
    }

    private init(channel: any Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    public static func connect(_ path: String) async throws -> RawSocket {
        let collector = Collector()
        let channel = try await bootstrap(collector).connect(unixDomainSocketPath: path).get()
        return RawSocket(channel: channel, collector: collector)
    }

    /// Connects over TCP, to the sidecar's `listen-tcp` listener.
    public static func connect(host: String, port: Int) async throws -> RawSocket {
        let collector = Collector()
        let channel = try await bootstrap(collector).connect(host: host, port: port).get()
        return RawSocket(channel: channel, collector: collector)
    }

    private static func bootstrap(_ collector: Collector) -> ClientBootstrap {
        ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
    }

    public func send(_ id: UInt64, _ body: WireFrame.OneOf_Body) async throws {
        var buffer = ByteBuffer()
        try FrameEncoder().encode(data: OutboundFrame(id: id, body), out: &buffer)
        try await channel.writeAndFlush(buffer)
    }

    /// Sends `frames` in one write, so the sidecar reads them together.
    public func send(_ frames: [(UInt64, WireFrame.OneOf_Body)]) async throws {
        var buffer = ByteBuffer()
        for (id, body) in frames { try FrameEncoder().encode(data: OutboundFrame(id: id, body), out: &buffer) }
        try await channel.writeAndFlush(buffer)
    }

    public func sendRaw(length: UInt32, id: UInt64, body: [UInt8]) async throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(length)
        buffer.writeInteger(id)
        buffer.writeBytes(body)
        try await channel.writeAndFlush(buffer)
    }

    /// Every frame received so far, waiting (at most 5 s) until there are `count`.
    public func receive(count: Int) async throws -> [InboundFrame] {
        for _ in 0..<250 {
            let frames = collector.frames.withLock { $0 }
            if frames.count >= count { return frames }
            try await Task.sleep(for: .milliseconds(20))
        }
        return collector.frames.withLock { $0 }
    }

    /// The frame answering `id`, waiting at most 5 s.
    public func answer(to id: UInt64) async throws -> WireFrame.OneOf_Body? {
        for _ in 0..<250 {
            let found = collector.frames.withLock { frames in
                frames.lazy.compactMap { frame -> WireFrame.OneOf_Body? in
                    if case .frame(id, let body) = frame { return body.body }
                    return nil
                }.first
            }
            if let found { return found }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// True once the sidecar closed the connection, waiting at most 5 s.
    public func closedBySidecar() async -> Bool {
        for _ in 0..<250 {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    public static func hello(
        version: UInt32 = HostProtocol.version, system: String = "test", role: WirePeerRole = .host,
        secret: String = ""
    ) -> WireFrame.OneOf_Body {
        var hello = WireHello()
        hello.secret = secret
        hello.protocolVersion = version
        hello.system = system
        hello.role = role
        hello.name = "raw"
        return .hello(hello)
    }
}
