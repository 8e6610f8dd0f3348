// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "troupe",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Troupe", targets: ["Troupe"]),
        .executable(name: "troupe-sidecar", targets: ["troupe-sidecar"]),
        .executable(name: "troupe", targets: ["TroupeCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0"),
        // Test-only: an OTLP/gRPC collector for the gRPC exporter test (swift-otel builds both anyway).
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
    ],
    targets: [
        // Generated from proto/ by scripts/gen-proto.sh; committed.
        .target(
            name: "TroupeProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Sources/TroupeProto"
        ),
        // Framing, typed statuses and the multiplexed peer connection of the host protocol.
        .target(
            name: "TroupeWire",
            dependencies: [
                "TroupeProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/TroupeWire",
            swiftSettings: strict
        ),
        // W3C trace context in invocation metadata, span names and attributes shared by sidecar and SDK.
        .target(
            name: "TroupeTracing",
            dependencies: [
                "TroupeWire", .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/TroupeTracing",
            swiftSettings: strict
        ),
        // The state-store abstraction and its in-memory implementation.
        .target(
            name: "TroupeStore",
            dependencies: ["TroupeWire", .product(name: "HeapModule", package: "swift-collections")],
            path: "Sources/TroupeStore",
            swiftSettings: strict
        ),
        // The embedded default store.
        .target(
            name: "TroupeSQLite",
            dependencies: [
                "TroupeStore", "TroupeWire",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/TroupeSQLite",
            swiftSettings: strict
        ),
        // The production store: actor state in PostgreSQL, group-committed.
        .target(
            name: "TroupePostgres",
            dependencies: [
                "TroupeStore", "TroupeWire",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/TroupePostgres",
            swiftSettings: strict
        ),
        // Encryption at rest: a StateStore decorator with AES-256-GCM and rotating keys.
        .target(
            name: "TroupeStateEncryption",
            dependencies: [
                "TroupeStore", "TroupeWire",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/TroupeStateEncryption",
            swiftSettings: strict
        ),
        // The official NATS C client (Debian: libnats-dev).
        .systemLibrary(
            name: "CNats",
            path: "Sources/CNats",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        // A Swift owner of libnats handles: connect, subscribe, publish, request, drain, events.
        .target(
            name: "TroupeNATS",
            dependencies: [
                "CNats", "TroupeWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Sources/TroupeNATS",
            swiftSettings: strict
        ),
        // Calls between ActorSystems over NATS: the directory's SystemBridge and the call subscriber.
        .target(
            name: "TroupeBridge",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                "TroupeNATS", "TroupeActors", "TroupeProto", "TroupeStore", "TroupeWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/TroupeBridge",
            swiftSettings: strict
        ),
        // Which node owns an actor: rendezvous hashing with a stable hash.
        .target(
            name: "TroupePlacement",
            path: "Sources/TroupePlacement",
            swiftSettings: strict
        ),
        // SWIM membership as a pure state machine.
        .target(
            name: "TroupeMembership",
            path: "Sources/TroupeMembership",
            swiftSettings: strict
        ),
        // The DistributedActorSystem, ActorProcess and the directory of active actors.
        .target(
            name: "TroupeActors",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                "TroupeWire", "TroupeStore", "TroupeProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/TroupeActors",
            swiftSettings: strict
        ),
        // The ActorSystem cluster: sidecar-to-sidecar TCP transport (mutual TLS), SWIM driver, placement.
        .target(
            name: "TroupeCluster",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                "TroupeActors", "TroupeMembership", "TroupePlacement", "TroupeWire", "TroupeProto", "TroupeStore",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/TroupeCluster",
            swiftSettings: strict
        ),
        // The `troupe` command-line tool.
        .executableTarget(
            name: "TroupeCLI",
            dependencies: [
                "TroupeWire", "TroupeProto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/TroupeCLI",
            swiftSettings: strict
        ),
        // The sidecar runtime: configuration, host connections, wiring.
        .target(
            name: "TroupeSidecar",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                "TroupeWire", "TroupeProto", "TroupeStore", "TroupeSQLite", "TroupePostgres", "TroupeStateEncryption",
                "TroupeActors", "TroupeNATS", "TroupeBridge", "TroupeCluster", "TroupeMembership",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "sidecar/TroupeSidecar",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "troupe-sidecar",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                "TroupeSidecar", "TroupeWire", "TroupeTracing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "sidecar/troupe-sidecar",
            swiftSettings: strict
        ),
        // The Swift SDK users import.
        .target(
            name: "Troupe",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                "TroupeWire", "TroupeProto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "sdk/Troupe",
            swiftSettings: strict
        ),
        // Example: seat reservation (reactive ticketing).
        .executableTarget(
            name: "seat-reservation",
            dependencies: [
                "Troupe",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "sdk/Examples/SeatReservation",
            swiftSettings: strict
        ),
        // Benchmarks (release mode; see docs/benchmarks.md).
        .executableTarget(
            name: "troupe-bench",
            dependencies: [
                "Troupe", "TroupeWire", "TroupeNATS", "CNats", "TroupeProto", "TroupePlacement",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "sdk/Benchmarks/troupe-bench",
            swiftSettings: strict
        ),
        // The Postgres store against pgbench (scripts/bench-store.sh; docs/benchmarks.md).
        .executableTarget(
            name: "troupe-store-bench",
            dependencies: [
                "Troupe", "TroupeWire", "TroupeStore", "TroupePostgres", "TroupeSidecar",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "sdk/Benchmarks/troupe-store-bench",
            swiftSettings: strict
        ),
        // Actor types the tests host, in-process and in the troupe-test-host process.
        .target(
            name: "TroupeTestActors",
            dependencies: [
                "Troupe", "TroupeWire", "TroupeProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/Fixtures/TestActors"
        ),
        // Expectations the test targets share.
        .target(
            name: "TroupeTestSupport",
            dependencies: [
                "TroupeWire", "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/Fixtures/TestSupport"
        ),
        .executableTarget(
            name: "troupe-test-host",
            dependencies: [
                "Troupe", "TroupeTestActors",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/Fixtures/TestHost"
        ),
        .testTarget(
            name: "TroupeWireTests",
            dependencies: ["TroupeWire", "TroupeProto", "TroupeTestActors"],
            path: "Tests/TroupeWireTests"
        ),
        .testTarget(
            name: "TroupeMembershipTests",
            dependencies: ["TroupeMembership", "TroupePlacement"],
            path: "Tests/TroupeMembershipTests"
        ),
        .testTarget(
            name: "TroupeActorsTests",
            dependencies: [
                "TroupeActors", "TroupeWire", "TroupeProto", "TroupeStore", "TroupeTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "Tests/TroupeActorsTests"
        ),
        .testTarget(
            name: "TroupeNATSTests",
            dependencies: [
                "TroupeNATS", "TroupeWire", "TroupeTestActors", "TroupeTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/TroupeNATSTests"
        ),
        .testTarget(
            name: "TroupeClusterTests",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                "TroupeCluster", "TroupeActors", "TroupeMembership", "TroupePlacement", "TroupeWire", "TroupeProto",
                "TroupeStore", "TroupeTestSupport", "TroupeTestActors",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TroupeClusterTests"
        ),
        .testTarget(
            name: "TroupePlacementTests",
            dependencies: ["TroupePlacement"],
            path: "Tests/TroupePlacementTests"
        ),
        .testTarget(
            name: "TroupeStoreTests",
            dependencies: [
                "TroupeStore", "TroupeSQLite", "TroupePostgres", "TroupeStateEncryption", "TroupeWire", "TroupeTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TroupeStoreTests"
        ),
        .testTarget(
            name: "TroupeSidecarTests",
            dependencies: [
                "TroupeTracing", .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                "TroupeSidecar", "Troupe", "TroupeWire", "TroupeProto", "TroupeActors", "TroupeStore", "TroupeNATS",
                "TroupePlacement", "TroupeBridge",
                "troupe-sidecar", "seat-reservation", "TroupeCLI", "troupe-test-host", "TroupeTestActors",
                "TroupeTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/TroupeSidecarTests"
        ),
    ]
)

// libFuzzer targets of the decoders that read bytes from outside (scripts/fuzz.sh,
// docs/security.md). Declared only with TROUPE_FUZZ=1: they link libFuzzer, so they build only
// with `-sanitize=fuzzer`, into their own build path.
if Context.environment["TROUPE_FUZZ"] == "1" {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        (
            "FuzzHostFrames",
            [
                "FuzzSupport", "TroupeSidecar", "TroupeWire", "TroupeActors", "TroupeStore", "TroupeProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        (
            "FuzzClusterEnvelopes",
            [
                "FuzzSupport", "TroupeCluster", "TroupeActors", "TroupeMembership", "TroupeWire", "TroupeProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        (
            "FuzzBridgeEnvelopes",
            ["FuzzSupport", "TroupeBridge", "TroupeNATS", "TroupeActors", "TroupeWire", "TroupeProto"]
        ),
        ("FuzzConfiguration", ["FuzzSupport", "TroupeSidecar", "TroupeWire"]),
    ]
    package.targets += [
        .systemLibrary(name: "CLibFuzzer", path: "fuzz/Sources/CLibFuzzer"),
        .target(
            name: "FuzzSupport",
            dependencies: [
                "CLibFuzzer",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "fuzz/Sources/FuzzSupport", swiftSettings: strict),
    ]
    for target in fuzzTargets {
        package.targets.append(
            .executableTarget(
                name: target.name, dependencies: target.dependencies, path: "fuzz/Sources/\(target.name)",
                swiftSettings: strict))
    }
}
