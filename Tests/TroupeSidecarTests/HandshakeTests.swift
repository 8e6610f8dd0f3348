import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeProto
import TroupeWire

/// A bare framed socket that records what the sidecar sends, for input a well-behaved peer never sends.
final class RawSocket: Sendable {
    let channel: any Channel
    private let frames: Mutex<[InboundFrame]>
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
        self.frames = Mutex([])
    }

    static func connect(_ path: String) async throws -> RawSocket {
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(unixDomainSocketPath: path).get()
        return RawSocket(channel: channel, collector: collector)
    }

    func send(_ id: UInt64, _ body: WireFrame.OneOf_Body) async throws {
        var buffer = ByteBuffer()
        try FrameEncoder().encode(data: OutboundFrame(id: id, body), out: &buffer)
        try await channel.writeAndFlush(buffer)
    }

    func sendRaw(length: UInt32, id: UInt64, body: [UInt8]) async throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(length)
        buffer.writeInteger(id)
        buffer.writeBytes(body)
        try await channel.writeAndFlush(buffer)
    }

    /// The frame answering `id`, waiting at most 5 s.
    func answer(to id: UInt64) async throws -> WireFrame.OneOf_Body? {
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
    func closedBySidecar() async -> Bool {
        for _ in 0..<250 {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    static func hello(version: UInt32 = HostProtocol.version, system: String = "test", role: WirePeerRole = .host) -> WireFrame.OneOf_Body {
        var hello = WireHello()
        hello.protocolVersion = version
        hello.system = system
        hello.role = role
        hello.name = "raw"
        return .hello(hello)
    }
}

private func failureCode(_ body: WireFrame.OneOf_Body?) -> TroupeError.Code? {
    guard case .failure(let failure) = body else { return nil }
    return TroupeError(failure).code
}

@Suite("Handshake and hostile input at the sidecar", .serialized)
struct HandshakeTests {
    @Test func unknownProtocolVersionIsRefusedWithAClearErrorAndClosed() async throws {
        try await withSidecar(host: false) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(version: 99))
            let answer = try await raw.answer(to: 1)
            #expect(failureCode(answer) == .failedPrecondition)
            if case .failure(let failure) = answer {
                #expect(failure.message.contains("version 99"))
                #expect(failure.details["supported"] == "\(HostProtocol.version)")
            }
            #expect(await raw.closedBySidecar())
        }
    }

    @Test func helloForAnotherSystemIsRefused() async throws {
        try await withSidecar(host: false) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(system: "other"))
            #expect(failureCode(try await raw.answer(to: 1)) == .failedPrecondition)
            #expect(await raw.closedBySidecar())
        }
    }

    @Test func requestBeforeHelloIsRefusedAndClosed() async throws {
        try await withSidecar(host: false) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, .listActors(WireListActorsRequest()))
            #expect(failureCode(try await raw.answer(to: 1)) == .failedPrecondition)
            #expect(await raw.closedBySidecar())
        }
    }

    @Test func silentConnectionIsClosedAfterTheHandshakeTimeout() async throws {
        try await withSidecar(host: false, configure: { $0.handshakeTimeoutMs = 200 }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            #expect(await raw.closedBySidecar())
        }
    }

    @Test func oversizedAndGarbageFramesGetTypedErrorsAndTheConnectionStaysUsable() async throws {
        try await withSidecar(configure: { $0.maxFrameBytes = 2048 }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(role: .client))
            guard case .welcome(let welcome) = try await raw.answer(to: 1) else {
                Issue.record("no welcome")
                return
            }
            #expect(welcome.maxFrameBytes == 2048)
            // 1 MiB announced and sent: skipped, answered, connection kept.
            try await raw.sendRaw(length: 1 << 20, id: 3, body: [UInt8](repeating: 0x55, count: 1 << 20))
            #expect(failureCode(try await raw.answer(to: 3)) == .resourceExhausted)
            try await raw.sendRaw(length: 5, id: 5, body: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            #expect(failureCode(try await raw.answer(to: 5)) == .invalidArgument)
            var request = WireInvokeRequest()
            request.actor.name = "echo"
            request.action = "echo"
            request.payload.typeURL = "application/json"
            request.payload.value = Data("\"hi\"".utf8)
            try await raw.send(7, .invoke(request))
            guard case .invoked(let response) = try await raw.answer(to: 7) else {
                Issue.record("the connection did not survive the bad frames")
                return
            }
            #expect(String(decoding: response.payload.value, as: UTF8.self) == "\"hi\"")
            #expect(raw.channel.isActive)
            try await raw.channel.close()
        }
    }

    @Test func tooManyOutstandingRequestsAreRefused() async throws {
        try await withSidecar(configure: { $0.maxConcurrentRequests = 2 }) { sidecar in
            let raw = try await RawSocket.connect(sidecar.configuration.socket)
            try await raw.send(1, RawSocket.hello(role: .client))
            _ = try await raw.answer(to: 1)
            var request = WireInvokeRequest()
            request.actor.name = "sleeper"
            request.action = "sleep"
            request.payload.typeURL = "application/json"
            request.payload.value = Data("300".utf8)
            for id in [3, 5, 7] as [UInt64] { try await raw.send(id, .invoke(request)) }
            #expect(failureCode(try await raw.answer(to: 7)) == .resourceExhausted)
            #expect(failureCode(try await raw.answer(to: 3)) == nil)
            try await raw.channel.close()
        }
    }
}
