public import NIOCore
public import NIOEmbedded

extension EmbeddedChannel {
    /// Delivers `bytes` as what the peer sent, in chunks whose size depends on the input's
    /// length (so frames also arrive split across reads), runs the loop after each, and throws
    /// away what the pipeline writes back. Stops early once the pipeline closed the channel.
    /// Then moves the loop's clock on by `time`, so timers such as the handshake timeout fire.
    public func feed(_ bytes: UnsafeRawBufferPointer, thenAdvanceBy time: TimeAmount) {
        let chunk = 1 + bytes.count % 61
        var offset = 0
        while offset < bytes.count, isActive {
            let end = min(bytes.count, offset + chunk)
            var buffer = allocator.buffer(capacity: end - offset)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            _ = try? writeInbound(buffer)
            embeddedEventLoop.run()
            discardOutbound()
            offset = end
        }
        embeddedEventLoop.advanceTime(by: time)
        discardOutbound()
    }

    private func discardOutbound() {
        while (try? readOutbound(as: ByteBuffer.self)) != nil {}
    }
}
