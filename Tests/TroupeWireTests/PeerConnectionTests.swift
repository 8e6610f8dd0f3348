import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeProto
import TroupeTestActors

@testable import TroupeWire

/// A sidecar-side peer for these tests: answers Hello, echoes invokes after an optional delay,
/// never answers actions named "never", and records cancels.
private final class EchoPeer: PeerRequestHandler {
    let cancels = Mutex<[UInt64]>([])

    func handle(request: WireFrame.OneOf_Body, id: UInt64, on connection: PeerConnection) {
        switch request {
        case .hello:
            var welcome = WireWelcome()
            welcome.protocolVersion = HostProtocol.version
            welcome.maxFrameBytes = 1024
            welcome.heartbeatIntervalMs = 1000
            connection.respond(to: id, with: .welcome(welcome))
        case .invoke(let invoke):
            if invoke.action == "never" { return }
            let delay = Int64(invoke.timeoutMs)
            connection.eventLoop.scheduleTask(in: .milliseconds(delay)) {
                var response = WireInvokeResponse()
                response.payload = invoke.payload
                connection.respond(to: id, with: .invoked(response))
            }
        default:
            connection.fail(id, with: .invalidArgument("unexpected"))
        }
    }

    func peerCancelled(id: UInt64, on connection: PeerConnection) {
        cancels.withLock { $0.append(id) }
    }
}

private struct Server {
    let channel: any Channel
    let path: String
    let peer: EchoPeer

    static func start(maxFrameBytes: UInt32 = 1024) async throws -> Server {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "troupe-wire-\(UUID().uuidString.prefix(8)).sock"
        ).path
        let peer = EchoPeer()
        let logger = Logger(label: "test.server")
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    _ = try PeerConnection.install(
                        on: channel, side: .acceptor, maxFrameBytes: maxFrameBytes, delegate: peer, logger: logger)
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        return Server(channel: channel, path: path, peer: peer)
    }

    func connect() async throws -> PeerConnection {
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        hello.role = .client
        hello.maxFrameBytes = 1024
        let (connection, welcome) = try await PeerConnection.connect(
            to: .unix(path: path), hello: hello, delegate: nil, logger: Logger(label: "test.client"))
        #expect(welcome.maxFrameBytes == 1024)
        return connection
    }

    func stop() async {
        try? await channel.close()
        try? FileManager.default.removeItem(atPath: path)
    }
}

private func invoke(_ text: String, delayMs: UInt32 = 0, action: String = "echo") -> WireFrame.OneOf_Body {
    var request = WireInvokeRequest()
    request.action = action
    request.timeoutMs = delayMs
    request.payload.value = Data(text.utf8)
    return .invoke(request)
}

private func text(_ body: WireFrame.OneOf_Body) -> String? {
    guard case .invoked(let response) = body else { return nil }
    return String(decoding: response.payload.value, as: UTF8.self)
}

@Suite("PeerConnection over a real Unix socket")
struct PeerConnectionTests {
    @Test func manyRequestsInFlightAreMatchedToTheirAnswersInAnyOrder() async throws {
        let server = try await Server.start()
        let connection = try await server.connect()
        // Later requests are answered sooner, so answers arrive in reverse order.
        let answers = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<50 {
                group.addTask {
                    (i, text(try await connection.call(invoke("n\(i)", delayMs: UInt32(50 - i)), timeout: .seconds(5))))
                }
            }
            return try await group.reduce(into: [Int: String?]()) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 50)
        for i in 0..<50 { #expect(answers[i] == "n\(i)") }
        connection.close()
        await server.stop()
    }

    @Test func unansweredRequestTimesOutAndThePeerIsToldToCancel() async throws {
        let server = try await Server.start()
        let connection = try await server.connect()
        let error = await #expect(throws: TroupeError.self) {
            _ = try await connection.call(invoke("x", action: "never"), timeout: .milliseconds(100))
        }
        #expect(error?.code == .deadlineExceeded)
        // The cancel frame reaches the peer shortly after.
        for _ in 0..<100 where server.peer.cancels.withLock({ $0.isEmpty }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(server.peer.cancels.withLock { $0.count } == 1)
        connection.close()
        await server.stop()
    }

    @Test func aShorterTimeoutFiresWhileALongerRequestWaits() async throws {
        let server = try await Server.start()
        let connection = try await server.connect()
        let long = Task { try await connection.call(invoke("long", action: "never"), timeout: .seconds(60)) }
        for _ in 0..<500 where try await connection.outstandingRequests().get() == 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        // Sent after the long one, due long before it: the connection's timer must move earlier.
        let error = await #expect(throws: TroupeError.self) {
            _ = try await connection.call(invoke("short", action: "never"), timeout: .milliseconds(100))
        }
        #expect(error?.code == .deadlineExceeded)
        #expect(try await connection.outstandingRequests().get() == 1)
        connection.close()
        let closed = await #expect(throws: TroupeError.self) { _ = try await long.value }
        #expect(closed?.code == .unavailable)
        await server.stop()
    }

    @Test func everyRequestTimesOutAtItsOwnDeadline() async throws {
        let server = try await Server.start()
        let connection = try await server.connect()
        // Deadlines in both orders, so the timer is moved earlier and armed again after firing.
        let codes = await withTaskGroup(of: TroupeError.Code?.self) { group in
            for timeout in [150, 50, 100, 200, 50] {
                group.addTask {
                    do {
                        _ = try await connection.call(
                            invoke("x", action: "never"), timeout: .milliseconds(Int64(timeout)))
                        return nil
                    } catch {
                        return (error as? TroupeError)?.code
                    }
                }
            }
            return await group.reduce(into: [TroupeError.Code?]()) { $0.append($1) }
        }
        #expect(codes == Array(repeating: .deadlineExceeded, count: 5))
        #expect(try await connection.outstandingRequests().get() == 0)
        // The timer keeps working for requests made after it fired.
        #expect(text(try await connection.call(invoke("after"), timeout: .seconds(5))) == "after")
        connection.close()
        await server.stop()
    }

    @Test func closingTheConnectionFailsOutstandingRequestsWithUnavailable() async throws {
        let server = try await Server.start()
        let connection = try await server.connect()
        async let pending = connection.call(invoke("x", action: "never"), timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(50))
        connection.close()
        let started = ContinuousClock.now
        do {
            _ = try await pending
            Issue.record("the request should have failed")
        } catch let error as TroupeError {
            #expect(error.code == .unavailable)
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        await server.stop()
    }

    @Test func oversizedRequestFailsLocallyAndTheConnectionStaysUsable() async throws {
        let server = try await Server.start()
        let connection = try await server.connect()
        let error = await #expect(throws: TroupeError.self) {
            _ = try await connection.call(invoke(String(repeating: "x", count: 5000)), timeout: .seconds(5))
        }
        #expect(error?.code == .resourceExhausted)
        #expect(text(try await connection.call(invoke("still here"), timeout: .seconds(5))) == "still here")
        connection.close()
        await server.stop()
    }

    @Test func peerAnswersAnOversizedFrameWithResourceExhaustedAndKeepsTheConnection() async throws {
        let server = try await Server.start(maxFrameBytes: 1024)
        let connection = try await server.connect()
        // Pretend the peer accepts more than it does, so the frame is really sent.
        connection.peerMaxFrameBytes = 1 << 20
        let error = await #expect(throws: TroupeError.self) {
            _ = try await connection.call(invoke(String(repeating: "y", count: 4000)), timeout: .seconds(5))
        }
        #expect(error?.code == .resourceExhausted)
        #expect(text(try await connection.call(invoke("after"), timeout: .seconds(5))) == "after")
        connection.close()
        await server.stop()
    }

    @Test func garbageFromThePeerGetsInvalidArgumentOnItsCorrelationID() async throws {
        let server = try await Server.start()
        let raw = try await RawSocket.connect(server.path)
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        try await raw.send(1, .hello(hello))
        try await raw.sendRaw(length: 3, id: 3, body: [0xFF, 0xFF, 0xFF])
        try await raw.send(5, invokeBody())
        let frames = try await raw.receive(count: 3)
        guard case .frame(1, let welcome) = frames[0], case .welcome = welcome.body else {
            Issue.record("expected the welcome first: \(frames)")
            return
        }
        guard case .frame(3, let failure) = frames[1], case .failure(let body) = failure.body else {
            Issue.record("expected a failure for id 3: \(frames)")
            return
        }
        #expect(TroupeError(body).code == .invalidArgument)
        guard case .frame(5, let answer) = frames[2], case .invoked = answer.body else {
            Issue.record("the connection did not answer the request after the garbage: \(frames)")
            return
        }
        try await raw.channel.close()
        await server.stop()
    }
}

private func invokeBody() -> WireFrame.OneOf_Body {
    var request = WireInvokeRequest()
    request.action = "echo"
    return .invoke(request)
}
