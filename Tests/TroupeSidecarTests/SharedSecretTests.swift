import Testing

@testable import TroupeSidecar

@Suite("Secrets and loopback addresses")
struct SharedSecretTests {
    @Test func secretMatchesOnlyItselfNotAPrefixAnExtensionOrAnotherCase() {
        let secret = SharedSecret("s3cret")
        #expect(secret.matches("s3cret"))
        for other in ["", "s3cre", "s3cret ", "s3cret\0", "S3cret", "s3creu", String(repeating: "s3cret", count: 2)] {
            #expect(!secret.matches(other), "\(other.debugDescription)")
        }
        #expect(SharedSecret("").matches(""))
        #expect("\(secret)" == "<secret>", "a secret must not print itself")
    }

    @Test func onlyLocalhostAnd127And1AreLoopback() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "0:0:0:0:0:0:0:1"] {
            #expect(isLoopback(host: host), "\(host)")
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "127.0.0", "127.0.0.1.example", "localhost.example", ""]
        {
            #expect(!isLoopback(host: host), "\(host)")
        }
    }
}
