#!/usr/bin/env bash
# Checks the Helm chart charts/troupe without helm (none can be installed here):
#   1. builds tools/chart-render (Go's text/template + sprig + Helm's functions, from Debian's
#      Go packages, offline, GOPATH mode) into .build-chart/ and runs its tests;
#   2. renders the chart for the default values and every charts/troupe/ci/*-values.yaml at the
#      pinned Kubernetes versions, validates every manifest with kubernetes-validate (strict) and
#      checks that the pod fits the sidecar (tools/chart-check/check_chart.py);
#   3. checks that every charts/troupe/ci/invalid/*.yaml is refused by values.schema.json;
#   4. checks that the Dockerfile builds the image the chart runs: binary, ports, user.
# docs/kubernetes.md explains why this rendering is faithful to helm and where it differs.
# Needs what scripts/install-deps.sh installs. Closes with "chart: N passed, M failed"; exits 1
# if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion; native sidecars) and the
# newest whose schemas the pinned kubernetes-validate carries.
KUBE_VERSIONS=(1.29.0 1.34.0)
TOO_OLD=1.28.0

for tool in go python3; do
    command -v "$tool" >/dev/null 2>&1 || { error "$tool not found: run scripts/install-deps.sh"; exit 1; }
done
python3 -c 'import kubernetes_validate' 2>/dev/null || {
    error "python module kubernetes_validate not found: run scripts/install-deps.sh"
    exit 1
}

out=.build-chart
mkdir -p "$out/go-cache"
# GOPATH mode on Debian's packaged Go sources: no module download, no network.
go_offline() {
    GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$PWD/$out/go-cache" GOTOOLCHAIN=local go "$@"
}
if ! go_offline build -o "$out/chart-render" ./tools/chart-render; then
    error "building tools/chart-render failed (Debian's golang-github-masterminds-sprig-dev etc. missing? run scripts/install-deps.sh)"
    exit 1
fi
# The renderer's own tests: it behaves as Helm's engine on the points the chart relies on.
go_offline test -count=1 ./tools/chart-render
note "renderer: $(go version | cut -d' ' -f3), sprig $(dpkg-query -W -f='${Version}' golang-github-masterminds-sprig-dev 2>/dev/null || echo '?'); validator: kubernetes-validate $(python3 -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))'); Kubernetes ${KUBE_VERSIONS[*]}"

args=()
for v in "${KUBE_VERSIONS[@]}"; do args+=(--kube-version "$v"); done
python3 tools/chart-check/check_chart.py --renderer "$out/chart-render" --chart charts/troupe \
    "${args[@]}" --too-old "$TOO_OLD" --settings sidecar/TroupeSidecar/SidecarConfiguration.swift \
    --dockerfile Dockerfile --package Package.swift </dev/null
