/// Where a sidecar listens for hosts, or where a host finds its sidecar.
///
/// Parsed from `unix:/path/to.sock`, a plain path (`/run/troupe/troupe.sock`) or
/// `tcp://127.0.0.1:7600`.
public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: Int)

    public init(parsing text: String) throws(TroupeError) {
        if text.hasPrefix("tcp://") {
            let rest = text.dropFirst("tcp://".count)
            guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
                (0...65535).contains(port)
            else {
                throw .invalidArgument("endpoint '\(text)' is not tcp://HOST:PORT")
            }
            var host = String(rest[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { throw .invalidArgument("endpoint '\(text)' has no host") }
            self = .tcp(host: host, port: port)
        } else if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard !path.isEmpty else { throw .invalidArgument("endpoint '\(text)' has no path") }
            self = .unix(path: path)
        } else if !text.isEmpty, !text.contains("://") {
            self = .unix(path: text)
        } else {
            throw .invalidArgument("endpoint '\(text)' is neither unix:PATH nor tcp://HOST:PORT")
        }
    }

    public var description: String {
        switch self {
        case .unix(let path): "unix:\(path)"
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        }
    }
}
