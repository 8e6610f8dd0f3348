import FuzzSupport
import Logging
import NIOCore
import NIOEmbedded
import TroupeActors
import TroupeSidecar
import TroupeStore

/// Small limits, so the fuzzer reaches them with short inputs.
let configuration: SidecarConfiguration = {
    var configuration = SidecarConfiguration()
    configuration.system = "fuzz"
    configuration.node = "fuzz-node"
    configuration.store = "memory"
    configuration.maxFrameBytes = 2048
    configuration.maxConcurrentRequests = 8
    configuration.maxMetadataEntries = 4
    configuration.maxMetadataBytes = 256
    configuration.maxConnectionBufferBytes = 65_536
    configuration.handshakeTimeoutMs = 100
    return configuration
}()

let logger = Logger(label: "fuzz.host-frames", factory: { _ in SwiftLogNoOpLogHandler() })

// Also libFuzzer's own entry point, for when the linker picks libFuzzer's main over this target's.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHostFrames(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(fuzzInput: start, count: count)
    // As the Unix socket (no secret) and as the TCP listener with `host-secret` serve them.
    for secret in [nil, "fuzz-secret"] { serve(bytes, hostSecret: secret) }
    return 0
}

func serve(_ bytes: UnsafeRawBufferPointer, hostSecret: String?) {
    let directory = ActorDirectory(
        configuration: .init(system: configuration.system, node: configuration.node), store: MemoryStateStore(),
        logger: logger)
    let (jobs, jobInput) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
    let channel = EmbeddedChannel()
    defer {
        _ = try? channel.finish(acceptAlreadyClosed: true)
        jobInput.finish()
        withExtendedLifetime(jobs) {}
    }
    try? channel.connect(to: SocketAddress(unixDomainSocketPath: "/fuzz")).wait()
    guard
        (try? HostConnectionSetup.serve(
            on: channel, configuration: configuration, directory: directory, hostSecret: hostSecret,
            jobs: jobInput, logger: logger)) != nil
    else { fatalError("the host pipeline could not be installed") }
    channel.feed(bytes, thenAdvanceBy: .milliseconds(Int64(configuration.handshakeTimeoutMs) + 1))
}
