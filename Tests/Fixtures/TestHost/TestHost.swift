import Foundation
import Logging
import ServiceLifecycle
import Troupe
import TroupeTestActors

/// `troupe-test-host SOCKET SYSTEM`: serves the test actors until SIGTERM (or SIGKILL).
@main
struct TestHost {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count == 3 else {
            FileHandle.standardError.write(Data("usage: troupe-test-host SOCKET SYSTEM\n".utf8))
            exit(64)
        }
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        let logger = Logger(label: "troupe-test-host")
        let host = try TroupeHost(
            system: arguments[2], endpoint: try Endpoint(parsing: arguments[1]), actors: testActorTypes,
            name: "troupe-test-host", logger: logger)
        try await ServiceGroup(services: [host], gracefulShutdownSignals: [.sigterm], logger: logger).run()
    }
}
