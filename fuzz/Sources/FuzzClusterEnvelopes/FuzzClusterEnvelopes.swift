import FuzzSupport
import Logging
import NIOCore
import NIOEmbedded
import TroupeActors
import TroupeCluster
import TroupeMembership
import TroupeStore

let logger = Logger(label: "fuzz.cluster-envelopes", factory: { _ in SwiftLogNoOpLogHandler() })
let myself = NodeIdentity(name: "fuzz-node", address: "127.0.0.1:7946", uid: 1)

// Also libFuzzer's own entry point, for when the linker picks libFuzzer's main over this target's.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClusterEnvelopes(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(fuzzInput: start, count: count)
    let channel = EmbeddedChannel()
    defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
    let directory = ActorDirectory(
        configuration: .init(system: "fuzz", node: myself.name), store: MemoryStateStore(), logger: logger)
    var configuration = ClusterTransport.Configuration(
        system: "fuzz", myself: myself, listenHost: "127.0.0.1", listenPort: 0)
    configuration.maxFrameBytes = 4096
    configuration.handshakeTimeout = .milliseconds(100)
    let transport = ClusterTransport(
        configuration: configuration, actorSystem: directory.actorSystem, group: channel.embeddedEventLoop,
        logger: logger)
    // What membership does with a SWIM message, without its timers and dialling.
    let detector = NIOLoopBoundBox(SWIM(myself: myself, seed: 1), eventLoop: channel.embeddedEventLoop)
    transport.onSwim { wire, peer in
        guard let message = SWIM.Message(wire) else { return }
        _ = detector.value.receive(message, from: peer, now: 0)
    }
    try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7946)).wait()
    guard (try? transport.accept(channel)) != nil else { fatalError("the cluster pipeline could not be installed") }
    channel.feed(bytes, thenAdvanceBy: .milliseconds(101))
    return 0
}
