import Crypto
import TroupeStore
import TroupeWire

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The encrypted form of a ``StateBlob``.
///
/// An encrypted blob has the type URL ``typeURL``; its bytes are
///
///     "TRE" 0x01 | key id length (1 byte) | key id (UTF-8) | AES-GCM nonce (12) | ciphertext | tag (16)
///
/// and the plaintext is `type URL length (2 bytes, big endian) | type URL | state bytes`, so not
/// even the state's type is visible in the store. The actor's key is the authenticated data: a
/// row copied onto another actor fails to decrypt instead of handing one actor another's state.
enum StateCipher {
    static let typeURL = "type.troupe.dev/troupe.store.v1.EncryptedState"
    private static let magic: [UInt8] = Array("TRE".utf8) + [1]

    static func seal(_ blob: StateBlob, for key: ActorKey, keyID: String, using keyring: StateKeyring) throws
        -> StateBlob
    {
        guard let bytes = keyring.keys[keyID] else {
            throw TroupeError.failedPrecondition("encryption key '\(keyID)' is not configured")
        }
        let symmetric = SymmetricKey(data: bytes)
        let type = Array(blob.typeURL.utf8)
        guard type.count <= Int(UInt16.max) else {
            throw TroupeError.invalidArgument("state type URL of \(key) is longer than 65535 bytes")
        }
        var plaintext: [UInt8] = []
        plaintext.reserveCapacity(2 + type.count + blob.bytes.count)
        plaintext.append(UInt8(type.count >> 8))
        plaintext.append(UInt8(type.count & 0xFF))
        plaintext += type
        plaintext += blob.bytes
        let sealed = try AES.GCM.seal(plaintext, using: symmetric, authenticating: authenticatedData(key))
        guard let combined = sealed.combined else {
            throw TroupeError.internalError("AES-GCM produced no combined representation")
        }
        let id = Array(keyID.utf8)
        return StateBlob(typeURL: typeURL, bytes: magic + [UInt8(id.count)] + id + Array(combined))
    }

    /// The plaintext blob of `blob` if it is encrypted; `blob` itself if it is not.
    static func open(_ blob: StateBlob, for key: ActorKey, using keyring: StateKeyring) throws -> StateBlob {
        guard blob.typeURL == typeURL else { return blob }
        let bytes = blob.bytes
        let details = ["actor": key.description]
        guard bytes.count > magic.count + 1, Array(bytes[0..<magic.count]) == magic else {
            throw TroupeError(.dataLoss, "the encrypted state of \(key) has an unknown format", details: details)
        }
        let idLength = Int(bytes[magic.count])
        let idStart = magic.count + 1
        let boxStart = idStart + idLength
        guard bytes.count >= boxStart + 12 + 16,
            let keyID = String(validating: bytes[idStart..<boxStart], as: UTF8.self)
        else {
            throw TroupeError(.dataLoss, "the encrypted state of \(key) is truncated", details: details)
        }
        guard let keyBytes = keyring.keys[keyID] else {
            let configured = keyring.keyIDs.isEmpty ? "none" : keyring.keyIDs.joined(separator: ", ")
            throw TroupeError.failedPrecondition(
                "the state of \(key) is encrypted with key '\(keyID)', which is not configured (configured: \(configured))",
                details: details.merging(["keyID": keyID]) { a, _ in a })
        }
        let plaintext: Data
        do {
            let box = try AES.GCM.SealedBox(combined: bytes[boxStart...])
            plaintext = try AES.GCM.open(box, using: SymmetricKey(data: keyBytes), authenticating: authenticatedData(key))
        } catch {
            throw TroupeError(
                .dataLoss,
                "the state of \(key) does not decrypt with key '\(keyID)': a wrong key, or the stored bytes were altered",
                details: details.merging(["keyID": keyID]) { a, _ in a })
        }
        let text = Array(plaintext)
        guard text.count >= 2, text.count >= 2 + (Int(text[0]) << 8 | Int(text[1])) else {
            throw TroupeError(.dataLoss, "the decrypted state of \(key) is malformed", details: details)
        }
        let typeLength = Int(text[0]) << 8 | Int(text[1])
        guard let type = String(validating: text[2..<(2 + typeLength)], as: UTF8.self) else {
            throw TroupeError(.dataLoss, "the decrypted state type of \(key) is not UTF-8", details: details)
        }
        return StateBlob(typeURL: type, bytes: Array(text[(2 + typeLength)...]))
    }

    private static func authenticatedData(_ key: ActorKey) -> [UInt8] {
        Array("troupe-state-v1".utf8) + [0] + Array(key.system.utf8) + [0] + Array(key.name.utf8)
    }
}
