import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import TroupeNATS
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// Options for a test server: quick reconnects so restart tests stay short.
func testOptions(_ server: NATSServer) -> NATSOptions {
    var options = NATSOptions(servers: [server.url])
    options.name = "troupe-nats-test"
    options.connectTimeout = .seconds(2)
    options.reconnectWait = .milliseconds(50)
    return options
}

func connect(_ options: NATSOptions) async throws -> NATSConnection {
    var logger = Logger(label: "test.nats")
    logger.logLevel = .warning
    return try await NATSConnection.connect(options, logger: logger)
}

/// Collects messages a handler receives, from any thread.
final class Inbox: Sendable {
    private let messages = Mutex<[NATSMessage]>([])
    func add(_ message: NATSMessage) { messages.withLock { $0.append(message) } }
    var all: [NATSMessage] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }
}

/// Waits (at most 10 s) for the next event of `events` that `matches`.
func nextEvent(
    _ events: AsyncStream<NATSConnectionEvent>, _ matches: @escaping @Sendable (NATSConnectionEvent) -> Bool
) async throws -> NATSConnectionEvent {
    try await withThrowingTaskGroup(of: NATSConnectionEvent?.self) { group in
        group.addTask {
            for await event in events where matches(event) { return event }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: .seconds(10))
            return nil
        }
        defer { group.cancelAll() }
        guard let event = try await group.next() ?? nil else {
            throw TroupeError.deadlineExceeded("the expected NATS event did not come")
        }
        return event
    }
}

/// A count shared by tasks and threads.
final class Count: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// Answers every request on `subject` with the request's payload reversed.
func reverser(_ connection: NATSConnection, on subject: String, queue: String? = nil) async throws
    -> NATSSubscription
{
    try await connection.subscribe(to: subject, queue: queue) { message in
        guard let reply = message.replyTo else { return }
        try? connection.publish(to: reply, payload: message.payload.reversed(), headers: message.headers)
    }
}

extension SilentServer {
    /// Kills `server` once `connections` are connected to it and listens on its port, so that
    /// their reconnect attempts reach this silent server.
    static func replacing(_ server: NATSServer, for connections: [NATSConnection]) async throws -> SilentServer {
        let streams = connections.map { $0.events() }
        server.kill()
        for events in streams { _ = try await nextEvent(events) { $0 == .disconnected } }
        let silent = try await SilentServer(port: server.port)
        try await waitFor("every reconnect attempt to reach the silent server") {
            silent.connections.count >= connections.count
        }
        return silent
    }
}

@Suite("NATS connection over libnats, against a real nats-server", .serialized)
struct NATSConnectionTests {
    @Test func publishedMessageReachesEverySubscriberWithHeadersAndPayload() async throws {
        let server = try NATSServer()
        let publisher = try await connect(testOptions(server))
        let receiver = try await connect(testOptions(server))
        let first = Inbox()
        let second = Inbox()
        let a = try await receiver.subscribe(to: "news.>") { first.add($0) }
        defer { a.unsubscribe() }
        let b = try await receiver.subscribe(to: "news.sport") { second.add($0) }
        defer { b.unsubscribe() }
        // A request-reply round trip proves both interests reached the server before the publish.
        let echo = try await reverser(receiver, on: "ready")
        defer { echo.unsubscribe() }
        _ = try await publisher.request("ready", payload: [1], timeout: .seconds(5))

        try publisher.publish(to: "news.sport", payload: [1, 2, 3], headers: ["Troupe-Test": "yes"])
        try await waitFor("both subscribers") { first.count == 1 && second.count == 1 }
        #expect(
            first.all[0] == NATSMessage(subject: "news.sport", headers: ["Troupe-Test": "yes"], payload: [1, 2, 3]))
        #expect(second.all[0].payload == [1, 2, 3])
    }

    @Test func queueGroupDeliversEachMessageToOneMemberOnly() async throws {
        let server = try NATSServer()
        let connection = try await connect(testOptions(server))
        let memberA = Inbox()
        let memberB = Inbox()
        let a = try await connection.subscribe(to: "work", queue: "workers") { memberA.add($0) }
        defer { a.unsubscribe() }
        let b = try await connection.subscribe(to: "work", queue: "workers") { memberB.add($0) }
        defer { b.unsubscribe() }
        let publisher = try await connect(testOptions(server))
        let echo = try await reverser(connection, on: "ready")
        defer { echo.unsubscribe() }
        _ = try await publisher.request("ready", payload: [1], timeout: .seconds(5))

        for index in 0..<200 { try publisher.publish(to: "work", payload: [UInt8(index % 256)]) }
        try await waitFor("200 deliveries") { memberA.count + memberB.count >= 200 }
        // Let anything duplicated arrive before counting.
        _ = try await publisher.request("ready", payload: [1], timeout: .seconds(5))
        #expect(memberA.count + memberB.count == 200)
    }

    @Test func requestGetsTheResponderReply() async throws {
        let server = try NATSServer()
        let responder = try await connect(testOptions(server))
        let requester = try await connect(testOptions(server))
        let sub = try await reverser(responder, on: "reverse")
        defer { sub.unsubscribe() }
        let reply = try await requester.request(
            "reverse", payload: [1, 2, 3], headers: ["Troupe-Caller": "alpha"], timeout: .seconds(5))
        #expect(reply.payload == [3, 2, 1])
        #expect(reply.headers["Troupe-Caller"] == "alpha")
        #expect(requester.pendingRequests == 0)
    }

    @Test func requestWithoutRespondersFailsUnavailableInsteadOfWaitingForItsTimeout() async throws {
        let server = try NATSServer()
        let requester = try await connect(testOptions(server))
        // A 60 s timeout: only the server's no-responders answer can end this as unavailable.
        await expectCode(.unavailable) {
            _ = try await requester.request("nobody.listens", payload: [1], timeout: .seconds(60))
        }
        #expect(requester.pendingRequests == 0)
    }

    @Test func connectsWaitingForASilentServerLeaveTheStoresThreadPoolFree() async throws {
        let silent = try await SilentServer()
        let options = {
            var options = NATSOptions(servers: ["nats://127.0.0.1:\(silent.port)"])
            options.connectTimeout = .seconds(10)
            return options
        }()
        // As many as NIOThreadPool.singleton (where sqlite-nio runs the store) has threads.
        let waiting = System.coreCount
        let finished = Count()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<waiting {
                group.addTask {
                    _ = try? await connect(options)
                    finished.increment()
                }
            }
            try await waitFor("every connect to reach the silent server") {
                silent.connections.count == waiting
            }
            // Work of the store: served while every connect still waits for the server.
            try await NIOThreadPool.singleton.runIfActive {}
            #expect(finished.value == 0)
            try await silent.close()
        }
    }

    @Test func whileReconnectingToASilentServerCallsAnswerAtOnceAndPublishesGoOutAfterTheReconnect() async throws {
        let server = try NATSServer()
        var options = testOptions(server)
        options.connectTimeout = .seconds(5)
        let connection = try await connect(options)
        let inbox = Inbox()
        let own = try await connection.subscribe(to: "kept") { inbox.add($0) }
        defer { own.unsubscribe() }
        let silent = try await SilentServer.replacing(server, for: [connection])
        let attempt = try #require(silent.connections.first)

        // None of these may wait for the connect attempt, which holds libnats' lock.
        #expect(!connection.isConnected)
        #expect(connection.maxPayload > 0)
        await expectCode(.unavailable) {
            _ = try await connection.request("kept", payload: [1], timeout: .seconds(30))
        }
        for byte: UInt8 in 1...3 { try connection.publish(to: "kept", payload: [byte]) }
        // Had one of them waited for the attempt, libnats would have closed its socket by now.
        try await Task.sleep(for: .milliseconds(200))
        #expect(attempt.isActive)

        // What was published meanwhile reaches the subscriber, in order, after the reconnect.
        try await silent.close()
        let events = connection.events()
        try server.start()
        _ = try await nextEvent(events) {
            if case .reconnected = $0 { return true }
            return false
        }
        try await waitFor("the messages published while reconnecting") { inbox.count == 3 }
        #expect(inbox.all.map(\.payload) == [[1], [2], [3]])
        #expect(connection.isConnected)
    }

    @Test func closingWhileReconnectingToASilentServerLeavesTheCooperativePoolFree() async throws {
        let server = try NATSServer()
        var options = testOptions(server)
        options.connectTimeout = .seconds(3)
        // As many connections as the cooperative pool has threads (one per core).
        var connections: [NATSConnection] = []
        for _ in 0..<System.coreCount { connections.append(try await connect(options)) }
        let silent = try await SilentServer.replacing(server, for: connections)
        let closed = Count()
        await withTaskGroup(of: Void.self) { group in
            for connection in connections {
                group.addTask {
                    // libnats' close joins the reconnect thread, which waits out its attempt.
                    await connection.close()
                    closed.increment()
                }
            }
            // Resuming needs a cooperative thread: there is one while every close still waits.
            try? await Task.sleep(for: .milliseconds(100))
            #expect(closed.value == 0)
        }
        #expect(closed.value == connections.count)
        #expect(connections.allSatisfy { $0.isClosed })
        try await silent.close()
    }

    @Test func releasingAConnectionWhileItReconnectsDoesNotWaitForTheReconnectAttempt() async throws {
        let server = try NATSServer()
        var options = testOptions(server)
        options.connectTimeout = .seconds(3)
        let held = Mutex<NATSConnection?>(try await connect(options))
        let silent = try await SilentServer.replacing(server, for: [try #require(held.withLock { $0 })])
        let attempt = try #require(silent.connections.first)
        // The last reference goes here: the connection is destroyed without being closed first.
        held.withLock { $0 = nil }
        // Had the release waited for the attempt, libnats would have closed its socket by now.
        try await Task.sleep(for: .milliseconds(200))
        #expect(attempt.isActive)
        // The destroy still happens, on the blocking pool: the attempt ends and its socket closes.
        try await attempt.closeFuture.get()
        try await silent.close()
    }

    @Test func requestNobodyAnswersFailsWithDeadlineExceeded() async throws {
        let server = try NATSServer()
        let connection = try await connect(testOptions(server))
        let silent = try await connection.subscribe(to: "silent") { _ in }
        defer { silent.unsubscribe() }
        await expectCode(.deadlineExceeded) {
            _ = try await connection.request("silent", payload: [1], timeout: .milliseconds(200))
        }
        #expect(connection.pendingRequests == 0)
    }

    @Test func requestInFlightFailsUnavailableWhenTheServerDies() async throws {
        let server = try NATSServer()
        let connection = try await connect(testOptions(server))
        let silent = try await connection.subscribe(to: "silent") { _ in }
        defer { silent.unsubscribe() }
        let pending = Task { try await connection.request("silent", payload: [1], timeout: .seconds(60)) }
        try await waitFor("the request to be sent") { connection.pendingRequests == 1 }
        server.kill()
        await expectCode(.unavailable) { _ = try await pending.value }
        // While reconnecting, a new request fails at once rather than waiting for the server.
        await expectCode(.unavailable) {
            _ = try await connection.request("silent", payload: [1], timeout: .seconds(60))
        }
    }

    @Test func serverRestartReconnectsAndSubscriptionsServeAgain() async throws {
        let server = try NATSServer()
        let responder = try await connect(testOptions(server))
        let requester = try await connect(testOptions(server))
        let sub = try await reverser(responder, on: "reverse")
        defer { sub.unsubscribe() }
        #expect(try await requester.request("reverse", payload: [1, 2], timeout: .seconds(5)).payload == [2, 1])

        let events = requester.events()
        server.kill()
        #expect(try await nextEvent(events) { $0 == .disconnected } == .disconnected)
        try server.start()
        let reconnected = try await nextEvent(events) {
            if case .reconnected = $0 { return true }
            return false
        }
        #expect(reconnected == .reconnected(url: server.url))
        // The responder reconnects on its own schedule; its subscription is restored with it.
        try await waitFor("the responder to be back") {
            (try? await requester.request("reverse", payload: [5, 6], timeout: .seconds(1)).payload) == [6, 5]
        }
        #expect(requester.isConnected)
    }

    @Test func rightUserAndPasswordConnectAndWrongOnesAreRefusedAsUnauthenticated() async throws {
        let server = try NATSServer(arguments: ["--user", "troupe", "--pass", "s3cret"])
        var options = testOptions(server)
        options.user = "troupe"
        options.password = "s3cret"
        let connection = try await connect(options)
        let sub = try await reverser(connection, on: "reverse")
        defer { sub.unsubscribe() }
        #expect(try await connection.request("reverse", payload: [1, 2], timeout: .seconds(5)).payload == [2, 1])

        options.password = "wrong"
        await expectCode(.unauthenticated) { _ = try await connect(options) }
        options.user = nil
        options.password = nil
        await expectCode(.unauthenticated) { _ = try await connect(options) }
    }

    @Test func rightTokenConnectsAndAWrongOneIsRefused() async throws {
        let server = try NATSServer(arguments: ["--auth", "t0ken"])
        var options = testOptions(server)
        options.token = "t0ken"
        let connection = try await connect(options)
        #expect(connection.isConnected)
        options.token = "other"
        await expectCode(.unauthenticated) { _ = try await connect(options) }
    }

    @Test func mutualTLSConnectsWithTheRightCAAndClientCertificateOnly() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try NATSServer(arguments: [
            "--tls", "--tlscert", certificates.serverCertificate, "--tlskey", certificates.serverKey,
            "--tlscacert", certificates.caFile, "--tlsverify",
        ])
        var options = testOptions(server)
        options.tlsCAFile = certificates.caFile
        options.tlsCertificateFile = certificates.clientCertificate
        options.tlsKeyFile = certificates.clientKey
        let connection = try await connect(options)
        let sub = try await reverser(connection, on: "reverse")
        defer { sub.unsubscribe() }
        #expect(try await connection.request("reverse", payload: [1, 2], timeout: .seconds(5)).payload == [2, 1])

        var noClientCertificate = options
        noClientCertificate.tlsCertificateFile = nil
        noClientCertificate.tlsKeyFile = nil
        await expectCode(.unavailable) { _ = try await connect(noClientCertificate) }
        var otherCA = options
        otherCA.tlsCAFile = certificates.otherCAFile
        await expectCode(.unavailable) { _ = try await connect(otherCA) }
        var missingFile = options
        missingFile.tlsCAFile = certificates.directory + "/missing.pem"
        do {
            _ = try await connect(missingFile)
            Issue.record("a missing CA file was accepted")
        } catch let error as TroupeError {
            #expect(error.message.contains("missing.pem"), "\(error)")
        }
    }

    @Test func contradictoryOrUnusableOptionsAreRefusedWithTheReason() async throws {
        let server = try NATSServer()
        var options = testOptions(server)
        options.user = "only-user"
        await expectCode(.invalidArgument) { _ = try await connect(options) }
        options = testOptions(server)
        options.tlsCertificateFile = "/tmp/cert.pem"
        await expectCode(.invalidArgument) { _ = try await connect(options) }
        options = testOptions(server)
        options.credentialsFile = "/nonexistent/troupe.creds"
        do {
            _ = try await connect(options)
            Issue.record("a missing credentials file was accepted")
        } catch let error as TroupeError {
            #expect(error.message.contains("/nonexistent/troupe.creds"), "\(error)")
        }
        await expectCode(.unavailable) { _ = try await connect(NATSOptions(servers: ["nats://127.0.0.1:1"])) }
    }

    @Test func payloadAboveTheServerLimitIsRefusedAsResourceExhausted() async throws {
        let server = try NATSServer()
        let connection = try await connect(testOptions(server))
        let tooBig = [UInt8](repeating: 7, count: connection.maxPayload + 1)
        await expectCode(.resourceExhausted) { try connection.publish(to: "big", payload: tooBig) }
        await expectCode(.resourceExhausted) {
            _ = try await connection.request("big", payload: tooBig, timeout: .seconds(5))
        }
        #expect(connection.isConnected)
    }

    @Test func aDrainedSubscriptionHandsOverWhatArrivedThenStops() async throws {
        let server = try NATSServer()
        let connection = try await connect(testOptions(server))
        let received = Inbox()
        let subscription = try await connection.subscribe(to: "drain.one") { received.add($0) }
        for index in 0..<20 { try connection.publish(to: "drain.one", payload: [UInt8(index)]) }
        try await connection.flush()
        await subscription.drain(timeout: .seconds(5))
        #expect(received.all.map(\.payload) == (0..<20).map { [UInt8($0)] })
        try connection.publish(to: "drain.one", payload: [99])
        try await connection.flush()
        try await Task.sleep(for: .milliseconds(100))
        #expect(received.count == 20)
    }

    @Test func drainDeliversWhatWasPublishedThenCloses() async throws {
        let server = try NATSServer()
        let connection = try await connect(testOptions(server))
        let messages = try await connection.messages(on: "drained")
        let publisher = try await connect(testOptions(server))
        let echo = try await reverser(connection, on: "ready")
        defer { echo.unsubscribe() }
        _ = try await publisher.request("ready", payload: [1], timeout: .seconds(5))
        for index in 0..<10 { try publisher.publish(to: "drained", payload: [UInt8(index)]) }
        await publisher.drain(timeout: .seconds(5))
        #expect(publisher.isClosed)

        var received: [UInt8] = []
        for await message in messages {
            received.append(contentsOf: message.payload)
            if received.count == 10 { break }
        }
        #expect(received == Array(0..<10))
        let events = connection.events()
        await connection.drain(timeout: .seconds(5))
        #expect(connection.isClosed)
        #expect(try await nextEvent(events) { $0 == .closed } == .closed)
        await expectCode(.unavailable) { _ = try await connection.request("ready", payload: [1], timeout: .seconds(1)) }
    }
}
