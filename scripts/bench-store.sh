#!/usr/bin/env bash
# The Postgres store benchmark (docs/benchmarks.md): builds troupe-store-bench in release mode,
# starts a private PostgreSQL 15 on loopback (fsync on, as in production; max_connections raised
# for pgbench's 256 clients), runs the benchmark against it, and removes the server afterwards.
#
#   scripts/bench-store.sh                  defaults: 256 actors, 256-byte states, 10 s runs
#   scripts/bench-store.sh --seconds 5      extra arguments go to troupe-store-bench
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

bash scripts/install-deps.sh
PG_TMP=""
trap 'pg_private_stop; [ -n "$PG_TMP" ] && rm -rf "$PG_TMP"' EXIT

section "Build (release)"
swift build -c release --product troupe-store-bench
bin=$(swift build -c release --show-bin-path)

section "Starting PostgreSQL on 127.0.0.1"
pg_private_start "-c fsync=on -c max_connections=400 -c shared_buffers=256MB"
note "PostgreSQL on port $PG_PORT (fsync on, synchronous_commit on)"

section "troupe-store-bench $*"
"$bin/troupe-store-bench" --pg-url "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable" "$@"
