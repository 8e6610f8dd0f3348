# The troupe-sidecar image the Helm chart runs (charts/troupe, values sidecar.image).
#
#   docker build -t troupe/troupe-sidecar:0.1.0 .
#
# Stage 1 builds the executable in release mode with the Swift runtime linked in statically;
# stage 2 is a slim Debian bookworm with only the shared libraries it loads. scripts/check-chart.sh
# checks that the binary, the ports and the user here match the chart.
ARG SWIFT_VERSION=6.3.1

FROM swift:${SWIFT_VERSION}-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnats-dev libsqlite3-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Package.swift names every target, tests included, so the whole tree is the build context
# (.dockerignore leaves out build folders).
COPY . .
RUN swift build -c release --product troupe-sidecar --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/troupe-sidecar" /out/troupe-sidecar

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnats3.4 libsqlite3-0 libssl3 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 troupe \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin troupe
COPY --from=build /out/troupe-sidecar /usr/local/bin/troupe-sidecar
# The chart's runAsUser; the root filesystem can be read-only: the socket and the SQLite file go
# to volumes (socket.dir, sidecar.data.dir).
USER 65532:65532
# admin (probes, /metrics, JSON API) and cluster, as values.yaml sidecar.admin.port and cluster.port.
EXPOSE 9090 7355
ENTRYPOINT ["/usr/local/bin/troupe-sidecar"]
