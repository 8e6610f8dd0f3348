import Foundation

/// A throwaway certificate authority in a temporary directory, made with the `openssl` command,
/// and the cluster certificates it signs: each names its ActorSystem as the URI SAN
/// `troupe://SYSTEM/NODE`, for TLS client and server use.
public struct TestClusterCA: Sendable {
    public let directory: String
    /// The CA certificate, PEM.
    public var caFile: String { directory + "/ca.crt" }

    /// The files one node is configured with.
    public struct NodeFiles: Sendable {
        public let certificate: String
        public let key: String
        public let ca: String
    }

    public init(name: String = "troupe-test-ca") throws {
        directory = NSTemporaryDirectory() + "troupe-ca-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try TestCertificates.run(
            """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
              -days 2 -subj '/CN=\(name)'
            """)
    }

    /// A certificate and key signed by this CA for `node`, naming `uris` (by default
    /// `troupe://SYSTEM/NODE`; empty names no URI at all), under `DIRECTORY/NODE.crt|.key`, with
    /// `trusting` as the CA file (this CA's by default).
    public func issue(node: String, system: String, uris: [String]? = nil, trusting: String? = nil) throws
        -> NodeFiles
    {
        let names = (uris ?? ["troupe://\(system)/\(node)"]).map { "URI:\($0)" }
        let san = names.isEmpty ? "" : "subjectAltName=\(names.joined(separator: ","))\\n"
        try TestCertificates.run(
            """
            set -e
            cd '\(directory)'
            printf '\(san)extendedKeyUsage=serverAuth,clientAuth\\n' > '\(node).ext'
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '\(node).key' \
              -out '\(node).csr' -subj '/CN=\(node)'
            openssl x509 -req -in '\(node).csr' -CA ca.crt -CAkey ca.key -CAcreateserial -out '\(node).crt' -days 2 \
              -extfile '\(node).ext'
            """)
        return NodeFiles(
            certificate: "\(directory)/\(node).crt", key: "\(directory)/\(node).key", ca: trusting ?? caFile)
    }

    /// Copies `files` to `destination` (each replaced in one rename, as a mounted Secret changes),
    /// under the names a Kubernetes TLS Secret uses: `tls.crt`, `tls.key`, `ca.crt`.
    @discardableResult
    public static func install(_ files: NodeFiles, in destination: String) throws -> NodeFiles {
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        let installed = NodeFiles(
            certificate: destination + "/tls.crt", key: destination + "/tls.key", ca: destination + "/ca.crt")
        for (from, to) in [
            (files.certificate, installed.certificate), (files.key, installed.key), (files.ca, installed.ca),
        ] {
            let staging = to + ".new"
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.copyItem(atPath: from, toPath: staging)
            guard rename(staging, to) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "cannot rename \(staging)"])
            }
        }
        return installed
    }

    public func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
