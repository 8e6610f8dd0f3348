public import Testing
public import TroupeWire

/// Expects `body` to throw a ``TroupeError`` with `code`, and returns that error for more checks.
@discardableResult
public func expectCode<T>(
    _ code: TroupeError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async -> TroupeError? {
    do {
        _ = try await body()
        Issue.record("expected \(code), but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as TroupeError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected TroupeError \(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Polls `condition` every 20 ms for at most `timeout` (30 s by default: long enough for processes
/// to start on a loaded 2-core machine; a condition that holds returns at once).
///
/// - Throws: `deadlineExceeded` naming `what` if the condition never held.
public func waitFor(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool)
    async throws
{
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TroupeError.deadlineExceeded("timed out waiting for \(what)")
}
