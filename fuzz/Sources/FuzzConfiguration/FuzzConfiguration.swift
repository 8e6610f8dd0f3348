import FuzzSupport
import TroupeSidecar

// Also libFuzzer's own entry point, for when the linker picks libFuzzer's main over this target's.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let text = String(decoding: UnsafeRawBufferPointer(fuzzInput: start, count: count), as: UTF8.self)
    var configuration = SidecarConfiguration()
    configuration.node = "fuzz-node"
    guard (try? configuration.apply(yaml: text, source: "fuzz")) != nil else { return 0 }
    _ = try? configuration.check()
    _ = configuration.natsOptions
    return 0
}
