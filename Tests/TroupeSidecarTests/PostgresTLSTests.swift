import Foundation
import Logging
import Testing
import TroupePostgres
import TroupeStore
import TroupeTestActors
import TroupeTestSupport
import TroupeWire

/// The state store over TLS to a server that accepts nothing else, with a throwaway CA whose
/// server certificate names 127.0.0.1 only.
@Suite("PostgreSQL over TLS", .serialized)
struct PostgresTLSTests {
    static let logger = Logger(label: "test.postgres-tls")

    static func configuration(
        _ server: TestPostgresServer, host: String = "127.0.0.1", mode: PostgresStateStore.Configuration.TLSMode,
        roots: String?
    ) -> PostgresStateStore.Configuration {
        PostgresStateStore.Configuration(
            host: host, port: server.port, username: "postgres", database: "postgres", tls: mode,
            rootCertificatePath: roots, connectTimeout: .seconds(5))
    }

    @Test func verifyFullConnectsWithTheRightCAAndRefusesAnotherCAOrPlainTCP() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let server = try await TestPostgresServer.start(
            tls: (certificates.serverCertificate, certificates.serverKey))
        defer { server.remove() }

        // The right CA and the name the certificate carries: the store opens and works.
        let store = try await PostgresStateStore.open(
            configuration: Self.configuration(server, mode: .verifyFull, roots: certificates.caFile),
            logger: Self.logger)
        let key = ActorKey(system: "tls", name: "seat-1")
        let token = try await store.activate(key, actorType: "Seat").fencingToken
        #expect(try await store.write(key, state: StateBlob(typeURL: "t", bytes: [1]), fencingToken: token) == 1)
        try await store.close()

        // A certificate from another CA is refused.
        let wrongCA = await expectCode(.unavailable) {
            try await PostgresStateStore.open(
                configuration: Self.configuration(server, mode: .verifyFull, roots: certificates.otherCAFile),
                logger: Self.logger)
        }
        #expect(wrongCA?.message.isEmpty == false)
        // The server takes nothing but TLS: a plain connection is turned away.
        let plain = await expectCode(.unauthenticated) {
            try await PostgresStateStore.open(
                configuration: Self.configuration(server, mode: .disable, roots: nil), logger: Self.logger)
        }
        #expect(plain?.message.contains("no encryption") == true, "\(plain?.message ?? "")")
    }

    @Test func verifyFullRefusesACertificateForAnotherNameWhereVerifyCAAcceptsIt() async throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        // The same CA signs a certificate that names db.example only, not 127.0.0.1.
        let elsewhere = try certificates.serverCertificate(named: "db.example")
        let server = try await TestPostgresServer.start(tls: elsewhere)
        defer { server.remove() }

        let error = await expectCode(.unavailable) {
            try await PostgresStateStore.open(
                configuration: Self.configuration(server, mode: .verifyFull, roots: certificates.caFile),
                logger: Self.logger)
        }
        #expect(error?.message.isEmpty == false)
        let chainOnly = try await PostgresStateStore.open(
            configuration: Self.configuration(server, mode: .verifyCA, roots: certificates.caFile), logger: Self.logger)
        try await chainOnly.close()
    }

    @Test func sslModeAndRootCertificateComeFromTheURL() throws {
        let configuration = try PostgresStateStore.Configuration(
            url: "postgres://troupe@db.internal/state?sslmode=verify-full&sslrootcert=/etc/troupe/pg-ca.pem")
        #expect(configuration.tls == .verifyFull)
        #expect(configuration.rootCertificatePath == "/etc/troupe/pg-ca.pem")
        #expect(throws: TroupeError.self) {
            try PostgresStateStore.Configuration(url: "postgres://troupe@db/state?sslmode=verify-everything")
        }
    }
}
