public import NIOCore

/// How long to wait before the next attempt to reach a peer: doubling from `initial` up to
/// `maximum`, with up to a quarter of jitter so that nodes which lost a peer together do not
/// reconnect in lockstep. Reset after a successful connection.
public struct ReconnectBackoff: Sendable {
    public var initial: TimeAmount
    public var maximum: TimeAmount
    public private(set) var failures = 0

    public init(initial: TimeAmount = .milliseconds(50), maximum: TimeAmount = .seconds(2)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// Records a failed attempt and returns the delay before the next one. `jitter` in 0...1.
    public mutating func failed(jitter: Double = Double.random(in: 0...1)) -> TimeAmount {
        failures += 1
        let shift = min(failures - 1, 20)
        let base = min(initial.nanoseconds << shift, maximum.nanoseconds)
        let spread = Double(base) * 0.25 * min(max(jitter, 0), 1)
        return .nanoseconds(base - Int64(spread))
    }

    public mutating func succeeded() { failures = 0 }
}
