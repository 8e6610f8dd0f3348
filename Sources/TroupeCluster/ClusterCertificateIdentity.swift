public import NIOSSL
import X509

/// Which ActorSystem a cluster certificate is for: a URI subject alternative name
/// `troupe://SYSTEM`, optionally followed by `/NODE` (which is not checked: all nodes of a
/// system are equal peers, and one Secret usually serves every pod of it).
public enum ClusterCertificateIdentity {
    public static let scheme = "troupe"

    /// The URI a certificate of `system` carries.
    public static func uri(system: String) -> String { "\(scheme)://\(system)" }

    /// The ActorSystems `certificate` names; empty if it has no `troupe://` URI or cannot be read.
    public static func systems(of certificate: NIOSSLCertificate) -> [String] {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der),
            let names = try? parsed.extensions.subjectAlternativeNames
        else { return [] }
        return names.compactMap { name in
            guard case .uniformResourceIdentifier(let uri) = name else { return nil }
            return system(in: uri)
        }
    }

    /// The SYSTEM of `troupe://SYSTEM[/NODE]`, or nil for another URI.
    static func system(in uri: String) -> String? {
        let prefix = "\(scheme)://"
        guard uri.hasPrefix(prefix) else { return nil }
        let system = uri.dropFirst(prefix.count).prefix { $0 != "/" }
        return system.isEmpty ? nil : String(system)
    }
}
