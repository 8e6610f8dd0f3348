#!/usr/bin/env bash
# The seat-reservation demo on the embedded SQLite store, no servers needed:
#   1. builds troupe-sidecar, seat-reservation and the troupe CLI (release),
#   2. starts a sidecar (system "tickets") and the example's actor host in a temporary directory,
#   3. lets 8 concurrent buyers compete for 20 seats (fails on any double booking),
#   4. restarts the sidecar on the same SQLite file and shows the seat map survived,
#   5. calls the same actor with the `troupe` CLI,
# then stops everything and removes the directory, also on failure or Ctrl-C.
#
#   TROUPE_DEMO_KEEP=1 scripts/demo.sh   keeps the directory (logs, state.sqlite) for a look
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

products=(troupe-sidecar seat-reservation troupe)
dir=""
sidecar_pid=""
host_pid=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$host_pid$sidecar_pid" ]; then
        section "Cleaning up"
    fi
    stop_process "$host_pid" 10
    stop_process "$sidecar_pid" 15
    if [ -n "$dir" ] && [ "$status" -ne 0 ]; then
        for log in "$dir/sidecar.log" "$dir/host.log"; do
            [ -s "$log" ] && { echo "--- last lines of $(basename "$log")"; tail -25 "$log"; }
        done
    fi
    if [ -n "$dir" ]; then
        if [ "${TROUPE_DEMO_KEEP:-0}" = "1" ]; then
            note "kept $dir (TROUPE_DEMO_KEEP=1)"
        else
            rm -rf "$dir"
        fi
    fi
    if [ "$status" -ne 0 ]; then
        echo "demo failed (exit $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "Dependencies (scripts/install-deps.sh)"
bash scripts/install-deps.sh

section "Building ${products[*]} (release; the first build takes several minutes)"
for product in "${products[@]}"; do
    swift build -c release --product "$product"
done
bin=$(swift build -c release --show-bin-path)
for product in "${products[@]}"; do
    [ -x "$bin/$product" ] || { error "$bin/$product was not built"; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/troupe-demo.XXXXXX")
socket="$dir/troupe.sock"
# The CLI also reads the socket from here; the commands below pass --socket all the same.
export TROUPE_SOCKET="$socket"

# Starts the sidecar in the background and waits (30 s at most) for its socket.
start_sidecar() {
    # A socket file left by the previous run would look like a ready sidecar.
    rm -f "$socket"
    "$bin/troupe-sidecar" --system tickets --socket "$socket" --data-path "$dir/state.sqlite" \
        </dev/null >>"$dir/sidecar.log" 2>&1 &
    sidecar_pid=$!
    for ((i = 0; i < 300; i++)); do
        [ -S "$socket" ] && { note "sidecar pid $sidecar_pid listening on $socket"; return 0; }
        alive "$sidecar_pid" || { error "the sidecar exited before opening its socket"; exit 1; }
        sleep 0.1
    done
    error "no socket at $socket after 30 s"
    exit 1
}

# Runs the troupe CLI against the demo's sidecar: `troupe SUBCOMMAND ARGS... --socket SOCKET`.
troupe_cli() {
    "$bin/troupe" "$@" --socket "$socket"
}

# Waits (30 s at most) until the actor host has registered its actor types with the sidecar,
# as `troupe describe` shows.
wait_for_host() {
    for ((i = 0; i < 150; i++)); do
        alive "$host_pid" || { error "the actor host exited (see host.log below)"; exit 1; }
        if out=$(troupe_cli describe 2>/dev/null) && grep -qw event <<<"$out"; then
            note "actor host pid $host_pid registered its actor types"
            return 0
        fi
        sleep 0.2
    done
    note "the actor host has not registered its types after 30 s; going on anyway"
}

# Starts the example's actor host in the background and waits until it has registered.
start_host() {
    "$bin/seat-reservation" host --socket "$socket" </dev/null >>"$dir/host.log" 2>&1 &
    host_pid=$!
    wait_for_host
}

section "Starting the sidecar (system tickets, SQLite store at $dir/state.sqlite)"
start_sidecar

section "Starting the seat-reservation actor host"
start_host

section "8 buyers compete for 20 seats of concert-1"
"$bin/seat-reservation" buyers --socket "$socket" --event concert-1 --seats 20 --buyers 8

section "Restarting the sidecar (SIGTERM, then start again on the same SQLite file)"
kill -TERM "$sidecar_pid"
if ! wait_exit "$sidecar_pid" 30; then
    error "the sidecar did not exit within 30 s of SIGTERM"
    exit 1
fi
sidecar_status=0
wait "$sidecar_pid" || sidecar_status=$?
note "sidecar stopped (exit status $sidecar_status)"
sidecar_pid=""
# The host either leaves when its sidecar goes away or reconnects once it is back.
wait_exit "$host_pid" 3 || true
start_sidecar
if alive "$host_pid"; then
    note "actor host still running (pid $host_pid); waiting for it to reconnect"
    wait_for_host
else
    wait "$host_pid" 2>/dev/null || true
    section "Restarting the actor host (it exited when its sidecar went away)"
    start_host
fi

section "The seat map after the restart (seat-reservation show)"
"$bin/seat-reservation" show --socket "$socket" --event concert-1

section "The same actor through the CLI: troupe invoke tickets concert-1 seat-map"
troupe_cli invoke tickets concert-1 seat-map --json '{}'

section "Active actors after the restart (troupe actors)"
troupe_cli actors

section "Done"
note "the seat map survived a sidecar restart (TROUPE_DEMO_KEEP=1 keeps $dir and its logs)"
