import PostgresNIO
import TroupeWire

/// Turns whatever postgres-nio throws into the typed errors the ``StateStore`` contract promises.
///
/// Messages are built from error codes, the server's message and the transport error only: never
/// from the configuration or the query binds, so no password or state ends up in a message.
enum PostgresErrors {
    /// An error while opening the store at `target` (a URL without password).
    static func opening(_ error: any Error, target: String) -> TroupeError {
        if let error = error as? TroupeError { return error }
        if isAuthentication(error) {
            return TroupeError(
                .unauthenticated,
                "state store: \(target) refused the credentials: \(describe(error))",
                details: ["store": target]
            )
        }
        return .unavailable("state store: cannot open \(target): \(describe(error))", details: ["store": target])
    }

    /// An error during an operation on an open store.
    static func operating(_ error: any Error) -> TroupeError {
        if let error = error as? TroupeError { return error }
        if error is PostgresDecodingError {
            return TroupeError(.dataLoss, "state store: a stored value has an unexpected type: \(describe(error))")
        }
        return .unavailable("state store: \(describe(error))")
    }

    /// The first error a transaction hit; postgres-nio wraps it.
    private static func unwrapped(_ error: any Error) -> any Error {
        guard let transaction = error as? PostgresTransactionError else { return error }
        return transaction.beginError ?? transaction.closureError ?? transaction.commitError ?? error
    }

    private static func isAuthentication(_ error: any Error) -> Bool {
        guard let error = unwrapped(error) as? PSQLError else { return false }
        switch error.code {
        case .authMechanismRequiresPassword, .unsupportedAuthMechanism, .saslError:
            return true
        case .server:
            // Class 28: invalid authorization specification (wrong password, unknown role).
            return error.serverInfo?[.sqlState]?.hasPrefix("28") ?? false
        default:
            return false
        }
    }

    static func describe(_ error: any Error) -> String {
        let error = unwrapped(error)
        if let error = error as? TroupeError { return error.message }
        // PSQLError's description is deliberately generic; compose a safe one from its parts.
        guard let error = error as? PSQLError else { return String(describing: error) }
        if error.code == .server, let info = error.serverInfo {
            let message = info[.message] ?? "server error"
            return "\(message) (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying {
            return "\(error.code): \(String(describing: underlying))"
        }
        return "\(error.code)"
    }
}
