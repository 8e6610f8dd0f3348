/// Whether a listener's host (as ``Endpoint`` parses it, without brackets) only accepts
/// connections from this machine, in Kubernetes from the pod's own network namespace:
/// `localhost`, 127.0.0.0/8 or `::1`. Anything else, including the wildcard addresses `0.0.0.0`
/// and `::`, is reachable from the network.
func isLoopback(host: String) -> Bool {
    let host = host.lowercased()
    if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
    let parts = host.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return false }
    return parts[0] == "127"
}
