# Shared helpers for scripts/*.sh. Source it; it defines functions and sets nothing else.
# shellcheck shell=bash

# A visible section header: "==> text".
section() {
    printf '\n==> %s\n' "$*"
}

# A note under a section.
note() {
    printf '    %s\n' "$*"
}

# An error message on stderr.
error() {
    printf 'error: %s\n' "$*" >&2
}

# Runs a command as root: directly if we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        error "need root for: $* (not root and no sudo)"
        return 1
    fi
}

# Prints a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Prints the directory holding PostgreSQL's server programs (initdb, pg_ctl, postgres).
# Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH; some machines link them
# into PATH (/usr/local/bin). Prefers version 15, then the newest installed.
pg_bindir() {
    local candidate
    if [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    candidate=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -name initdb -path '*/bin/*' 2>/dev/null | sort -V | tail -1)
    if [ -n "$candidate" ] && [ -x "$(dirname "$candidate")/pg_ctl" ]; then
        dirname "$candidate"
        return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        # Resolve symlinks so postgres (the server) is found next to them.
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

# True while process $1 exists.
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

# Waits up to $2 seconds for process $1 to exit. Returns 1 if it is still running.
wait_exit() {
    local pid=$1 limit=$2 i
    for ((i = 0; i < limit * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    ! alive "$pid"
}

# Stops process $1: SIGTERM, up to $2 seconds (default 10) to exit, then SIGKILL.
stop_process() {
    local pid=$1 limit=${2:-10}
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$limit"; then
        note "process $pid ignored SIGTERM for ${limit}s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 5 || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Speaks to a NATS server at $1 (host) $2 (port): reads INFO, sends CONNECT, subscribes,
# publishes one message and waits for it and for a PONG. Fails unless all of that happens
# within 5 seconds.
nats_check() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=5)
s.settimeout(5)
buf = b""
def read_until(token):
    global buf
    while token not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("nats: connection closed before %r" % token)
        buf += chunk
read_until(b"\r\n")
if not buf.startswith(b"INFO "):
    raise SystemExit("nats: expected INFO, got %r" % buf[:80])
buf = b""
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB troupe.check 1\r\nPUB troupe.check 5\r\nhello\r\nPING\r\n')
read_until(b"PONG\r\n")
if b"MSG troupe.check 1 5\r\nhello\r\n" not in buf:
    raise SystemExit("nats: published message did not come back: %r" % buf[:200])
s.close()
EOF
}

# Runs a PostgreSQL server program as the `postgres` user when we are root (initdb refuses to
# run as root), as ourselves otherwise, in $PG_TMP so that postgres never sits in a working
# directory it cannot read.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$PG_TMP" && runuser -u postgres -- "$@")
    else
        (cd "$PG_TMP" && "$@")
    fi
}

# Starts a throwaway PostgreSQL server on 127.0.0.1: a new temporary data directory, a free port,
# trust authentication, fsync off (a crash of the machine loses nothing we keep). Extra server
# options may follow as arguments ("-c max_connections=400"). Sets PG_TMP, PG_BIN and PG_PORT;
# pg_private_stop stops it. Callers remove $PG_TMP.
pg_private_start() {
    local extra="$*" port attempt i
    PG_PORT=""
    if ! PG_BIN=$(pg_bindir); then
        error "initdb/pg_ctl not found (install-deps.sh should have installed postgresql)"
        return 1
    fi
    PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/troupe-pg.XXXXXX")
    if [ "$(id -u)" -eq 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            error "running as root, but there is no 'postgres' user to run the server as (Debian's postgresql package creates it)"
            return 1
        fi
        chown postgres: "$PG_TMP"
    fi
    as_pg mkdir -p "$PG_TMP/socket"
    note "server programs: $PG_BIN ($("$PG_BIN/postgres" --version))"
    as_pg "$PG_BIN/initdb" -D "$PG_TMP/data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
        >"$PG_TMP/initdb.log" 2>&1 || { cat "$PG_TMP/initdb.log" >&2; error "initdb failed"; return 1; }
    for attempt in 1 2 3; do
        port=$(free_port)
        if as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/postgres.log" -w -t 30 start \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_TMP/socket -c fsync=off $extra" \
            >/dev/null 2>&1; then
            PG_PORT=$port
            break
        fi
        note "PostgreSQL did not start on port $port (attempt $attempt)"
    done
    if [ -z "$PG_PORT" ]; then
        error "PostgreSQL did not start"
        return 1
    fi
    for ((i = 0; i < 100; i++)); do
        psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -Atqc 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    error "PostgreSQL started but does not answer"
    return 1
}

# Stops the server pg_private_start started, if it runs.
pg_private_stop() {
    local pid
    [ -n "${PG_TMP:-}" ] && [ -f "$PG_TMP/data/postmaster.pid" ] || return 0
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" stop -m fast -w -t 30 >/dev/null 2>&1; then
        # pg_ctl could not stop it: kill the postmaster recorded in its pid file.
        pid=$(head -1 "$PG_TMP/data/postmaster.pid" 2>/dev/null)
        [ -n "$pid" ] && stop_process "$pid" 10
    fi
}
