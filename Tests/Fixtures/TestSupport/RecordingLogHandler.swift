public import Logging
import Synchronization

/// Log entries kept for a test to read.
public final class RecordedLogs: Sendable {
    public struct Entry: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: Logger.Metadata
    }

    private let storage = Mutex<[Entry]>([])

    public init() {}

    public var entries: [Entry] { storage.withLock { $0 } }

    /// The entries whose message is `message`.
    public func entries(_ message: String) -> [Entry] { entries.filter { $0.message == message } }

    public func append(_ entry: Entry) { storage.withLock { $0.append(entry) } }
}

/// Keeps every line logged at or above its level in ``RecordedLogs``, with the logger's metadata,
/// its metadata provider's and the line's own merged as swift-log's handlers do.
public struct RecordingLogHandler: LogHandler {
    public let logs: RecordedLogs
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level

    public init(logs: RecordedLogs, level: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil) {
        self.logs = logs
        self.logLevel = level
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let provided = metadataProvider?.get() ?? [:]
        logs.append(
            .init(
                level: event.level, message: event.message.description,
                metadata: metadata.merging(provided) { $1 }.merging(event.metadata ?? [:]) { $1 }))
    }
}

extension Logger {
    /// A logger whose lines go to `logs`.
    public static func recording(
        _ label: String, into logs: RecordedLogs, level: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil
    ) -> Logger {
        Logger(label: label) { _ in RecordingLogHandler(logs: logs, level: level, metadataProvider: metadataProvider) }
    }
}
