#!/usr/bin/env bash
# Installs what building and testing Troupe needs, from Debian's packages:
#   libsqlite3-dev               the embedded state store
#   postgresql, postgresql-client  the Postgres store's tests and benchmarks (initdb, pg_ctl, psql, pgbench)
#   nats-server, libnats-dev     the cross-system bridge (server for tests, C client for the build)
#   libssl-dev, pkg-config       libnats' dependencies and how SwiftPM finds system libraries
#   openssl                      the command that makes throwaway CAs and certificates in TLS tests
#   golang-go, golang-github-masterminds-sprig-dev, golang-github-ghodss-yaml-dev,
#   golang-github-xeipuuv-gojsonschema-dev
#                                the Helm chart's renderer (tools/chart-render, scripts/check-chart.sh)
#   golang-github-nats-io-jwt-dev, golang-github-nats-io-nkeys-dev
#                                tools/nats-creds: operator, account and .creds files for tests
# and from PyPI (pip, pinned):
#   kubernetes-validate          validates the rendered chart against Kubernetes' schemas
#
# Idempotent: checks each one and runs apt-get (once) only for what is missing, so a second run
# changes nothing and needs no network. Works unattended (CI=true, no stdin). protoc is not
# needed: the generated Swift is committed (scripts/gen-proto.sh regenerates it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# True if the Debian package $1 is installed (falls back to pkg-config module $2 off Debian).
package_installed() {
    if command -v dpkg-query >/dev/null 2>&1; then
        [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
    else
        [ -n "${2:-}" ] && pkg-config --exists "$2" 2>/dev/null
    fi
}

have() {
    command -v "$1" >/dev/null 2>&1
}

missing=()
# what each missing package is for, printed once it is installed
declare -A reason=()

want() { # want PACKAGE REASON
    missing+=("$1")
    reason[$1]=$2
}

package_installed libsqlite3-dev sqlite3 || want libsqlite3-dev "SQLite headers (embedded state store)"
pg_bindir >/dev/null || want postgresql "PostgreSQL 15 server (initdb, pg_ctl)"
{ have psql && have pgbench; } || want postgresql-client "PostgreSQL client (psql, pgbench)"
have nats-server || want nats-server "NATS server (bridge tests)"
package_installed libnats-dev libnats || want libnats-dev "NATS C client (bridge)"
package_installed libssl-dev openssl || want libssl-dev "OpenSSL headers (libnats)"
have pkg-config || want pkg-config "pkg-config (system library lookup)"
have openssl || want openssl "openssl command (test certificates for the TLS tests)"
have go || want golang-go "Go toolchain (builds the chart renderer)"
package_installed golang-github-masterminds-sprig-dev || want golang-github-masterminds-sprig-dev "sprig template functions (chart renderer)"
package_installed golang-github-ghodss-yaml-dev || want golang-github-ghodss-yaml-dev "YAML through JSON as Helm reads it (chart renderer)"
package_installed golang-github-xeipuuv-gojsonschema-dev || want golang-github-xeipuuv-gojsonschema-dev "JSON schema validation of chart values (chart renderer)"
package_installed golang-github-nats-io-jwt-dev || want golang-github-nats-io-jwt-dev "NATS JWTs for the .creds tests (tools/nats-creds)"
package_installed golang-github-nats-io-nkeys-dev || want golang-github-nats-io-nkeys-dev "NATS NKeys for the .creds tests (tools/nats-creds)"

# kubernetes-validate carries the Kubernetes OpenAPI schemas in its package: after this install
# it validates offline. Pinned, so the schemas checked against do not move under the tests.
KUBERNETES_VALIDATE_VERSION=1.34.1
install_kubernetes_validate() {
    local installed
    installed=$(python3 -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true)
    if [ "$installed" = "$KUBERNETES_VALIDATE_VERSION" ]; then
        return 0
    fi
    echo "install-deps: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (pip)"
    if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" </dev/null; then
        error "pip install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed"
        return 1
    fi
    echo "installed kubernetes-validate $KUBERNETES_VALIDATE_VERSION: Kubernetes schema validation (chart checks)"
}
install_kubernetes_validate

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: everything is installed"
    exit 0
fi

if ! have apt-get; then
    error "missing: ${missing[*]}; this script installs them with apt-get (Debian/Ubuntu) only"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" </dev/null >>"$log" 2>&1
}

echo "install-deps: installing ${missing[*]}"
if ! apt_get update; then
    cat "$log" >&2
    error "apt-get update failed"
    exit 1
fi
if ! apt_get install -y --no-install-recommends "${missing[@]}"; then
    tail -50 "$log" >&2
    error "apt-get install ${missing[*]} failed"
    exit 1
fi
for package in "${missing[@]}"; do
    echo "installed $package: ${reason[$package]}"
done

# The server programs must be findable afterwards (scripts/test.sh looks where pg_bindir does).
if ! dir=$(pg_bindir); then
    error "postgresql is installed but initdb/pg_ctl were not found in /usr/lib/postgresql/*/bin or PATH"
    exit 1
fi
echo "install-deps: PostgreSQL server programs in $dir"
