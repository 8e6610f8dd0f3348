public import NIOCore
public import SwiftProtobuf
public import TroupeProto

/// Constants of the host protocol's framing. See docs/protocol.md.
public enum HostProtocol {
    /// The protocol major version this build speaks.
    public static let version: UInt32 = 1
    /// Bytes before each frame: a big-endian `UInt32` body length, then a big-endian `UInt64`
    /// correlation id.
    public static let headerSize = 12
    /// The default largest frame body a peer accepts.
    public static let defaultMaxFrameBytes: UInt32 = 4 * 1024 * 1024
    /// Correlation id of frames that answer nothing and expect no answer (Goodbye, Ping, Pong).
    public static let connectionFrameID: UInt64 = 0
}

/// Which side opened the connection. It decides the correlation ids each side allocates:
/// the initiator (host, client) uses odd ids, the acceptor (sidecar) even ones. So a peer can
/// always tell an answer to its own request from a new request of the other side, even when the
/// frame itself could not be read.
public enum ConnectionSide: Sendable {
    case initiator
    case acceptor

    /// True if `id` belongs to requests this side started.
    public func owns(_ id: UInt64) -> Bool {
        guard id != HostProtocol.connectionFrameID else { return false }
        switch self {
        case .initiator: return id % 2 == 1
        case .acceptor: return id % 2 == 0
        }
    }
}

/// One frame as read off the connection.
public enum InboundFrame: Sendable {
    /// A well-formed frame.
    case frame(id: UInt64, WireFrame)
    /// A frame whose body was larger than the receiver's limit. Its bytes were skipped, so the
    /// connection stays usable.
    case oversized(id: UInt64, length: UInt32)
    /// A frame of acceptable size whose body is not a valid `Frame` message.
    case malformed(id: UInt64, reason: String)
}

/// One frame to send.
public struct OutboundFrame: Sendable {
    public var id: UInt64
    public var frame: WireFrame

    public init(id: UInt64, _ body: WireFrame.OneOf_Body) {
        self.id = id
        var frame = WireFrame()
        frame.body = body
        self.frame = frame
    }
}

/// One frame's bytes as read off the connection, before its body is parsed.
public enum RawFrame: Sendable {
    /// A frame whose body is within the limit.
    case frame(id: UInt64, body: ByteBuffer)
    /// A frame whose body was larger than the limit; its bytes were skipped.
    case oversized(id: UInt64, length: UInt32)
}

/// Splits a byte stream into frames of the Troupe framing (a big-endian `UInt32` body length,
/// a big-endian `UInt64` correlation id, the body), without looking into bodies. The host
/// protocol and the cluster protocol both use it.
///
/// A body larger than `maxFrameBytes` is never buffered: its bytes are discarded as they arrive
/// and one `.oversized` is reported, so a peer can answer that single request with
/// `resourceExhausted` and keep using the connection.
public struct LengthPrefixedFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RawFrame

    private enum State {
        case header
        case skipping(remaining: Int)
    }

    public let maxFrameBytes: UInt32
    private var state: State = .header

    public init(maxFrameBytes: UInt32 = HostProtocol.defaultMaxFrameBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RawFrame? {
        while true {
            switch state {
            case .skipping(let remaining):
                let step = min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: step)
                if remaining - step > 0 {
                    state = .skipping(remaining: remaining - step)
                    return nil
                }
                state = .header
            case .header:
                guard buffer.readableBytes >= HostProtocol.headerSize,
                    let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
                    let id = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt64.self)
                else { return nil }
                if length > maxFrameBytes {
                    buffer.moveReaderIndex(forwardBy: HostProtocol.headerSize)
                    state = .skipping(remaining: Int(length))
                    return .oversized(id: id, length: length)
                }
                guard buffer.readableBytes >= HostProtocol.headerSize + Int(length) else { return nil }
                buffer.moveReaderIndex(forwardBy: HostProtocol.headerSize)
                let body = buffer.readSlice(length: Int(length)) ?? ByteBuffer()
                return .frame(id: id, body: body)
            }
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RawFrame? {
        try decode(buffer: &buffer)
    }

    /// The most bytes a connection reading with this decoder ever holds between reads: one
    /// frame of the largest size, with its header, not yet complete. Larger bodies are skipped
    /// unread, so more can only mean a broken decoder; give it to `ByteToMessageHandler` as
    /// `maximumBufferSize`, so such a connection is closed instead of growing.
    public static func maximumBufferedBytes(maxFrameBytes: UInt32) -> Int {
        Int(maxFrameBytes) + HostProtocol.headerSize
    }

    /// Appends one frame (header and body) to `buffer`.
    public static func write(id: UInt64, body: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: HostProtocol.headerSize + body.count)
        buffer.writeInteger(UInt32(body.count))
        buffer.writeInteger(id)
        buffer.writeBytes(body)
    }
}

/// Splits a byte stream into host-protocol frames; see ``LengthPrefixedFrameDecoder``.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = InboundFrame

    private var raw: LengthPrefixedFrameDecoder
    public var maxFrameBytes: UInt32 { raw.maxFrameBytes }

    public init(maxFrameBytes: UInt32 = HostProtocol.defaultMaxFrameBytes) {
        raw = LengthPrefixedFrameDecoder(maxFrameBytes: maxFrameBytes)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> InboundFrame? {
        switch try raw.decode(buffer: &buffer) {
        case nil:
            return nil
        case .oversized(let id, let length):
            return .oversized(id: id, length: length)
        case .frame(let id, let body):
            do {
                let frame = try WireFrame(serializedBytes: FrameBuffer(body: body))
                guard frame.body != nil else {
                    return .malformed(id: id, reason: "frame has no body (unknown or empty message)")
                }
                return .frame(id: id, frame)
            } catch {
                return .malformed(id: id, reason: "frame body is not a valid troupe.host.v1.Frame: \(error)")
            }
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> InboundFrame? {
        try decode(buffer: &buffer)
    }
}

/// Writes frames with their 12-byte header.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = OutboundFrame

    public init() {}

    public func encode(data: OutboundFrame, out: inout ByteBuffer) throws {
        var body: FrameBuffer = try data.frame.serializedBytes()
        var frame = body.framed(id: data.id)
        out.writeBuffer(&frame)
    }
}

/// A frame body held in a `ByteBuffer`, as swift-protobuf's byte container: a frame is parsed
/// straight from the bytes read off the connection and serialized straight into the buffer that is
/// sent, where an `[UInt8]` in between cost an allocation and a copy per frame each way.
///
/// The body is the buffer's readable bytes. A body made for serializing (by swift-protobuf, through
/// ``init(repeating:count:)``) keeps room for the frame header in front of it, so ``frame(id:)``
/// adds the header without copying the body.
public struct FrameBuffer: SwiftProtobufContiguousBytes, Sendable {
    public private(set) var body: ByteBuffer

    private static let allocator = ByteBufferAllocator()

    /// A body as read off the connection.
    public init(body: ByteBuffer) {
        self.body = body
    }

    public init(repeating byte: UInt8, count: Int) {
        var buffer = Self.allocator.buffer(capacity: HostProtocol.headerSize + count)
        buffer.writeRepeatingByte(0, count: HostProtocol.headerSize)
        buffer.moveReaderIndex(forwardBy: HostProtocol.headerSize)
        buffer.writeRepeatingByte(byte, count: count)
        body = buffer
    }

    public init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        self.init(repeating: 0, count: 0)
        body.writeBytes(sequence)
    }

    public var count: Int { body.readableBytes }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.body.withUnsafeReadableBytes(body)
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try self.body.withUnsafeMutableReadableBytes(body)
    }

    /// The whole frame to send: the header for correlation id `id`, then the body. Mutating, so
    /// that writing the header into the room kept for it finds the storage unshared and copies nothing.
    public mutating func framed(id: UInt64) -> ByteBuffer {
        let length = UInt32(body.readableBytes)
        guard body.readerIndex >= HostProtocol.headerSize else {
            var frame = Self.allocator.buffer(capacity: HostProtocol.headerSize + body.readableBytes)
            LengthPrefixedFrameDecoder.write(id: id, body: body.readableBytesView, into: &frame)
            return frame
        }
        body.moveReaderIndex(to: body.readerIndex - HostProtocol.headerSize)
        body.setInteger(length, at: body.readerIndex)
        body.setInteger(id, at: body.readerIndex + 4)
        return body
    }
}

extension WireFrame {
    /// The encoded size of this frame's body, for checking it against the peer's limit before sending.
    public var encodedSize: Int { (try? serializedBytes() as [UInt8])?.count ?? 0 }
}

extension FrameBuffer {
    /// The body of a `Frame` that carries an `ActorInvocationBatch` of `invocations`, byte for
    /// byte what swift-protobuf makes of the same frame.
    ///
    /// Encoded one invocation at a time: swift-protobuf sizes a nested message again for every
    /// message around it, so through the frame and the batch each invocation was sized three times
    /// before it was written, most of the cost of sending a batch of timer firings.
    public static func invocationBatch(_ invocations: [WireActorInvocation]) throws -> FrameBuffer {
        let parts = try invocations.map { try $0.serializedBytes() as [UInt8] }
        // ActorInvocationBatch.invocations is field 1 (tag 0x0A); Frame.actor_invocation_batch is
        // field 32, length-delimited (tag 258, a two-byte varint).
        let batchLength = parts.reduce(0) { $0 + 1 + Self.varintSize(UInt64($1.count)) + $1.count }
        var frame = FrameBuffer(repeating: 0, count: 0)
        frame.body.reserveCapacity(minimumWritableBytes: 2 + Self.varintSize(UInt64(batchLength)) + batchLength)
        frame.writeVarint(32 << 3 | 2)
        frame.writeVarint(UInt64(batchLength))
        for part in parts {
            frame.writeVarint(1 << 3 | 2)
            frame.writeVarint(UInt64(part.count))
            frame.body.writeBytes(part)
        }
        return frame
    }

    private static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    private mutating func writeVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            body.writeInteger(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        body.writeInteger(UInt8(value))
    }
}
