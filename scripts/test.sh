#!/usr/bin/env bash
# The test command: installs the dependencies, starts a private PostgreSQL 15 and nats-server on
# loopback (free ports, temporary directories), runs the whole test suite, and stops and removes
# both servers afterwards, also on failure or Ctrl-C. Before the servers start it checks the Helm
# chart (scripts/check-chart.sh); a broken chart fails the run.
#
#   scripts/test.sh                    build and run every test
#   scripts/test.sh --filter Frame     extra arguments go to `swift test`
#   TROUPE_TEST_WIDTH=N scripts/test.sh  at most N tests at once (default 6)
#   TROUPE_SKIP_SWIFT=1 scripts/test.sh  only check the chart, start the servers, check them (psql `select 1`,
#                                        a NATS publish/subscribe round trip) and stop them
#
# Tests find the servers through:
#   TROUPE_TEST_PG_URL    postgres://postgres@127.0.0.1:PORT/troupe_test  (trust auth, no password)
#   TROUPE_TEST_NATS_URL  nats://127.0.0.1:PORT
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

PG_TMP=""
nats_tmp=""
nats_pid=""
servers_checked=0

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$nats_pid" ] || [ -n "$PG_TMP" ]; then
        section "Stopping test servers"
    fi
    if [ -n "$nats_pid" ]; then
        stop_process "$nats_pid" 10
        note "nats-server stopped"
    fi
    if [ -n "$PG_TMP" ]; then
        pg_private_stop
        note "PostgreSQL stopped"
    fi
    if [ "$status" -ne 0 ] && [ "$servers_checked" -eq 0 ]; then
        # Failed while starting the servers: show why.
        [ -n "$PG_TMP" ] && [ -s "$PG_TMP/postgres.log" ] && { echo "--- last lines of postgres.log"; tail -20 "$PG_TMP/postgres.log"; }
        for log in "$nats_tmp/nats.log" "$nats_tmp/stdout.log"; do
            [ -n "$nats_tmp" ] && [ -s "$log" ] && { echo "--- last lines of nats-server's $(basename "$log")"; tail -20 "$log"; }
        done
    fi
    [ -n "$PG_TMP" ] && rm -rf "$PG_TMP"
    [ -n "$nats_tmp" ] && rm -rf "$nats_tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Dependencies (scripts/install-deps.sh)"
bash scripts/install-deps.sh

section "Helm chart (scripts/check-chart.sh)"
bash scripts/check-chart.sh

section "Starting PostgreSQL on 127.0.0.1"
pg_private_start
psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -Atqc 'create database troupe_test' >/dev/null
export TROUPE_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/troupe_test"
note "TROUPE_TEST_PG_URL=$TROUPE_TEST_PG_URL (data in $PG_TMP)"

section "Starting nats-server on 127.0.0.1"
nats_tmp=$(mktemp -d "${TMPDIR:-/tmp}/troupe-test-nats.XXXXXX")
nats_port=""
for attempt in 1 2 3; do
    port=$(free_port)
    nats-server -a 127.0.0.1 -p "$port" -l "$nats_tmp/nats.log" -P "$nats_tmp/nats.pid" </dev/null >"$nats_tmp/stdout.log" 2>&1 &
    nats_pid=$!
    for ((i = 0; i < 100; i++)); do
        alive "$nats_pid" || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            nats_port=$port
            break
        fi
        sleep 0.1
    done
    [ -n "$nats_port" ] && break
    note "nats-server did not start on port $port (attempt $attempt)"
    stop_process "$nats_pid" 5
    nats_pid=""
done
if [ -z "$nats_port" ]; then
    error "nats-server did not start"
    exit 1
fi
export TROUPE_TEST_NATS_URL="nats://127.0.0.1:$nats_port"
note "TROUPE_TEST_NATS_URL=$TROUPE_TEST_NATS_URL ($(nats-server --version), pid $nats_pid)"

section "Checking the test servers"
answer=$(psql "$TROUPE_TEST_PG_URL" -Atqc 'select 1')
[ "$answer" = "1" ] || { error "psql select 1 answered '$answer'"; exit 1; }
note "PostgreSQL: select 1 -> $answer ($(psql "$TROUPE_TEST_PG_URL" -Atqc 'show server_version'))"
nats_check 127.0.0.1 "$nats_port"
note "NATS: CONNECT, SUB, PUB, PING round trip ok"
servers_checked=1

if [ "${TROUPE_SKIP_SWIFT:-0}" = "1" ]; then
    section "TROUPE_SKIP_SWIFT=1: not building or running tests"
    exit 0
fi

if swift format --version >/dev/null 2>&1; then
    section "Lint (swift format, warnings only)"
    files=()
    while IFS= read -r file; do files+=("$file"); done < <(
        find Sources sidecar sdk Tests -name '*.swift' ! -name '*.pb.swift' 2>/dev/null | sort)
    if [ ${#files[@]} -gt 0 ]; then
        lint_log=$(mktemp)
        swift format lint --parallel "${files[@]}" >"$lint_log" 2>&1 || true
        count=$(grep -c 'warning:\|error:' "$lint_log" || true)
        note "$count finding(s) in ${#files[@]} files (generated *.pb.swift skipped); last 20:"
        tail -20 "$lint_log"
        rm -f "$lint_log"
    fi
fi

section "Build (swift build --build-tests)"
swift build --build-tests

# At most this many tests at once (TROUPE_TEST_WIDTH). Unbounded, the first half-minute started
# dozens of sidecar and host processes, nats-servers and Postgres connections together on 2 cores,
# and tests bound by setup timeouts lost them; 6 at a time ran the whole suite faster (52 s
# against 87-98 s) and without a failure.
width="${TROUPE_TEST_WIDTH:-6}"
section "Tests (swift test, at most $width at once, $*)"
test_log=$(mktemp "${TMPDIR:-/tmp}/troupe-test-log.XXXXXX")
set +e
swift test --experimental-maximum-parallelization-width "$width" "$@" 2>&1 | tee "$test_log"
status=${PIPESTATUS[0]}
set -e
# The suite runs in parallel on 2 cores, where a test with a tight timing margin (heartbeats, a
# handshake timeout, a fresh Postgres answering within 1 s) can lose once under the load of the
# others. The tests that failed are run once more, one at a time, and their result is the run's:
# a real failure fails again; each first failure stays listed above and in the summary below.
# Up to 10 of them: a slow minute on a shared VM has failed as many as 8 setup-bound tests (hosts
# that did not register in time) in one run, all of which then passed alone; more than 10 at once
# is not load, and fails the run without a re-run.
failed=$(grep -oE '^✘ Test [A-Za-z0-9_]+\(' "$test_log" | sed -E 's/^✘ Test //; s/\($//' | sort -u || true)
rm -f "$test_log"
if [ "$status" -ne 0 ] && [ -n "$failed" ] && [ "$(printf '%s\n' "$failed" | wc -l)" -le 10 ]; then
    section "Failed under parallel load, run again one at a time: $(printf '%s ' $failed)"
    filter=$(printf '%s\n' "$failed" | paste -sd'|')
    set +e
    swift test --skip-build --no-parallel --filter "($filter)\\("
    status=$?
    set -e
    note "first failures: $(printf '%s ' $failed); their serial re-run exited with $status"
fi
section "swift test exited with $status after $((SECONDS - started)) s in all"
exit "$status"
