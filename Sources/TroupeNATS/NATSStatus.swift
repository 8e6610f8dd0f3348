import CNats
import TroupeWire

/// Turns a libnats status into the typed error callers see.
///
/// The message names what was attempted and adds libnats' own explanation (for example the
/// server's "Authorization Violation"), which libnats keeps per thread.
func natsError(_ status: natsStatus, _ what: String) -> TroupeError {
    var text = String(cString: natsStatus_GetText(status))
    var lastStatus = NATS_OK
    if let last = nats_GetLastError(&lastStatus), lastStatus == status {
        let detail = String(cString: last)
        if !detail.isEmpty, detail != text { text += " (\(detail))" }
    }
    let message = "\(what): \(text)"
    let details = ["nats_status": String(cString: natsStatus_GetText(status))]
    switch status {
    // A server that closes the connection in the handshake (a refused TLS client certificate)
    // shows as a protocol error: the server is unusable to us, as when unreachable.
    case NATS_NO_RESPONDERS, NATS_NO_SERVER, NATS_CONNECTION_CLOSED, NATS_CONNECTION_DISCONNECTED, NATS_IO_ERROR,
        NATS_STALE_CONNECTION, NATS_SSL_ERROR, NATS_DRAINING, NATS_NOT_YET_CONNECTED, NATS_PROTOCOL_ERROR:
        return .unavailable(message, details: details)
    case NATS_TIMEOUT:
        return .deadlineExceeded(message, details: details)
    case NATS_CONNECTION_AUTH_FAILED:
        return TroupeError(.unauthenticated, message, details: details)
    case NATS_NOT_PERMITTED:
        return TroupeError(.permissionDenied, message, details: details)
    case NATS_MAX_PAYLOAD, NATS_SLOW_CONSUMER, NATS_INSUFFICIENT_BUFFER, NATS_NO_MEMORY:
        return .resourceExhausted(message, details: details)
    case NATS_INVALID_ARG, NATS_INVALID_SUBJECT, NATS_INVALID_QUEUE_NAME, NATS_ADDRESS_MISSING:
        return .invalidArgument(message, details: details)
    case NATS_NOT_FOUND:
        return .notFound(message, details: details)
    case NATS_ERR:
        // Unreadable files (credentials, certificates) and protocol errors end up here.
        return .failedPrecondition(message, details: details)
    default:
        return .internalError(message, details: details)
    }
}

/// Throws `natsError(status, what)` unless `status` is `NATS_OK`.
func check(_ status: natsStatus, _ what: @autoclosure () -> String) throws(TroupeError) {
    guard status == NATS_OK else { throw natsError(status, what()) }
}
