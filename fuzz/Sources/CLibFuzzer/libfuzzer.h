// libFuzzer's entry point for programs with a main of their own (llvm.org/docs/LibFuzzer.html,
// "Using libFuzzer as a library"). SwiftPM gives every executable target its own main, so the
// fuzz targets start libFuzzer through this instead of linking libFuzzer's main.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));
