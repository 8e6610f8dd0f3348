import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Troupe

/// The seat-reservation example: `host` serves the actors, `buyers` makes concurrent buyers
/// compete for seats, `show` prints an event's seat map.
@main
struct SeatReservation: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seat-reservation",
        abstract: "Reactive ticketing on Troupe: an event actor holds the seat map, one booking actor per booking.",
        subcommands: [Host.self, Buyers.self, Show.self])
}

struct Connection: ParsableArguments {
    @Option(help: "The sidecar's socket.") var socket = "/tmp/troupe/troupe.sock"
    @Option(help: "The ActorSystem.") var system = "tickets"

    var endpoint: Endpoint { get throws { try Endpoint(parsing: socket) } }
}

struct Host: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serves the event and booking actors until SIGTERM.")
    @OptionGroup var connection: Connection

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = Logger(label: "seat-reservation.host")
        let host = try TroupeHost(
            system: connection.system, endpoint: try connection.endpoint, actors: [EventActor.self, BookingActor.self],
            name: "seat-reservation", logger: logger)
        let group = ServiceGroup(services: [host], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

struct Buyers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Concurrent buyers compete for an event's seats.")
    @OptionGroup var connection: Connection
    @Option(help: "Event id.") var event = "concert-1"
    @Option(help: "Seats in the event.") var seats = 20
    @Option(help: "Concurrent buyers.") var buyers = 8
    @Option(name: .customLong("max-per-booking"), help: "Each booking asks for 1 to this many seats.")
    var maxPerBooking = 3

    func run() async throws {
        let client = try await TroupeClient.connect(
            system: connection.system, to: try connection.endpoint, name: "buyers")
        let map: EventActor.SeatMap = try await client.invoke(
            event, action: "setup", EventActor.Setup(capacity: seats), spawnFrom: EventActor.name)
        print("event \(event): \(map.capacity) seats, \(map.free) free")
        let run = UUID().uuidString.prefix(6)
        let outcomes = try await withThrowingTaskGroup(of: [BookingActor.State].self) { group in
            for buyer in 1...buyers {
                group.addTask {
                    var mine: [BookingActor.State] = []
                    for attempt in 1...1000 {
                        let booking: BookingActor.State = try await client.invoke(
                            "booking-\(run)-\(buyer)-\(attempt)", action: "book",
                            BookingActor.Book(
                                event: event, buyer: "buyer-\(buyer)", count: 1 + (buyer + attempt) % maxPerBooking),
                            spawnFrom: BookingActor.name)
                        mine.append(booking)
                        if booking.status == "sold-out" { break }
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0.append(contentsOf: $1) }
        }
        var owner: [Int: String] = [:]
        var doubleBooked: [Int] = []
        for booking in outcomes where booking.status == "confirmed" {
            for seat in booking.seats {
                if owner[seat] != nil { doubleBooked.append(seat) }
                owner[seat] = booking.buyer
            }
        }
        for buyer in 1...buyers {
            let got = owner.filter { $0.value == "buyer-\(buyer)" }.keys.sorted()
            print("buyer-\(buyer): \(got.count) seat(s) \(got)")
        }
        let final: EventActor.SeatMap = try await client.invoke(event, action: "seat-map")
        await client.close()
        print(
            "bookings: \(outcomes.filter { $0.status == "confirmed" }.count) confirmed, \(outcomes.filter { $0.status == "sold-out" }.count) turned away"
        )
        print("seat map: \(final.taken.count) taken, \(final.free) free of \(final.capacity)")
        guard doubleBooked.isEmpty, final.taken.count == owner.count else {
            print(
                "DOUBLE BOOKING: seats \(doubleBooked.sorted()); map has \(final.taken.count), buyers hold \(owner.count)"
            )
            throw ExitCode(2)
        }
        print("no seat was sold twice")
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints an event's seat map.")
    @OptionGroup var connection: Connection
    @Option(help: "Event id.") var event = "concert-1"

    func run() async throws {
        let client = try await TroupeClient.connect(
            system: connection.system, to: try connection.endpoint, name: "show")
        let map: EventActor.SeatMap = try await client.invoke(event, action: "seat-map")
        await client.close()
        print("event \(event): \(map.capacity) seats, \(map.taken.count) taken, \(map.free) free")
        for seat in map.taken.keys.sorted() {
            print("  seat \(seat): \(map.taken[seat]!)")
        }
    }
}
