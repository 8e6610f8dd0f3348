import Testing
import TroupeTestSupport
import TroupeStore
import TroupeWire

/// The contract of ``StateStore``, run against every backend in ``StoreKind``.
@Suite struct StateStoreBehaviourTests {
    @Test(arguments: StoreKind.allCases)
    func activateCreatesActorWithRevisionZeroAndNoState(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let activation = try await store.activate(key("seat-1"), actorType: "Seat")
            #expect(activation.fencingToken >= 1)
            #expect(activation.record.actorType == "Seat")
            #expect(activation.record.revision == 0)
            #expect(activation.record.state == nil)
            #expect(try await store.read(key("seat-1")) == activation.record)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func readOfUnknownActorIsNil(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let record = try await store.read(key("nobody"))
            #expect(record == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func fencingTokensStrictlyGrowAcrossActivations(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            var previous: UInt64 = 0
            for _ in 0..<5 {
                let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
                #expect(token > previous)
                previous = token
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func writeBumpsRevisionAndReadReturnsLatestState(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            #expect(try await store.write(key("seat-1"), state: blob("free"), fencingToken: token) == 1)
            #expect(
                try await store.write(
                    key("seat-1"), state: blob("held", type: "type.example/Hold"), fencingToken: token) == 2)

            let record = try #require(try await store.read(key("seat-1")))
            #expect(record.revision == 2)
            #expect(record.state == blob("held", type: "type.example/Hold"))
            #expect(record.actorType == "Seat")

            let next = try await store.activate(key("seat-1"), actorType: "Seat")
            #expect(next.record.state == blob("held", type: "type.example/Hold"))
            #expect(next.record.revision == 2)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func writeFromSupersededActivationIsRefusedAndChangesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let older = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            _ = try await store.write(key("seat-1"), state: blob("from older"), fencingToken: older)
            let newer = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken

            let error = await expectCode(.failedPrecondition) {
                try await store.write(key("seat-1"), state: blob("zombie"), fencingToken: older)
            }
            #expect(error?.message.contains("fencing token \(newer)") == true)
            let unchanged = try #require(try await store.read(key("seat-1")))
            #expect(unchanged.state == blob("from older"))
            #expect(unchanged.revision == 1)

            #expect(try await store.write(key("seat-1"), state: blob("from newer"), fencingToken: newer) == 2)
            #expect(try await store.read(key("seat-1"))?.state == blob("from newer"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func writeWithTokenNeverHandedOutIsRefused(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            await expectCode(.failedPrecondition) {
                try await store.write(key("seat-1"), state: blob("x"), fencingToken: token + 1)
            }
            await expectCode(.failedPrecondition) {
                try await store.write(key("seat-1"), state: blob("x"), fencingToken: .max)
            }
            #expect(try await store.read(key("seat-1"))?.revision == 0)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func writeToMissingActorIsNotFound(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            await expectCode(.notFound) {
                try await store.write(key("nobody"), state: blob("x"), fencingToken: 1)
            }
            let record = try await store.read(key("nobody"))
            #expect(record == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func activateAsAnotherTypeIsFailedPreconditionAndKeepsTheType(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            _ = try await store.activate(key("seat-1"), actorType: "Seat")
            await expectCode(.failedPrecondition) {
                try await store.activate(key("seat-1"), actorType: "Event")
            }
            #expect(try await store.read(key("seat-1"))?.actorType == "Seat")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func actorsWithSameNameInDifferentSystemsAreIndependent(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let ticketsKey = key("a", system: "tickets")
            let billingKey = key("a", system: "billing")
            let token = try await store.activate(ticketsKey, actorType: "Seat").fencingToken
            _ = try await store.write(ticketsKey, state: blob("seat"), fencingToken: token)
            let billing = try await store.activate(billingKey, actorType: "Invoice")
            #expect(billing.record.actorType == "Invoice")
            #expect(billing.record.state == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func spawnCreatesOnlyMissingActorsAndReturnsThem(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let token = try await store.activate(key("a"), actorType: "Seat").fencingToken
            _ = try await store.write(key("a"), state: blob("kept"), fencingToken: token)

            let created = try await store.spawn([key("a"), key("b"), key("c")], actorType: "Seat")
            #expect(created == [key("b"), key("c")])

            let b = try #require(try await store.read(key("b")))
            #expect(b.actorType == "Seat")
            #expect(b.revision == 0)
            #expect(b.state == nil)
            #expect(try await store.read(key("a"))?.state == blob("kept"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func spawnIsIdempotent(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let keys = [key("a"), key("b")]
            let first = try await store.spawn(keys, actorType: "Seat")
            let again = try await store.spawn(keys, actorType: "Seat")
            let reordered = try await store.spawn([key("b"), key("a"), key("b")], actorType: "Seat")
            #expect(first == keys)
            #expect(again == [])
            #expect(reordered == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func spawnReturnsEachCreatedActorOnceInCallerOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let created = try await store.spawn([key("z"), key("y"), key("z"), key("x")], actorType: "Seat")
            #expect(created == [key("z"), key("y"), key("x")])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func spawnRefusesTypeClashWithAlreadyExistsAndCreatesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            _ = try await store.activate(key("taken"), actorType: "Event")
            let error = await expectCode(.alreadyExists) {
                try await store.spawn([key("new-1"), key("taken"), key("new-2")], actorType: "Seat")
            }
            #expect(error?.message.contains("tickets/taken") == true)
            #expect(try await store.read(key("new-1")) == nil)
            #expect(try await store.read(key("new-2")) == nil)
            #expect(try await store.read(key("taken"))?.actorType == "Event")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func spawnOfManyActorsCreatesAllOfThem(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            // More keys than one SQL statement carries, to cover batching.
            let keys = (0..<350).map { key("seat-\($0)") }
            let some = try await store.spawn(Array(keys[0..<120]), actorType: "Seat")
            let rest = try await store.spawn(keys, actorType: "Seat")
            let last = try await store.read(keys[349])
            #expect(some.count == 120)
            #expect(rest == Array(keys[120...]))
            #expect(last?.actorType == "Seat")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func emptyStateRoundTripsAsEmptyBlobNotNil(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            let empty = StateBlob(typeURL: "type.example/Empty", bytes: [])
            #expect(try await store.write(key("seat-1"), state: empty, fencingToken: token) == 1)

            let record = try #require(try await store.read(key("seat-1")))
            #expect(record.state == empty)
            #expect(try await store.activate(key("seat-1"), actorType: "Seat").record.state == empty)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func binaryStateRoundTripsByteForByte(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            let bytes = StateBlob(typeURL: "", bytes: (0...255).map(UInt8.init) + [0, 0, 255])
            _ = try await store.write(key("seat-1"), state: bytes, fencingToken: token)
            #expect(try await store.read(key("seat-1"))?.state == bytes)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentWritersOnDifferentActorsAllSucceed(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let actors = 200
            let writesPerActor = 3
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<actors {
                    group.addTask {
                        let name = key("seat-\(index)")
                        let token = try await store.activate(name, actorType: "Seat").fencingToken
                        for write in 1...writesPerActor {
                            let revision = try await store.write(
                                name, state: blob("\(index)#\(write)"), fencingToken: token)
                            #expect(revision == UInt64(write))
                        }
                    }
                }
                try await group.waitForAll()
            }
            for index in 0..<actors {
                let record = try #require(try await store.read(key("seat-\(index)")))
                #expect(record.revision == UInt64(writesPerActor))
                #expect(record.state == blob("\(index)#\(writesPerActor)"))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentActivationsOfOneActorGetDistinctTokensAndOnlyTheLatestWrites(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let tokens = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await store.activate(key("seat-1"), actorType: "Seat").fencingToken }
                }
                return try await group.reduce(into: [UInt64]()) { $0.append($1) }
            }
            #expect(Set(tokens).count == tokens.count)
            let latest = try #require(tokens.max())
            for token in tokens where token != latest {
                await expectCode(.failedPrecondition) {
                    try await store.write(key("seat-1"), state: blob("stale"), fencingToken: token)
                }
            }
            #expect(try await store.write(key("seat-1"), state: blob("latest"), fencingToken: latest) == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func closedStoreIsUnavailable(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let token = try await store.activate(key("seat-1"), actorType: "Seat").fencingToken
            try await store.close()

            await expectCode(.unavailable) { try await store.activate(key("seat-1"), actorType: "Seat") }
            await expectCode(.unavailable) {
                try await store.write(key("seat-1"), state: blob("x"), fencingToken: token)
            }
            await expectCode(.unavailable) { try await store.spawn([key("seat-2")], actorType: "Seat") }
            await expectCode(.unavailable) { try await store.read(key("seat-1")) }
            // Closing again is harmless, so shutdown paths need not track it.
            try await store.close()
        }
    }
}
