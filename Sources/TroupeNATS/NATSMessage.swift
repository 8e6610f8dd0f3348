import CNats

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One NATS message, copied out of libnats: it owns its bytes and may cross threads.
public struct NATSMessage: Sendable, Equatable {
    public var subject: String
    /// Where an answer goes, for a request; nil for a plain publish.
    public var replyTo: String?
    /// NATS headers (one value per key; the first when the sender set several).
    public var headers: [String: String]
    public var payload: [UInt8]

    public init(subject: String, replyTo: String? = nil, headers: [String: String] = [:], payload: [UInt8] = []) {
        self.subject = subject
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }

    /// Copies a libnats message. The caller still owns and destroys `message`.
    init(copying message: OpaquePointer) {
        subject = String(cString: natsMsg_GetSubject(message))
        if let reply = natsMsg_GetReply(message), reply.pointee != 0 {
            replyTo = String(cString: reply)
        } else {
            replyTo = nil
        }
        let length = Int(natsMsg_GetDataLength(message))
        if length > 0, let data = natsMsg_GetData(message) {
            payload = Array(UnsafeRawBufferPointer(start: data, count: length))
        } else {
            payload = []
        }
        headers = [:]
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(message, &keys, &count) == NATS_OK, let keys else { return }
        defer { free(UnsafeMutableRawPointer(keys)) }
        for index in 0..<Int(count) {
            guard let key = keys[index] else { continue }
            var value: UnsafePointer<CChar>?
            if natsMsgHeader_Get(message, key, &value) == NATS_OK, let value {
                headers[String(cString: key)] = String(cString: value)
            }
        }
    }
}

/// A change of the connection's state, as libnats reports it.
public enum NATSConnectionEvent: Sendable, Equatable {
    /// The connection to the server was lost; libnats is reconnecting. Requests in flight failed
    /// with `unavailable`; publishes are buffered up to ``NATSOptions/reconnectBufferBytes``.
    case disconnected
    /// Connected again (to `url`); subscriptions were restored.
    case reconnected(url: String)
    /// Closed for good: by ``NATSConnection/close()``, a finished drain, or reconnect attempts
    /// used up.
    case closed
}
