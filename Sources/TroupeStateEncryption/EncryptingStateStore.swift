public import TroupeStore
import TroupeWire

/// A ``StateStore`` that encrypts state at rest with AES-256-GCM before it reaches `base`.
///
/// Every state written with an active key is sealed with that key; every encrypted state read
/// back is opened with the key its record names, so rotated keys keep working. Plaintext states
/// (written before encryption was turned on) are read as they are and encrypted on their next
/// write. The sidecar wraps every store in this type, also without keys, so that an encrypted
/// record can never reach a host as garbage: without its key it fails with
/// `failedPrecondition`, and with a wrong key or altered bytes with `dataLoss`.
///
/// ```swift
/// let keyring = try StateKeyring(parsing: configuration.encryptionKeys, activeKeyID: "k2")
/// let store: any StateStore = EncryptingStateStore(wrapping: sqlite, keyring: keyring)
/// ```
public final class EncryptingStateStore: StateStore {
    public let base: any StateStore
    public let keyring: StateKeyring

    public init(wrapping base: any StateStore, keyring: StateKeyring) {
        self.base = base
        self.keyring = keyring
    }

    public var description: String {
        guard let active = keyring.activeKeyID else { return base.description }
        return "\(base.description) (encrypted, key \(active))"
    }

    public func activate(_ key: ActorKey, actorType: String) async throws -> Activation {
        var activation = try await base.activate(key, actorType: actorType)
        activation.record = try opened(activation.record, key)
        return activation
    }

    public func write(_ key: ActorKey, state: StateBlob, fencingToken: UInt64) async throws -> UInt64 {
        guard let active = keyring.activeKeyID else {
            return try await base.write(key, state: state, fencingToken: fencingToken)
        }
        let sealed = try StateCipher.seal(state, for: key, keyID: active, using: keyring)
        return try await base.write(key, state: sealed, fencingToken: fencingToken)
    }

    public func spawn(_ keys: [ActorKey], actorType: String) async throws -> [ActorKey] {
        try await base.spawn(keys, actorType: actorType)
    }

    public func read(_ key: ActorKey) async throws -> ActorRecord? {
        try await base.read(key).map { try opened($0, key) }
    }

    public func close() async throws {
        try await base.close()
    }

    private func opened(_ record: ActorRecord, _ key: ActorKey) throws -> ActorRecord {
        guard let state = record.state else { return record }
        var record = record
        record.state = try StateCipher.open(state, for: key, using: keyring)
        return record
    }
}
