import Logging
import NIOCore
import NIOSSL
import NIOTLS
import TroupeProto
import TroupeWire

/// Sits behind the TLS handler of a cluster connection and lets nothing through until the peer
/// proved it belongs to this ActorSystem: its certificate chains to the configured CA (checked by
/// the TLS handler) and names the system (checked here, once the TLS handshake completed).
///
/// Every refusal is logged with the peer's address and counted by reason
/// (`troupe_cluster_tls_handshake_failures_total{reason}`): `untrusted_certificate`,
/// `no_certificate`, `wrong_system`, `not_tls`, `refused_by_peer` (the peer did not accept this
/// node's certificate), `closed_during_handshake` or `handshake_failed`. The next handler gets the
/// refusal as a ``TroupeError`` through `errorCaught`, so a dialling node's calls fail with it.
final class ClusterTLSGate: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State {
        /// The TLS handshake is under way.
        case handshaking
        /// The peer's certificate is accepted; until its first bytes arrive, an error is still
        /// a refusal (with TLS 1.3 a server refuses a client certificate after the client
        /// considers the handshake done).
        case verified
        /// Bytes arrived: the gate stands aside.
        case open
        case refused
    }

    private let tls: ClusterTLS
    private let accepting: Bool
    private var logger: Logger
    private var state = State.handshaking

    init(tls: ClusterTLS, accepting: Bool, logger: Logger) {
        self.tls = tls
        self.accepting = accepting
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        logger[metadataKey: "troupe.peer"] = "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshaking = state, let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent
        else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
        let named = certificate.map(ClusterCertificateIdentity.systems(of:)) ?? []
        guard named.contains(tls.system) else {
            let error = TroupeError(
                .permissionDenied,
                "the cluster peer's certificate is for ActorSystem "
                    + "\(named.isEmpty ? "(none)" : named.joined(separator: ", ")), not \(tls.system)",
                details: ["system": tls.system])
            refuse(context: context, reason: "wrong_system", error: error)
            return
        }
        state = .verified
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .open:
            context.fireChannelRead(data)
        case .verified:
            state = .open
            context.fireChannelRead(data)
        case .handshaking, .refused:
            break  // nothing from a peer that has not proved who it is
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .open:
            context.fireErrorCaught(error)
        case .refused:
            break
        case .handshaking, .verified:
            // Not a TLS failure (a reset connection, an event loop shutting down): no refusal.
            guard let reason = Self.reason(of: error) else {
                context.fireErrorCaught(error)
                return
            }
            refuse(
                context: context, reason: reason,
                error: .unavailable(
                    "TLS handshake with the cluster peer failed (\(reason)): \(error)", details: ["reason": reason]))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .handshaking = state, accepting == false {
            // The peer hung up without a word: the dialling side says why its call fails.
            let error = TroupeError.unavailable("the cluster peer closed the connection during the TLS handshake")
            state = .refused
            context.fireErrorCaught(error)
        }
        context.fireChannelInactive()
    }

    private func refuse(context: ChannelHandlerContext, reason: String, error: TroupeError) {
        state = .refused
        logger.warning(
            "cluster TLS handshake refused",
            metadata: [
                "troupe.reason": "\(reason)", "troupe.error": "\(error.message)",
                "troupe.side": "\(accepting ? "accepting" : "connecting")",
            ])
        tls.countRefusal(reason)
        if accepting, reason == "wrong_system" {
            // The TLS session is up, so the dialling node can be told why in its own protocol.
            var refused = ClusterHandshakeRefused()
            refused.failure = error.wire
            var envelope = ClusterEnvelope()
            envelope.refused = refused
            if let body = try? envelope.serializedBytes() as [UInt8] {
                var buffer = context.channel.allocator.buffer(capacity: HostProtocol.headerSize + body.count)
                LengthPrefixedFrameDecoder.write(id: 0, body: body, into: &buffer)
                context.writeAndFlush(NIOAny(buffer), promise: nil)
            }
        }
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    /// The reason label of a TLS failure, from BoringSSL's error names; nil for an error that
    /// is not one.
    static func reason(of error: any Error) -> String? {
        let text: String
        switch error {
        case NIOSSLError.uncleanShutdown: return "closed_during_handshake"
        case NIOSSLError.handshakeFailed(let boring): text = "\(boring)"
        case let boring as BoringSSLError: text = "\(boring)"
        case is NIOSSLError: return "handshake_failed"
        default: return nil
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") { return "untrusted_certificate" }
        if text.contains("ALERT") { return "refused_by_peer" }
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") {
            return "no_certificate"
        }
        let notTLS = [
            "WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "UNEXPECTED_RECORD",
        ]
        if notTLS.contains(where: text.contains) { return "not_tls" }
        return "handshake_failed"
    }
}
