import Foundation
import Testing
import TroupeStateEncryption
import TroupeStore
import TroupeWire

/// Encryption at rest, run over every backend: what reaches the store is sealed, rotated keys
/// keep working, and a missing or wrong key is a clear error, never garbage state.
@Suite struct StateEncryptionTests {
    static let oldKey = [UInt8](repeating: 0x11, count: 32)
    static let newKey = [UInt8](repeating: 0x22, count: 32)

    static func keyring(_ keys: [String: [UInt8]], active: String? = nil) throws -> StateKeyring {
        try StateKeyring(keys: keys, activeKeyID: active)
    }

    /// Activates `name` and writes `text` through `store`; returns the new revision.
    @discardableResult
    static func write(_ text: String, to name: String, through store: any StateStore) async throws -> UInt64 {
        let token = try await store.activate(key(name), actorType: "Seat").fencingToken
        return try await store.write(key(name), state: blob(text), fencingToken: token)
    }

    @Test(arguments: StoreKind.allCases)
    func sealedStateRoundTripsAndTheBackendSeesNoPlaintext(kind: StoreKind) async throws {
        try await withStore(kind) { base in
            let store = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey]))
            try await Self.write("seat 12A held by alice", to: "seat-1", through: store)

            #expect(try await store.read(key("seat-1"))?.state == blob("seat 12A held by alice"))
            let raw = try #require(try await base.read(key("seat-1"))?.state)
            #expect(raw.typeURL != "type.example/Seat", "the state's type is sealed too")
            let rawText = String(decoding: raw.bytes, as: UTF8.self)
            #expect(!rawText.contains("alice"))
            #expect(!rawText.contains("type.example/Seat"))
            // A new activation decrypts what it loads.
            #expect(try await store.activate(key("seat-1"), actorType: "Seat").record.state == blob("seat 12A held by alice"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func rotatedKeyStillDecryptsOldStateWhileNewWritesUseTheNewKey(kind: StoreKind) async throws {
        try await withStore(kind) { base in
            let before = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey]))
            try await Self.write("old", to: "seat-1", through: before)

            let rotated = EncryptingStateStore(
                wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey, "k2": Self.newKey], active: "k2"))
            #expect(try await rotated.read(key("seat-1"))?.state == blob("old"))
            try await Self.write("new", to: "seat-2", through: rotated)

            // Once k1 is dropped, seat-2 (written with k2) still reads; seat-1 names the missing key.
            let onlyNew = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k2": Self.newKey]))
            #expect(try await onlyNew.read(key("seat-2"))?.state == blob("new"))
            let missing = await expectTroupeError(.failedPrecondition) { try await onlyNew.read(key("seat-1")) }
            #expect(missing?.message.contains("'k1'") == true)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func wrongKeyUnderTheSameIDIsDataLossNotGarbage(kind: StoreKind) async throws {
        try await withStore(kind) { base in
            let store = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey]))
            try await Self.write("secret", to: "seat-1", through: store)
            let impostor = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.newKey]))
            let error = await expectTroupeError(.dataLoss) {
                try await impostor.activate(key("seat-1"), actorType: "Seat")
            }
            #expect(error?.message.contains("k1") == true)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func encryptedStateWithoutAnyKeyConfiguredIsRefused(kind: StoreKind) async throws {
        try await withStore(kind) { base in
            let store = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey]))
            try await Self.write("secret", to: "seat-1", through: store)
            let plain = EncryptingStateStore(wrapping: base, keyring: .none)
            let error = await expectTroupeError(.failedPrecondition) {
                try await plain.activate(key("seat-1"), actorType: "Seat")
            }
            #expect(error?.message.contains("configured: none") == true)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func plaintextStateWrittenBeforeEncryptionReadsAndIsSealedOnItsNextWrite(kind: StoreKind) async throws {
        try await withStore(kind) { base in
            try await Self.write("from before", to: "seat-1", through: EncryptingStateStore(wrapping: base, keyring: .none))
            #expect(try await base.read(key("seat-1"))?.state == blob("from before"))

            let store = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey]))
            #expect(try await store.read(key("seat-1"))?.state == blob("from before"))
            try await Self.write("after", to: "seat-1", through: store)
            #expect(try await base.read(key("seat-1"))?.state != blob("after"))
            #expect(try await store.read(key("seat-1"))?.state == blob("after"))
        }
    }

    @Test func alteredBytesOrAStateCopiedToAnotherActorFailToOpen() async throws {
        try await withStore(.memory) { base in
            let store = EncryptingStateStore(wrapping: base, keyring: try Self.keyring(["k1": Self.oldKey]))
            try await Self.write("alice's seat", to: "seat-1", through: store)
            let sealed = try #require(try await base.read(key("seat-1"))?.state)

            // The same ciphertext under another actor's name: the actor is authenticated data.
            let token = try await base.activate(key("seat-2"), actorType: "Seat").fencingToken
            _ = try await base.write(key("seat-2"), state: sealed, fencingToken: token)
            await expectTroupeError(.dataLoss) { try await store.read(key("seat-2")) }

            var flipped = sealed
            flipped.bytes[flipped.bytes.count - 20] ^= 0x01
            let token3 = try await base.activate(key("seat-3"), actorType: "Seat").fencingToken
            _ = try await base.write(key("seat-3"), state: flipped, fencingToken: token3)
            await expectTroupeError(.dataLoss) { try await store.read(key("seat-3")) }

            var truncated = sealed
            truncated.bytes = Array(sealed.bytes.prefix(10))
            let token4 = try await base.activate(key("seat-4"), actorType: "Seat").fencingToken
            _ = try await base.write(key("seat-4"), state: truncated, fencingToken: token4)
            await expectTroupeError(.dataLoss) { try await store.read(key("seat-4")) }
        }
    }

    @Test func keyListIsParsedAndBadEntriesAreNamedWithoutTheirKey() throws {
        let old = Data(Self.oldKey).base64EncodedString()
        let new = Data(Self.newKey).base64EncodedString()
        let keyring = try StateKeyring(parsing: "k1:\(old), k2:\(new)", activeKeyID: "k2")
        #expect(keyring.keyIDs == ["k1", "k2"])
        #expect(keyring.activeKeyID == "k2")
        #expect(try StateKeyring(parsing: "only:\(old)").activeKeyID == "only")
        #expect(try StateKeyring(parsing: "").activeKeyID == nil)

        let short = Data(repeating: 7, count: 16).base64EncodedString()
        let cases: [(String, String?, String)] = [
            ("k1:\(old),k2:\(new)", nil, "name the active one"),
            ("k1:\(old)", "k9", "'k9'"),
            ("k1:\(short)", nil, "16 bytes"),
            ("k1:not base64!", nil, "'k1' is not valid base64"),
            ("k1:\(old),k1:\(new)", "k1", "appears twice"),
            ("\(old)", nil, "not 'id:base64key'"),
            ("bad id:\(old)", nil, "'bad id'"),
        ]
        for (list, active, expected) in cases {
            let error = #expect(throws: TroupeError.self) { try StateKeyring(parsing: list, activeKeyID: active) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains(expected) == true, "\(error?.message ?? "") lacks \(expected)")
            #expect(error?.message.contains(old) == false)
            #expect(error?.message.contains(new) == false)
        }
    }
}
