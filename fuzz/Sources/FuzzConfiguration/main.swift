// libFuzzer target: the sidecar's YAML configuration (`TROUPE_CONFIG`, a ConfigMap).
//
// The input is applied with `SidecarConfiguration.apply(yaml:)` (Yams, then each setting's
// parser) and, when that succeeds, checked with `SidecarConfiguration.check()`, as
// `Sidecar.start` does before it opens anything. A crash, a trap or a hang is a bug; a refused
// configuration is not.

import FuzzSupport

runLibFuzzer { start, count in fuzzConfiguration(start, count) }
