public import CLibFuzzer

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One fuzz input: the bytes libFuzzer chose. Returns 0 (libFuzzer's convention for "keep going").
public typealias FuzzInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

/// Runs libFuzzer with this process's arguments (`-max_total_time=…`, corpus directories …),
/// calling `body` for each input, and exits with libFuzzer's status.
public func runLibFuzzer(_ body: FuzzInput) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, body))
}

extension UnsafeRawBufferPointer {
    /// The `count` bytes at `start`, as libFuzzer passes an input (`start` is nil when it is empty).
    public init(fuzzInput start: UnsafePointer<UInt8>?, count: Int) {
        self.init(start: start.map(UnsafeRawPointer.init), count: start == nil ? 0 : count)
    }
}
