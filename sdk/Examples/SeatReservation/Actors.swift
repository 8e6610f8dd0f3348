import Troupe

/// One event's seat map: an unnamed actor, one instance per event ("concert-1").
/// Every reservation goes through it, one at a time, so a seat can never be sold twice.
struct EventActor: VirtualActor {
    struct State: Codable, Sendable {
        var capacity = 0
        /// Seat number → booking id.
        var seats: [Int: String] = [:]
    }

    struct Setup: Codable, Sendable { var capacity: Int }
    struct Reserve: Codable, Sendable {
        var booking: String
        var count: Int
    }
    struct SeatMap: Codable, Sendable {
        var capacity: Int
        var taken: [Int: String]
        var free: Int
    }

    static let name = "event"
    static let kind = ActorKind.unnamed
    static func initialState() -> State { State() }

    static func actions(_ actions: inout Actions<Self>) {
        actions.on("setup") { (context, setup: Setup) -> SeatMap in
            guard setup.capacity > 0 else { throw TroupeError.invalidArgument("capacity must be positive") }
            if context.state.capacity == 0 { context.state.capacity = setup.capacity }
            return context.state.map
        }
        actions.on("reserve") { (context, request: Reserve) -> [Int] in
            guard request.count > 0 else { throw TroupeError.invalidArgument("count must be positive") }
            let free = (1...max(context.state.capacity, 1)).filter { context.state.seats[$0] == nil }
            guard context.state.capacity > 0, free.count >= request.count else {
                throw TroupeError.resourceExhausted(
                    "only \(free.count) seat(s) left", details: ["free": "\(free.count)"])
            }
            let seats = Array(free.prefix(request.count))
            for seat in seats { context.state.seats[seat] = request.booking }
            return seats
        }
        actions.on("seat-map") { context -> SeatMap in context.state.map }
    }
}

extension EventActor.State {
    var map: EventActor.SeatMap {
        EventActor.SeatMap(capacity: capacity, taken: seats, free: capacity - seats.count)
    }
}

/// One booking: an unnamed actor per reservation attempt. It asks the event for seats
/// (an actor calling an actor) and remembers what it got.
struct BookingActor: VirtualActor {
    struct State: Codable, Sendable {
        var event: String?
        var buyer: String?
        var seats: [Int] = []
        var status = "new"
    }

    struct Book: Codable, Sendable {
        var event: String
        var buyer: String
        var count: Int
    }

    static let name = "booking"
    static let kind = ActorKind.unnamed
    static func initialState() -> State { State() }

    static func actions(_ actions: inout Actions<Self>) {
        actions.on("book") { (context, book: Book) -> State in
            guard context.state.status == "new" else { return context.state }
            context.state.event = book.event
            context.state.buyer = book.buyer
            do {
                context.state.seats = try await context.client.invoke(
                    book.event, action: "reserve", EventActor.Reserve(booking: context.name, count: book.count))
                context.state.status = "confirmed"
            } catch let error as TroupeError where error.code == .resourceExhausted {
                context.state.status = "sold-out"
            }
            return context.state
        }
        actions.on("get") { context -> State in context.state }
    }
}
