import SQLiteNIO
import TroupeWire

/// Turns whatever sqlite-nio throws into the typed errors the ``StateStore`` contract promises.
enum SQLiteErrors {
    /// An error while opening `path`: lock contention and foreign files get their own message,
    /// because the operator has to act on them (stop the other sidecar, fix the path).
    static func opening(_ error: any Error, path: String) -> TroupeError {
        if let error = error as? TroupeError { return error }
        if let error = error as? SQLiteError {
            if isLockContention(error) {
                return .failedPrecondition(
                    "state file \(path) is in use by another process",
                    details: ["path": path]
                )
            }
            if isForeignFile(error) {
                return .failedPrecondition(
                    "state file \(path) is not a Troupe state database (\(error.message))",
                    details: ["path": path]
                )
            }
        }
        return .unavailable("state store: cannot open \(path): \(describe(error))", details: ["path": path])
    }

    /// An error during an operation on an open store.
    static func operating(_ error: any Error) -> TroupeError {
        if let error = error as? TroupeError { return error }
        return .unavailable("state store: \(describe(error))")
    }

    private static func isLockContention(_ error: SQLiteError) -> Bool {
        switch error.reason {
        case .busy, .busyTimeout, .busyInRecovery, .busyInSnapshot, .locked:
            return true
        default:
            // Extended codes sqlite-nio does not know arrive as `.error`; the message still says it.
            return error.message.contains("database is locked")
        }
    }

    private static func isForeignFile(_ error: SQLiteError) -> Bool {
        switch error.reason {
        case .notADatabase, .corrupt, .corruptIndex, .corruptSequenceSchema, .corruptVirtualTable:
            return true
        default:
            return false
        }
    }

    private static func describe(_ error: any Error) -> String {
        (error as? SQLiteError)?.message ?? String(describing: error)
    }
}
