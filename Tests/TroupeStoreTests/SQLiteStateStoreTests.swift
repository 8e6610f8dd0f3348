import Foundation
import Testing
import TroupeTestSupport
import TroupeSQLite
import TroupeStore
import TroupeWire

/// What only the file-backed store promises: durability, exclusive ownership, sane failures on
/// bad files.
@Suite struct SQLiteStateStoreTests {
    @Test func stateAndTokensSurviveClosingAndReopeningTheFile() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.file("troupe.sqlite")
            let first = try await openSQLite(path)
            let token = try await first.activate(key("seat-1"), actorType: "Seat").fencingToken
            _ = try await first.write(key("seat-1"), state: blob("held"), fencingToken: token)
            let emptyToken = try await first.activate(key("seat-2"), actorType: "Seat").fencingToken
            _ = try await first.write(
                key("seat-2"), state: StateBlob(typeURL: "t", bytes: []), fencingToken: emptyToken)
            _ = try await first.spawn([key("seat-3")], actorType: "Seat")
            try await first.close()

            let second = try await openSQLite(path)
            let reopened = try await second.activate(key("seat-1"), actorType: "Seat")
            #expect(reopened.fencingToken > token)
            #expect(reopened.record.revision == 1)
            #expect(reopened.record.state == blob("held"))
            #expect(try await second.read(key("seat-2"))?.state == StateBlob(typeURL: "t", bytes: []))
            #expect(try await second.read(key("seat-3"))?.actorType == "Seat")
            try await second.close()
        }
    }

    @Test func secondOpenOfAFileInUseFailsWithFailedPrecondition() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.file("troupe.sqlite")
            let owner = try await openSQLite(path)
            _ = try await owner.activate(key("seat-1"), actorType: "Seat")

            let error = await expectCode(.failedPrecondition) {
                try await openSQLite(path, busyTimeout: .milliseconds(50))
            }
            #expect(error?.message == "state file \(path) is in use by another process")

            // The owner is unaffected, and the lock goes with it.
            _ = try await owner.activate(key("seat-1"), actorType: "Seat")
            try await owner.close()
            let successor = try await openSQLite(path, busyTimeout: .milliseconds(50))
            #expect(try await successor.read(key("seat-1"))?.actorType == "Seat")
            try await successor.close()
        }
    }

    @Test func secondOpenOfAFreshlyCreatedFileInUseAlsoFails() async throws {
        // No writes yet besides the schema: the lock must come from open itself.
        try await withTemporaryDirectory { directory in
            let path = directory.file("troupe.sqlite")
            let owner = try await openSQLite(path)
            await expectCode(.failedPrecondition) {
                try await openSQLite(path, busyTimeout: .milliseconds(50))
            }
            try await owner.close()
        }
    }

    @Test func reopenedFileInUseFailsBeforeAnyOperation() async throws {
        // An existing file needs no migration, so only the explicit lock-taking at open protects it.
        try await withTemporaryDirectory { directory in
            let path = directory.file("troupe.sqlite")
            try await openSQLite(path).close()
            let owner = try await openSQLite(path)
            await expectCode(.failedPrecondition) {
                try await openSQLite(path, busyTimeout: .milliseconds(50))
            }
            try await owner.close()
        }
    }

    @Test func garbageFileFailsToOpenWithTypedError() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.file("troupe.sqlite")
            let garbage = String(repeating: "this is not a database, just some text\n", count: 200)
            try Data(garbage.utf8).write(to: URL(fileURLWithPath: path))

            let error = await expectCode(.failedPrecondition) { try await openSQLite(path) }
            #expect(error?.message.contains("state file \(path) is not a Troupe state database") == true)
        }
    }

    @Test func openCreatesMissingParentDirectories() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.file("a/b/c/troupe.sqlite")
            let store = try await openSQLite(path)
            _ = try await store.activate(key("seat-1"), actorType: "Seat")
            try await store.close()
            #expect(FileManager.default.fileExists(atPath: path))
        }
    }

    @Test func openOfUncreatablePathIsUnavailable() async throws {
        try await withTemporaryDirectory { directory in
            // A regular file where a parent directory should be.
            let blocker = directory.file("blocker")
            try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
            await expectCode(.unavailable) { try await openSQLite(blocker + "/troupe.sqlite") }
        }
    }

    @Test func descriptionNamesTheFile() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.file("troupe.sqlite")
            let store = try await openSQLite(path)
            #expect(store.description == "sqlite:\(path)")
            try await store.close()
        }
    }
}
