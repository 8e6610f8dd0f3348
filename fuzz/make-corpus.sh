#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/): a handful of valid
# inputs of each decoder and the edge cases next to them. The output is committed; run this only
# after changing it or the .proto files. Needs protoc (apt-get install protobuf-compiler) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz/corpus
rm -rf "$out"
mkdir -p "$out"/{FuzzHostFrames,FuzzClusterEnvelopes,FuzzBridgeEnvelopes,FuzzConfiguration}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# encode MESSAGE TEXT: the protobuf encoding of TEXT (protobuf text format), in $work/last
encode() {
    protoc -I proto --encode="$1" proto/troupe/host/v1/host.proto proto/troupe/cluster/v1/cluster.proto \
        proto/troupe/bridge/v1/bridge.proto <<<"$2" >"$work/last"
}

# frame ID MESSAGE TEXT: appends one length-prefixed frame to $work/frames
frame() {
    encode "$2" "$3"
    python3 - "$1" "$work/last" >>"$work/frames" <<'PY'
import struct, sys
body = open(sys.argv[2], "rb").read()
sys.stdout.buffer.write(struct.pack(">IQ", len(body), int(sys.argv[1])) + body)
PY
}

# raw LENGTH ID HEXBODY: appends a frame header announcing LENGTH and the bytes HEXBODY
raw() {
    python3 - "$1" "$2" "$3" >>"$work/frames" <<'PY'
import struct, sys
sys.stdout.buffer.write(struct.pack(">IQ", int(sys.argv[1]), int(sys.argv[2])) + bytes.fromhex(sys.argv[3]))
PY
}

# seed TARGET NAME: moves $work/frames to the corpus
seed() { mv "$work/frames" "$out/$1/$2"; : >"$work/frames"; }
: >"$work/frames"

H=troupe.host.v1.Frame
hello='hello { protocol_version: 1 system: "fuzz" role: PEER_ROLE_HOST name: "seed" }'
secret_hello='hello { protocol_version: 1 system: "fuzz" role: PEER_ROLE_CLIENT name: "seed" secret: "fuzz-secret" }'
invoke_body='actor { name: "echo" } action: "echo" payload { type_url: "application/json" value: "\"hi\"" } timeout_ms: 100 metadata { key: "trace" value: "1" }'
invoke="invoke { $invoke_body }"

frame 1 $H "$hello"; seed FuzzHostFrames hello
frame 1 $H "$hello"
frame 3 $H 'register { actors { name: "echo" kind: ACTOR_KIND_NAMED actions: "echo" } actors { name: "room" kind: ACTOR_KIND_UNNAMED stateful: true durability: DURABILITY_WRITE_THROUGH channels: "news" } }'
frame 5 $H "$invoke"
frame 7 $H 'spawn { actor_type: "room" names: "r1" names: "r2" }'
frame 9 $H 'broadcast { channel: "news" action: "echo" payload { type_url: "text/plain" value: "x" } }'
frame 11 $H 'list_actors { actor_type: "echo" limit: 5 }'
frame 13 $H 'describe_sidecar {}'
frame 15 $H 'list_members {}'
frame 5 $H 'cancel {}'
frame 0 $H 'ping { nonce: 7 }'
frame 2 $H 'actor_result { }'
frame 0 $H 'goodbye { reason: "done" drain_timeout_ms: 10 }'
seed FuzzHostFrames host-session
frame 1 $H "$secret_hello"
frame 3 $H "$invoke"
frame 5 $H 'invoke { actor { name: "echo" } action: "echo" metadata { key: "a" value: "1" } metadata { key: "b" value: "2" } metadata { key: "c" value: "3" } metadata { key: "d" value: "4" } metadata { key: "e" value: "5" } }'
frame 7 $H 'hello { protocol_version: 1 system: "fuzz" role: PEER_ROLE_CLIENT }'
seed FuzzHostFrames client-with-secret
frame 1 $H 'hello { protocol_version: 99 system: "fuzz" role: PEER_ROLE_HOST }'
seed FuzzHostFrames wrong-version
frame 1 $H 'list_actors {}'
seed FuzzHostFrames request-before-hello
frame 1 $H "$hello"
raw 4294967295 3 "55555555"
raw 0 5 ""
raw 5 7 "ffffffffff"
seed FuzzHostFrames oversized-empty-garbage
frame 1 $H "$hello"
raw 3000 3 "$(python3 -c 'print("0a" * 100)')"
seed FuzzHostFrames trickled-oversize

C=troupe.cluster.v1.Envelope
handshake='handshake { protocol_version: 1 system: "fuzz" node { name: "peer" address: "127.0.0.1:7000" incarnation: 5 } }'
frame 0 $C "$handshake"; seed FuzzClusterEnvelopes handshake
encode troupe.host.v1.InvokeRequest "$invoke_body"
invoke_hex=$(xxd -p "$work/last" | tr -d '\n')
octal=$(python3 -c "import sys; print(''.join('\\\\%03o' % b for b in bytes.fromhex('$invoke_hex')))")
frame 0 $C "$handshake"
frame 1 $C "call { recipient_node: \"fuzz-node\" recipient_path: \"fuzz/echo\" target: \"troupe.ActorProcess.invoke\" arguments: \"$octal\" timeout_ms: 100 hops: 1 }"
frame 3 $C 'call { recipient_node: "fuzz-node" recipient_path: "p" target: "troupe.ActorDirectory.list" arguments: "" timeout_ms: 100 }'
frame 5 $C 'call { recipient_node: "other" recipient_path: "fuzz/x" target: "unknown.target" timeout_ms: 100 }'
frame 1 $C 'cancel {}'
frame 0 $C 'swim { kind: KIND_PING probe: 1 gossip { node { name: "peer" address: "127.0.0.1:7000" incarnation: 5 } status: MEMBER_STATUS_UP incarnation: 1 actor_types: "echo" } }'
frame 0 $C 'swim { kind: KIND_PING_REQUEST probe: 2 target { name: "third" address: "127.0.0.1:7001" incarnation: 2 } }'
frame 0 $C 'swim { kind: KIND_ACK probe: 3 target { name: "fuzz-node" address: "127.0.0.1:7946" incarnation: 1 } gossip { node { name: "fuzz-node" address: "127.0.0.1:7946" incarnation: 1 } status: MEMBER_STATUS_SUSPECT incarnation: 4 } }'
frame 9 $C 'reply { void: true }'
frame 0 $C "$handshake"
seed FuzzClusterEnvelopes session
frame 0 $C 'handshake { protocol_version: 1 system: "other" node { name: "peer" address: "127.0.0.1:7000" } }'
seed FuzzClusterEnvelopes wrong-system
frame 0 $C 'accepted { protocol_version: 1 node { name: "peer" address: "x:1" } }'
seed FuzzClusterEnvelopes accepted-unasked
frame 0 $C "$handshake"
raw 4294967295 7 "00"
raw 0 9 ""
raw 3 11 "ffffff"
seed FuzzClusterEnvelopes oversized-empty-garbage

B=troupe.bridge.v1
encode $B.Call 'version: 1 caller_system: "alpha" caller_node: "a1" caller_actor: "cart" actor: "counter" action: "add" payload { type_url: "application/json" value: "1" } metadata { key: "trace" value: "1" } timeout_ms: 500'
cp "$work/last" "$out/FuzzBridgeEnvelopes/call"
encode $B.Call 'version: 1 caller_system: "beta" actor: "room-1" action: "join" timeout_ms: 500 spawn_from: "room"'
cp "$work/last" "$out/FuzzBridgeEnvelopes/call-spawn"
encode $B.Call 'version: 2 caller_system: "alpha" actor: "counter" action: "add" timeout_ms: 0'
cp "$work/last" "$out/FuzzBridgeEnvelopes/call-wrong-version"
encode $B.Broadcast 'version: 1 origin_system: "alpha" channel: "news" action: "publish" payload { type_url: "text/plain" value: "x" } metadata { key: "k" value: "v" }'
cp "$work/last" "$out/FuzzBridgeEnvelopes/broadcast"
encode $B.Result 'reply { type_url: "application/json" value: "2" }'
cp "$work/last" "$out/FuzzBridgeEnvelopes/result-reply"
encode $B.Result 'failure { code: PERMISSION_DENIED message: "no" details { key: "caller_system" value: "alpha" } }'
cp "$work/last" "$out/FuzzBridgeEnvelopes/result-failure"

cat >"$out/FuzzConfiguration/full.yaml" <<'YAML'
system: tickets
node: node-1
socket: /run/troupe/troupe.sock
listen-tcp: 127.0.0.1:7100
store: sqlite
max-frame-bytes: 4194304
max-connection-buffer-bytes: 67108864
max-metadata-entries: 64
max-metadata-bytes: 16384
handshake-timeout-ms: 5000
max-concurrent-requests: 4096
bridge-allow-calls: "billing:account/deposit,account/get; *:echo/*"
bridge-allow-broadcasts: "billing:prices; *:news"
cluster-listen: 0.0.0.0:7946
cluster-seeds: 10.0.0.1:7946, [::1]:7946
cluster-max-frame-bytes: 16777216
YAML
cat >"$out/FuzzConfiguration/postgres.yaml" <<'YAML'
store: postgres
pg-url: postgres://troupe:secret@db:5432/troupe?sslmode=verify-full
pg-sslmode: verify-full
pg-pool-size: 8
encryption-keys: "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
encryption-active-key: k1
YAML
cat >"$out/FuzzConfiguration/refused.yaml" <<'YAML'
listen-tcp: 0.0.0.0:7100
max-frame-bytes: 8388608
max-connection-buffer-bytes: 65536
log-level: loud
YAML
cat >"$out/FuzzConfiguration/anchors.yaml" <<'YAML'
a: &x [1, 2, {b: *x}]
system: *x
YAML
printf 'nats-url: "nats://a:4222,tls://b:4222"\nnats-reconnect-wait-ms: 1e3\nidle-timeout-ms: .inf\n' \
    >"$out/FuzzConfiguration/scalars.yaml"
for target in "$out"/*; do echo "$(basename "$target"): $(ls "$target" | wc -l) seeds"; done
