import Foundation
import Testing
import TroupeProto
import TroupeTestActors
import TroupeWire

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
