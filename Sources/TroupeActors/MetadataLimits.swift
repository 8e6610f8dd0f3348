public import TroupeWire

/// How much metadata one invocation or broadcast may carry: metadata travels with every call the
/// actor makes on its behalf (forwards, pipes, side effects), so an unbounded map from one peer
/// would be copied into every hop.
public struct MetadataLimits: Sendable, Equatable {
    /// The most entries.
    public var maxEntries: Int
    /// The most bytes of keys and values together, in UTF-8.
    public var maxBytes: Int

    public static let defaultMaxEntries = 64
    public static let defaultMaxBytes = 16 * 1024

    public init(maxEntries: Int = Self.defaultMaxEntries, maxBytes: Int = Self.defaultMaxBytes) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }

    /// Refuses `metadata` beyond the limits.
    ///
    /// - Throws: `invalidArgument` naming the limit (`max-metadata-entries` or
    ///   `max-metadata-bytes`), with `limit` and `size` in its details.
    public func check(_ metadata: [String: String]) throws(TroupeError) {
        guard metadata.count <= maxEntries else {
            throw .invalidArgument(
                "metadata has \(metadata.count) entries; this sidecar takes at most \(maxEntries) (max-metadata-entries)",
                details: ["limit": "\(maxEntries)", "size": "\(metadata.count)"])
        }
        var bytes = 0
        for (key, value) in metadata { bytes += key.utf8.count + value.utf8.count }
        guard bytes <= maxBytes else {
            throw .invalidArgument(
                "metadata has \(bytes) bytes of keys and values; this sidecar takes at most \(maxBytes) (max-metadata-bytes)",
                details: ["limit": "\(maxBytes)", "size": "\(bytes)"])
        }
    }
}
