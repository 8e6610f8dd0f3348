import Crypto

/// A secret that peers must present (the host secret, the admin token), kept only as its
/// SHA-256 digest so it is never printed by accident.
///
/// ``matches(_:)`` hashes the candidate and compares the two digests byte by byte without
/// stopping at the first difference: the time it takes does not depend on how much of a guess
/// is right, and hashing first hides the secret's length too.
struct SharedSecret: Sendable, CustomStringConvertible {
    private let digest: [UInt8]

    init(_ secret: String) {
        digest = Array(SHA256.hash(data: Array(secret.utf8)))
    }

    /// True when `candidate` is the secret.
    func matches(_ candidate: String) -> Bool {
        let other = Array(SHA256.hash(data: Array(candidate.utf8)))
        var difference: UInt8 = 0
        for (a, b) in zip(digest, other) { difference |= a ^ b }
        return difference == 0 && digest.count == other.count
    }

    var description: String { "<secret>" }
}
