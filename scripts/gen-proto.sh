#!/usr/bin/env bash
# Regenerates Sources/TroupeProto/*.pb.swift from every .proto under proto/.
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift built from the same
# swift-protobuf version as Package.swift pins (set PROTOC_GEN_SWIFT to its path, or have it on
# PATH; otherwise it is built here, which takes several minutes). The generated code is
# committed, so neither a build nor CI runs this; run it after changing a .proto file.
# proto/troupe/<area>/v1/<name>.proto becomes Sources/TroupeProto/<name>.pb.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift || true)}"
if [ -z "$plugin" ]; then
  swift build --product protoc-gen-swift -c release >&2
  plugin="$(swift build --show-bin-path -c release)/protoc-gen-swift"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mapfile -t protos < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_out="$out" --swift_opt=Visibility=Public \
  -I proto "${protos[@]}"
for proto in "${protos[@]}"; do
  generated="$out/${proto%.proto}.pb.swift"
  cp "$generated" "Sources/TroupeProto/$(basename "$generated")"
  echo "generated Sources/TroupeProto/$(basename "$generated") from proto/$proto"
done
