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
