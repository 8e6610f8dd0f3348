import NIOCore
import Testing

@testable import TroupeActors

@Suite("LogRateLimit")
struct LogRateLimitTests {
    @Test func theFirstEventOfAnIntervalIsLoggedAndTheRestAreHeldBackAndCounted() {
        let limit = LogRateLimit(interval: .seconds(1))
        let start = NIODeadline.uptimeNanoseconds(10_000_000_000)
        #expect(limit.admit(now: start) == 0)
        #expect(limit.admit(now: start + .milliseconds(10)) == nil)
        #expect(limit.admit(now: start + .milliseconds(999)) == nil)
        // The next interval's first line says how many were held back before it.
        #expect(limit.admit(now: start + .seconds(1)) == 2)
        #expect(limit.admit(now: start + .milliseconds(1500)) == nil)
        #expect(limit.admit(now: start + .seconds(3)) == 1)
    }
}
