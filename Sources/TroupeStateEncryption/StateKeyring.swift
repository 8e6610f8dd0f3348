public import TroupeWire

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The AES-256 keys actor state is encrypted with, each under an id, and the one new writes use.
///
/// Rotation: add the new key, make it ``activeKeyID``, keep the old one. Records written before
/// still decrypt with the old key; every write from then on uses the new one, so the old key
/// can be dropped once every actor has been written again.
///
/// ```swift
/// let keyring = try StateKeyring(parsing: "k2:\(base64Key2),k1:\(base64Key1)", activeKeyID: "k2")
/// let store = EncryptingStateStore(wrapping: postgres, keyring: keyring)
/// ```
public struct StateKeyring: Sendable {
    /// The id of the key new writes use, or nil to write plaintext.
    public let activeKeyID: String?
    /// Raw key bytes: swift-crypto's `SymmetricKey` is not `Sendable`, so one is made per use.
    let keys: [String: [UInt8]]

    /// No keys: states are written in plaintext, and encrypted records are refused with a clear
    /// error instead of reaching a host as garbage.
    public static let none = StateKeyring(validated: [:], activeKeyID: nil)

    /// The ids of the configured keys, sorted.
    public var keyIDs: [String] { keys.keys.sorted() }

    /// - Parameters:
    ///   - keys: 32-byte AES-256 keys by id. Ids are 1 to 64 characters of letters, digits, `-`, `_`, `.`.
    ///   - activeKeyID: the key new writes use; may be nil only when there is at most one key
    ///     (then it is that key).
    /// - Throws: `invalidArgument` naming the key id, never the key.
    public init(keys: [String: [UInt8]], activeKeyID: String? = nil) throws(TroupeError) {
        var symmetric: [String: [UInt8]] = [:]
        for (id, bytes) in keys {
            guard Self.isValidID(id) else {
                throw .invalidArgument(
                    "encryption key id '\(id)' must be 1 to 64 letters, digits, '-', '_' or '.'")
            }
            guard bytes.count == 32 else {
                throw .invalidArgument(
                    "encryption key '\(id)' has \(bytes.count) bytes; AES-256 needs exactly 32")
            }
            symmetric[id] = bytes
        }
        let active: String?
        if let activeKeyID {
            guard symmetric[activeKeyID] != nil else {
                throw .invalidArgument("the active encryption key '\(activeKeyID)' is not among the configured keys")
            }
            active = activeKeyID
        } else if symmetric.count > 1 {
            throw .invalidArgument("several encryption keys are configured: name the active one")
        } else {
            active = symmetric.keys.first
        }
        self.init(validated: symmetric, activeKeyID: active)
    }

    /// Parses `id:base64key` entries separated by commas, as the `encryption-keys` setting holds them.
    ///
    /// - Throws: `invalidArgument` naming the entry's key id (or position), never its bytes.
    public init(parsing list: String, activeKeyID: String? = nil) throws(TroupeError) {
        var keys: [String: [UInt8]] = [:]
        let entries = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for (position, entry) in entries.enumerated() {
            guard let colon = entry.firstIndex(of: ":") else {
                throw .invalidArgument("encryption key entry \(position + 1) is not 'id:base64key'")
            }
            let id = String(entry[..<colon])
            guard let bytes = Data(base64Encoded: String(entry[entry.index(after: colon)...])) else {
                throw .invalidArgument("encryption key '\(id)' is not valid base64")
            }
            guard keys.updateValue(Array(bytes), forKey: id) == nil else {
                throw .invalidArgument("encryption key id '\(id)' appears twice")
            }
        }
        try self.init(keys: keys, activeKeyID: activeKeyID)
    }

    private init(validated keys: [String: [UInt8]], activeKeyID: String?) {
        self.keys = keys
        self.activeKeyID = activeKeyID
    }

    private static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || $0 == "-" || $0 == "_" || $0 == "."
            }
    }
}
