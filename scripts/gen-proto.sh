#!/usr/bin/env bash
# Regenerates Sources/TroupeProto/*.pb.swift from proto/.
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift built from the same
# swift-protobuf version as Package.swift pins. The generated code is committed, so
# neither a build nor CI runs this; run it after changing a .proto file.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}"
if [ -z "$plugin" ]; then
  # Build the plugin from the resolved swift-protobuf checkout (about a minute).
  swift build --product protoc-gen-swift -c release >&2
  plugin="$(swift build --show-bin-path -c release)/protoc-gen-swift"
fi
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_out=Sources/TroupeProto --swift_opt=Visibility=Public \
  -I proto proto/troupe/host/v1/host.proto
mv Sources/TroupeProto/troupe/host/v1/host.pb.swift Sources/TroupeProto/host.pb.swift
rm -rf Sources/TroupeProto/troupe
echo "generated Sources/TroupeProto/host.pb.swift"
