import Foundation
public import Logging
import Metrics
public import NIOSSL
import Synchronization
public import TroupeWire

/// The PEM files of mutual TLS between the sidecars of one ActorSystem, as a Kubernetes Secret
/// or cert-manager mounts them (`tls.crt`, `tls.key`, `ca.crt`).
public struct ClusterTLSFiles: Sendable, Equatable {
    /// This node's certificate, optionally followed by intermediates.
    public var certificate: String
    /// The certificate's private key.
    public var key: String
    /// The CA certificates a peer's certificate must chain to; nothing else is trusted.
    public var ca: String

    public init(certificate: String, key: String, ca: String) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
    }
}

/// The TLS contexts of the cluster transport, loaded from ``ClusterTLSFiles`` and loaded again
/// when the files change, so rotated certificates are used without a restart.
///
/// Each new connection takes the contexts current when it opens; connections already open keep
/// the session they negotiated. Both sides present a certificate and verify the other's against
/// the configured CA only, and the certificate must name this ActorSystem
/// (``ClusterCertificateIdentity``). Host names are not verified: pods are reached by IP, and
/// the ActorSystem in the certificate is the identity that matters. Thread-safe.
public final class ClusterTLS: Sendable {
    /// The contexts new connections use.
    public struct Contexts: Sendable {
        /// For connections this node accepts: it requires and verifies a client certificate.
        public let server: NIOSSLContext
        /// For connections this node opens.
        public let client: NIOSSLContext
    }

    /// What one look at the files found.
    public enum ReloadOutcome: Sendable, Equatable {
        /// The files are as they were at the last look.
        case unchanged
        /// The files changed and new connections use them from now on.
        case reloaded
        /// The files changed but cannot be used; the contexts in use are kept.
        case rejected(TroupeError)
    }

    /// A file larger than this is not a PEM certificate or key; it is refused unread.
    public static let maxFileBytes = 1 << 20

    public let files: ClusterTLSFiles
    /// The ActorSystem every certificate must name.
    public let system: String
    private let logger: Logger
    private let state: Mutex<State>
    private let reloads = Counter(label: "troupe_cluster_tls_reloads_total")
    private let reloadFailures = Counter(label: "troupe_cluster_tls_reload_failures_total")

    /// What a look at the files saw.
    private enum Fingerprint: Equatable {
        case content([[UInt8]])
        case unreadable(String)
    }

    private struct State {
        var contexts: Contexts
        /// The content of the files the contexts were made from.
        var loaded: [[UInt8]]
        /// The last files that were refused, so they are logged once, not at every look.
        var rejected: (fingerprint: Fingerprint, error: TroupeError)?
        var generation = 1
        var refusals: [String: Int] = [:]
    }

    /// Loads the files; fails with `invalidArgument` if they cannot be read or used.
    public init(files: ClusterTLSFiles, system: String, logger: Logger) throws(TroupeError) {
        self.files = files
        self.system = system
        self.logger = logger
        let content = try Self.read(files)
        let contexts = try Self.contexts(from: content, files: files, system: system)
        state = Mutex(State(contexts: contexts, loaded: content))
    }

    /// The contexts for a connection opening now.
    public var current: Contexts { state.withLock { $0.contexts } }

    /// How many times contexts were loaded: 1 after the start, one more for each reload.
    public var generation: Int { state.withLock { $0.generation } }

    /// Handshakes refused so far, by reason (the `reason` of
    /// `troupe_cluster_tls_handshake_failures_total`).
    public var refusals: [String: Int] { state.withLock { $0.refusals } }

    func countRefusal(_ reason: String) {
        state.withLock { $0.refusals[reason, default: 0] += 1 }
        Counter(label: "troupe_cluster_tls_handshake_failures_total", dimensions: [("reason", reason)]).increment()
    }

    /// Reads the files and, if they changed, makes new contexts from them. A change that cannot
    /// be used is logged (once, not at every look) and counted, and the old contexts stay.
    @discardableResult
    public func reloadIfChanged() -> ReloadOutcome {
        let content: [[UInt8]]
        do { content = try Self.read(files) } catch {
            return reject(.unreadable(error.message), error)
        }
        let known = state.withLock { state -> ReloadOutcome? in
            if state.loaded == content { return .unchanged }
            if let rejected = state.rejected, rejected.fingerprint == .content(content) {
                return .rejected(rejected.error)
            }
            return nil
        }
        if let known { return known }
        do {
            let contexts = try Self.contexts(from: content, files: files, system: system)
            let generation = state.withLock { state in
                state.contexts = contexts
                state.loaded = content
                state.rejected = nil
                state.generation += 1
                return state.generation
            }
            reloads.increment()
            logger.info(
                "cluster TLS certificates reloaded; new connections use them",
                metadata: ["troupe.tls_generation": "\(generation)", "troupe.file": "\(files.certificate)"])
            return .reloaded
        } catch {
            return reject(.content(content), error)
        }
    }

    private func reject(_ fingerprint: Fingerprint, _ error: TroupeError) -> ReloadOutcome {
        let repeated = state.withLock { state in
            defer { state.rejected = (fingerprint, error) }
            return state.rejected?.fingerprint == fingerprint
        }
        if !repeated {
            reloadFailures.increment()
            logger.error(
                "cluster TLS files changed but cannot be used; new connections keep the previous certificates",
                metadata: ["troupe.error": "\(error.message)"])
        }
        return .rejected(error)
    }

    /// Looks at the files every `interval` until the task is cancelled.
    public func watch(every interval: Duration) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            reloadIfChanged()
        }
    }

    // MARK: Loading

    private static func read(_ files: ClusterTLSFiles) throws(TroupeError) -> [[UInt8]] {
        var content: [[UInt8]] = []
        for (setting, path) in [
            ("cluster-tls-cert", files.certificate), ("cluster-tls-key", files.key),
            ("cluster-tls-ca", files.ca),
        ] {
            let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int
            if let size, size > maxFileBytes {
                throw .invalidArgument("\(setting) \(path) has \(size) bytes, more than a PEM file can need")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .invalidArgument("\(setting) \(path) cannot be read")
            }
            content.append(Array(data))
        }
        return content
    }

    private static func contexts(from content: [[UInt8]], files: ClusterTLSFiles, system: String) throws(TroupeError)
        -> Contexts
    {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let roots: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMBytes(content[0]) } catch {
            throw .invalidArgument("cluster-tls-cert \(files.certificate) holds no PEM certificate: \(error)")
        }
        do { key = try NIOSSLPrivateKey(bytes: content[1], format: .pem) } catch {
            throw .invalidArgument("cluster-tls-key \(files.key) holds no PEM private key: \(error)")
        }
        do { roots = try NIOSSLCertificate.fromPEMBytes(content[2]) } catch {
            throw .invalidArgument("cluster-tls-ca \(files.ca) holds no PEM certificate: \(error)")
        }
        guard let leaf = chain.first else {
            throw .invalidArgument("cluster-tls-cert \(files.certificate) holds no certificate")
        }
        guard !roots.isEmpty else { throw .invalidArgument("cluster-tls-ca \(files.ca) holds no certificate") }
        let named = ClusterCertificateIdentity.systems(of: leaf)
        guard named.contains(system) else {
            throw .invalidArgument(
                "cluster-tls-cert \(files.certificate) does not name ActorSystem '\(system)' "
                    + "(it needs the URI SAN \(ClusterCertificateIdentity.uri(system: system)); it names "
                    + "\(named.isEmpty ? "none" : named.joined(separator: ", ")))")
        }
        let certificates = chain.map(NIOSSLCertificateSource.certificate)
        var server = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: certificates, privateKey: .privateKey(key), trustRoots: .certificates(roots))
        server.minimumTLSVersion = .tlsv13
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = certificates
        client.privateKey = .privateKey(key)
        client.trustRoots = .certificates(roots)
        client.certificateVerification = .noHostnameVerification
        client.minimumTLSVersion = .tlsv13
        do {
            return Contexts(
                server: try NIOSSLContext(configuration: server), client: try NIOSSLContext(configuration: client))
        } catch {
            throw .invalidArgument(
                "cluster-tls-cert \(files.certificate) and cluster-tls-key \(files.key) cannot be used together: \(error)"
            )
        }
    }
}
