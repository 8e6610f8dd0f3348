import ArgumentParser
import Foundation
import Logging
import NIOCore
import TroupeProto
import TroupeWire

/// `troupe`: the command-line client of a running sidecar.
@main
struct TroupeCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "troupe",
        abstract: "Talks to a running Troupe sidecar.",
        subcommands: [Invoke.self, Broadcast.self, Actors.self, Spawn.self, Describe.self, Members.self])
}

/// Where the sidecar is. Shared by every subcommand.
struct SidecarOptions: ParsableArguments {
    @Option(
        help:
            "Sidecar endpoint: a socket path, unix:PATH or tcp://HOST:PORT (default: $TROUPE_SOCKET or /tmp/troupe/troupe.sock)."
    )
    var socket: String?

    @Option(
        help:
            "The sidecar's host-secret, required on its TCP listener (default: $TROUPE_HOST_SECRET; prefer the variable, a flag shows in ps)."
    )
    var secret: String?

    @Option(name: .customLong("timeout-ms"), help: "Deadline of the request in milliseconds.")
    var timeoutMs: UInt32 = 30_000

    func connect(system: String) async throws -> PeerConnection {
        let text = socket ?? ProcessInfo.processInfo.environment["TROUPE_SOCKET"] ?? "/tmp/troupe/troupe.sock"
        var hello = WireHello()
        hello.protocolVersion = HostProtocol.version
        hello.system = system
        hello.role = .client
        hello.name = "troupe-cli"
        hello.sdkName = "troupe-cli"
        hello.sdkVersion = "0.1.0"
        hello.secret = secret ?? ProcessInfo.processInfo.environment["TROUPE_HOST_SECRET"] ?? ""
        var logger = Logger(label: "troupe.cli")
        logger.logLevel = .error
        let (connection, _) = try await PeerConnection.connect(
            to: try Endpoint(parsing: text), hello: hello, delegate: nil, logger: logger)
        return connection
    }

    func request(_ body: WireFrame.OneOf_Body, system: String = "") async throws -> WireFrame.OneOf_Body {
        let connection = try await connect(system: system)
        defer { connection.close() }
        return try await connection.call(body, timeout: .milliseconds(Int64(timeoutMs) + 1000))
    }
}

/// Prints a typed error the same way for every subcommand and exits non-zero.
func fail(_ error: any Error) -> ExitCode {
    let error = TroupeError(wrapping: error)
    FileHandle.standardError.write(Data("error: \(error.code): \(error.message)\n".utf8))
    return ExitCode(1)
}

/// The `--json` option as a payload; exits with a typed error if it is not JSON.
func jsonPayload(_ json: String) throws -> WirePayload {
    guard (try? JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])) != nil else {
        throw fail(TroupeError.invalidArgument("--json is not valid JSON"))
    }
    var payload = WirePayload()
    payload.typeURL = "application/json"
    payload.value = Data(json.utf8)
    return payload
}

func printJSON(_ object: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
        let text = String(data: data, encoding: .utf8)
    {
        print(text)
    }
}

struct Invoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Invokes an action on an actor.",
        discussion: """
            Example: troupe invoke tickets concert-1 reserve --json '{"buyer":"ann","seats":2}'
            An actor of another ActorSystem is reached through the sidecar's NATS bridge (nats-url).
            """)

    @Argument(help: "ActorSystem of the actor.") var system: String
    @Argument(help: "Actor name.") var actor: String
    @Argument(help: "Action name.") var action: String
    @Option(help: "The payload, as JSON.") var json: String?
    @Option(name: .customLong("spawn-from"), help: "Spawn the actor from this unnamed type if it does not exist.")
    var spawnFrom: String?
    @Option(name: .customLong("output"), help: "text (default) or json.") var output: String = "text"
    @OptionGroup var sidecar: SidecarOptions

    func run() async throws {
        var request = WireInvokeRequest()
        request.actor.system = system
        request.actor.name = actor
        request.action = action
        request.timeoutMs = sidecar.timeoutMs
        if let json { request.payload = try jsonPayload(json) }
        if let spawnFrom { request.spawnFrom = spawnFrom }
        let answer: WireFrame.OneOf_Body
        // The connection names no system: the sidecar serves its own and bridges to the others.
        do { answer = try await sidecar.request(.invoke(request)) } catch { throw fail(error) }
        guard case .invoked(let response) = answer else { throw fail(TroupeError.internalError("unexpected answer")) }
        let payload = response.payload
        let isJSON = payload.typeURL.hasPrefix("application/json")
        let value: Any =
            isJSON
            ? (try? JSONSerialization.jsonObject(with: payload.value, options: [.fragmentsAllowed])) ?? NSNull()
            : payload.value.base64EncodedString()
        if output == "json" {
            printJSON(["type_url": payload.typeURL, "value": value])
        } else if payload.typeURL.isEmpty {
            print("(no reply payload)")
        } else if isJSON {
            if let data = try? JSONSerialization.data(
                withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed])
            {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            print("\(payload.typeURL) (\(payload.value.count) bytes, base64): \(payload.value.base64EncodedString())")
        }
    }
}

struct Broadcast: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sends a payload to every actor listening to a channel, in every bridged ActorSystem.",
        discussion: "Example: troupe broadcast news hear --json '\"doors open at 7\"'")

    @Argument(help: "Channel name.") var channel: String
    @Argument(help: "Action invoked on each listener.") var action: String
    @Option(help: "The payload, as JSON.") var json: String?
    @OptionGroup var sidecar: SidecarOptions

    func run() async throws {
        var request = WireBroadcastRequest()
        request.channel = channel
        request.action = action
        if let json { request.payload = try jsonPayload(json) }
        let answer: WireFrame.OneOf_Body
        do { answer = try await sidecar.request(.broadcast(request)) } catch { throw fail(error) }
        guard case .broadcasted(let response) = answer else {
            throw fail(TroupeError.internalError("unexpected answer"))
        }
        print(
            "queued for \(response.localListeners) listener(s) here\(response.bridged ? "; published to the other systems" : "")"
        )
    }
}

struct Actors: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Lists the active actors.")

    @Option(name: .customLong("type"), help: "Only actors of this type.") var actorType: String = ""
    @Option(name: .customLong("tag"), help: "Only actors with this tag, KEY=VALUE (repeatable: all of them).")
    var tags: [String] = []
    @Option(help: "At most this many.") var limit: UInt32 = 1000
    @Flag(help: "Print JSON for scripts.") var json = false
    @OptionGroup var sidecar: SidecarOptions

    func run() async throws {
        var request = WireListActorsRequest()
        request.actorType = actorType
        request.limit = limit
        do { request.tags = try TagFilter.parse(tags) } catch { throw fail(error) }
        let answer: WireFrame.OneOf_Body
        do { answer = try await sidecar.request(.listActors(request)) } catch { throw fail(error) }
        guard case .actors(let response) = answer else { throw fail(TroupeError.internalError("unexpected answer")) }
        if json {
            printJSON([
                "truncated": response.truncated,
                "unreachable_nodes": response.unreachableNodes,
                "actors": response.actors.map {
                    [
                        "system": $0.actor.system, "name": $0.actor.name, "type": $0.actorType, "node": $0.node,
                        "revision": $0.revision, "mailbox_depth": $0.mailboxDepth, "idle_ms": $0.idleMs,
                        "tags": $0.tags,
                    ] as [String: Any]
                },
            ])
            return
        }
        let rows =
            [["ACTOR", "TYPE", "NODE", "REVISION", "MAILBOX", "IDLE"]]
            + response.actors.map {
                [$0.actor.name, $0.actorType, $0.node, "\($0.revision)", "\($0.mailboxDepth)", "\($0.idleMs / 1000)s"]
            }
        let widths = (0..<6).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        print("\(response.actors.count) active actor(s)\(response.truncated ? " (truncated)" : "")")
        if !response.unreachableNodes.isEmpty {
            print("not listed: node(s) \(response.unreachableNodes.joined(separator: ", ")) did not answer")
        }
    }
}

struct Members: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lists the members of the cluster with their status and incarnation.")

    @Flag(help: "Print JSON for scripts.") var json = false
    @OptionGroup var sidecar: SidecarOptions

    func run() async throws {
        let answer: WireFrame.OneOf_Body
        do { answer = try await sidecar.request(.listMembers(WireListMembersRequest())) } catch { throw fail(error) }
        guard case .members(let response) = answer else { throw fail(TroupeError.internalError("unexpected answer")) }
        if json {
            printJSON([
                "members": response.members.map {
                    [
                        "node": $0.node, "address": $0.address, "status": $0.status, "incarnation": $0.incarnation,
                        "swim_incarnation": $0.swimIncarnation, "actor_types": $0.actorTypes, "self": $0.self_p,
                    ] as [String: Any]
                }
            ])
            return
        }
        let rows =
            [["NODE", "ADDRESS", "STATUS", "INCARNATION", "ACTOR TYPES"]]
            + response.members.map {
                [
                    $0.node + ($0.self_p ? " *" : ""), $0.address, $0.status, "\($0.incarnation)",
                    $0.actorTypes.joined(separator: ","),
                ]
            }
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        print("\(response.members.count) member(s)")
    }
}

struct Spawn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Spawns unnamed actors from a registered type.")

    @Argument(help: "ActorSystem.") var system: String
    @Argument(help: "Unnamed actor type.") var actorType: String
    @Argument(help: "Instance names.") var names: [String]
    @OptionGroup var sidecar: SidecarOptions

    func run() async throws {
        var request = WireSpawnRequest()
        request.system = system
        request.actorType = actorType
        request.names = names
        let answer: WireFrame.OneOf_Body
        do { answer = try await sidecar.request(.spawn(request), system: system) } catch { throw fail(error) }
        guard case .spawned(let response) = answer else { throw fail(TroupeError.internalError("unexpected answer")) }
        print("created \(response.created.count): \(response.created.joined(separator: ", "))")
    }
}

struct Describe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Shows the sidecar's system, node, store, registered actor types and pools.")

    @OptionGroup var sidecar: SidecarOptions

    func run() async throws {
        let answer: WireFrame.OneOf_Body
        do { answer = try await sidecar.request(.describeSidecar(WireDescribeSidecarRequest())) } catch {
            throw fail(error)
        }
        guard case .sidecar(let info) = answer else { throw fail(TroupeError.internalError("unexpected answer")) }
        print(
            "system \(info.system), node \(info.node), sidecar \(info.sidecarVersion), protocol \(info.protocolVersion)"
        )
        print("store \(info.store), \(info.activeActors) active actor(s)")
        for type in info.registered {
            let kind =
                switch type.kind {
                case .named: "named"
                case .unnamed: "unnamed"
                case .pooled: "pooled"
                default: "kind \(type.kind.rawValue)"
                }
            print(
                "  \(type.name) (\(kind), \(type.stateful ? "stateful" : "stateless")): \(type.actions.joined(separator: ", "))"
            )
        }
        for pool in info.pools {
            print(
                "  pool \(pool.actorType): \(pool.instances) instance(s) (\(pool.min)...\(pool.max)), \(pool.busy) busy, \(pool.queued) queued; peak \(pool.peakInstances), \(pool.queuedTotal) queued in all"
            )
        }
    }
}
