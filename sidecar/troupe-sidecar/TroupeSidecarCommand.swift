import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import Tracing
import TroupeSidecar
import TroupeTracing
import TroupeWire

/// `troupe-sidecar`: runs one Troupe sidecar until SIGTERM or SIGINT.
@main
struct TroupeSidecarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "troupe-sidecar",
        abstract: "Runs a Troupe sidecar next to an actor host.",
        usage: "troupe-sidecar [--config FILE] [--SETTING VALUE ...]",
        discussion: """
            Settings come from defaults, then the YAML file (--config or TROUPE_CONFIG), then TROUPE_* \
            environment variables, then these flags (--SETTING VALUE or --SETTING=VALUE). \
            See docs/configuration.md.

            SETTINGS:
            \(SidecarConfiguration.settings.map { "  \($0.flag) VALUE\n        \($0.summary) (\($0.environmentVariable))" }.joined(separator: "\n"))
            """)

    @Option(help: "YAML configuration file.") var config: String?
    /// `--SETTING VALUE` pairs, one for each entry of `SidecarConfiguration.settings`: taken from
    /// the table rather than declared one by one, so a new setting needs no flag of its own.
    @Argument(parsing: .allUnrecognized, help: .hidden) var settings: [String] = []

    /// The flags as (setting key, value) pairs, in command-line order.
    func settingFlags() throws(TroupeError) -> [(String, String)] {
        var pairs: [(String, String)] = []
        var remaining = settings[...]
        while let argument = remaining.popFirst() {
            guard argument.hasPrefix("--"), argument.count > 2 else {
                throw .invalidArgument("unexpected argument '\(argument)': settings are given as --SETTING VALUE")
            }
            let flag = argument.dropFirst(2)
            if let equals = flag.firstIndex(of: "=") {
                pairs.append((String(flag[..<equals]), String(flag[flag.index(after: equals)...])))
            } else if let value = remaining.popFirst() {
                pairs.append((String(flag), value))
            } else {
                throw .invalidArgument("--\(flag) needs a value")
            }
        }
        return pairs
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var configuration = SidecarConfiguration()
        do {
            if let file = config ?? environment["TROUPE_CONFIG"] { try configuration.apply(yamlFile: file) }
            try configuration.apply(environment: environment)
            for (key, value) in try settingFlags() {
                do { try configuration.set(key, to: value) } catch {
                    throw TroupeError.invalidArgument("--\(key): \(error.message)")
                }
            }
        } catch {
            throw ValidationError(TroupeError(wrapping: error).message)
        }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        // Lines logged inside a traced task carry its trace_id and span_id.
        LoggingSystem.bootstrap(
            { label, provider in
                var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
                handler.logLevel = level
                return handler
            }, metadataProvider: TraceLogMetadata.provider())
        // Every metric goes to Prometheus' default registry, which the admin endpoint's /metrics serves.
        var factory = PrometheusMetricsFactory()
        // A healthy timer fires well under the default 5 ms first bucket: finer buckets show it.
        factory.durationHistogramBuckets["troupe_timer_fire_lag_seconds"] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)
        var logger = Logger(label: "troupe.sidecar")
        logger[metadataKey: "troupe.system"] = "\(configuration.system)"
        logger[metadataKey: "troupe.node"] = "\(configuration.node)"
        // Spans only with a collector to send them to; once per process, before any call.
        let export = try TraceExport.make(configuration, logger: logger)
        if let export { InstrumentationSystem.bootstrap(export.tracer) }
        let sidecar = try await Sidecar.start(configuration: configuration, logger: logger, tracer: export?.tracer)
        logger.info(
            "sidecar starting",
            metadata: [
                "troupe.store": "\(sidecar.directory.store.description)",
                "troupe.otlp_endpoint": "\(configuration.otlpEndpoint ?? "off")",
            ])
        try await sidecar.run(alongside: export.map { [$0.service] } ?? [])
    }
}
