#!/usr/bin/env python3
"""Renders charts/troupe with tools/chart-render and checks what comes out.

For the default values and every charts/troupe/ci/*-values.yaml:
  * every manifest validates (strict: unknown fields refused) against the Kubernetes OpenAPI
    schemas of the pinned version, with kubernetes-validate;
  * the pod fits the sidecar: socket on a shared emptyDir at the path the sidecar is told,
    probes on the admin port the sidecar listens on, grace period covering the drain,
    hardened security contexts, secrets only as TROUPE_* from secretKeyRef, settings the sidecar
    knows; the peers Service, PodDisruptionBudget and ServiceMonitor select what they should.
For every charts/troupe/ci/invalid/*.yaml: rendering is refused, naming the value its first
line (`# expect: TEXT`) names.

Prints one line per check and closes with `chart: N passed, M failed`; exits 1 on a failure.
"""

import argparse
import math
import pathlib
import re
import subprocess
import sys

import kubernetes_validate
import kubernetes_validate.utils
import yaml

# Settings of the issues that run in parallel (store, cluster, bridge, encryption):
# the chart writes them before SidecarConfiguration.settings has them. Each one leaves this list
# when it lands in the table.
PENDING_SETTINGS: set[str] = set()
# Settings that carry secrets: only ever as TROUPE_* from a Secret, never in the ConfigMap.
SECRET_SETTINGS = {"pg-url", "pg-password", "nats-user", "nats-password", "nats-token", "encryption-keys",
                   "host-secret", "admin-token"}
HOST_CONTAINER_ENV = {"TROUPE_SOCKET", "TROUPE_SYSTEM"}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}")
        return condition


def env_var(key):
    return "TROUPE_" + key.upper().replace("-", "_")


def table_settings(swift_file):
    return set(re.findall(r'Setting\(key: "([a-z0-9-]+)"', swift_file.read_text()))


def render(renderer, chart, kube_version, values=None, namespace="troupe-test"):
    cmd = [renderer, "--kube-version", kube_version, "--namespace", namespace, "--release", "demo"]
    if values:
        cmd += ["-f", str(values)]
    cmd.append(str(chart))
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_case(c, case, manifests, kube_version, values, known_settings):
    by_kind = {}
    for doc in manifests:
        by_kind.setdefault(doc.get("kind"), []).append(doc)

    # 1. Kubernetes schemas.
    for doc in manifests:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind == "ServiceMonitor":
            continue  # a CRD: no built-in schema; checked structurally below
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
            c.check(f"{case}: {kind}/{name} is valid Kubernetes {kube_version} (strict)", True)
        except kubernetes_validate.utils.ValidationError as e:
            c.check(f"{case}: {kind}/{name} is valid Kubernetes {kube_version} (strict)", False,
                    f"{'.'.join(str(p) for p in e.path)}: {e.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            c.check(f"{case}: {kind}/{name} has a Kubernetes schema", False, str(e))

    deployments = by_kind.get("Deployment", [])
    if not c.check(f"{case}: exactly one Deployment", len(deployments) == 1, f"{len(deployments)}"):
        return
    dep = deployments[0]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    pod_labels = pod["metadata"].get("labels", {})
    sidecar_values = values.get("sidecar", {})
    sidecar_name = sidecar_values.get("name", "troupe-sidecar")
    native = [x for x in spec.get("initContainers", []) if x["name"] == sidecar_name]
    regular = [x for x in spec["containers"] if x["name"] == sidecar_name]
    c.check(f"{case}: the sidecar runs once, as a container or a native sidecar",
            len(native) + len(regular) == 1 and all(x.get("restartPolicy") == "Always" for x in native))
    if len(native) + len(regular) != 1:
        return
    sidecar = (native + regular)[0]
    hosts = [x for x in spec["containers"] if x["name"] != sidecar_name]
    if not c.check(f"{case}: the actor host runs next to the sidecar", len(hosts) == 1):
        return
    host = hosts[0]
    c.check(f"{case}: native sidecar only when sidecar.native", bool(native) == bool(sidecar_values.get("native")))

    # 2. The sidecar's configuration.
    env = {e["name"]: e for e in sidecar.get("env", [])}
    config_path = env.get("TROUPE_CONFIG", {}).get("value", "")
    mounts = {m["name"]: m for m in sidecar.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    config_mount = next((m for m in mounts.values() if config_path.startswith(m["mountPath"].rstrip("/") + "/")), None)
    cm_name = volumes.get(config_mount["name"], {}).get("configMap", {}).get("name") if config_mount else None
    cms = [x for x in by_kind.get("ConfigMap", []) if x["metadata"]["name"] == cm_name]
    if not c.check(f"{case}: TROUPE_CONFIG is a file of a rendered ConfigMap mounted in the sidecar", len(cms) == 1,
                   f"TROUPE_CONFIG={config_path!r}, configMap {cm_name!r}"):
        return
    file_key = config_path[len(config_mount["mountPath"].rstrip("/")) + 1:]
    config = yaml.safe_load(cms[0]["data"].get(file_key, ""))
    if not c.check(f"{case}: {file_key} is a flat mapping of settings to scalars",
                   isinstance(config, dict) and all(isinstance(v, (str, int, float, bool)) for v in config.values())):
        return
    pending = sorted(set(config) & PENDING_SETTINGS - known_settings)
    if pending:
        print(f"note {case}: {file_key} uses settings the sidecar does not have yet: {', '.join(pending)}")
    passthrough = set(sidecar_values.get("config", {}) or {})
    unknown = set(config) - known_settings - PENDING_SETTINGS - passthrough
    c.check(f"{case}: every setting in {file_key} is one the sidecar knows (or passed through sidecar.config)",
            not unknown, f"unknown: {sorted(unknown)}")
    c.check(f"{case}: no secret in the ConfigMap", not (set(config) & SECRET_SETTINGS),
            f"{sorted(set(config) & SECRET_SETTINGS)}")
    for name, var in env.items():
        if name.startswith("TROUPE_") and name not in ("TROUPE_CONFIG", "TROUPE_NODE", "TROUPE_POD_IP") and "valueFrom" in var:
            c.check(f"{case}: {name} comes from a Secret", "secretKeyRef" in var["valueFrom"])
    for setting in SECRET_SETTINGS:
        if env_var(setting) in env:
            c.check(f"{case}: {env_var(setting)} is a secretKeyRef, not a value",
                    "secretKeyRef" in env[env_var(setting)].get("valueFrom", {}))
    if config.get("store") == "postgres":
        c.check(f"{case}: store postgres gets TROUPE_PG_URL from a Secret",
                "secretKeyRef" in env.get("TROUPE_PG_URL", {}).get("valueFrom", {}))
    if "cluster-listen" in config:
        c.check(f"{case}: a cluster node advertises the pod's IP, not the 0.0.0.0 it listens on",
                env.get("TROUPE_POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP"
                and env.get("TROUPE_CLUSTER_ADVERTISE", {}).get("value", "").startswith("$(TROUPE_POD_IP):"))
    c.check(f"{case}: the node name is the pod name",
            env.get("TROUPE_NODE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name")

    # 3. The socket on a shared emptyDir.
    socket = config.get("socket", "")
    host_env = {e["name"]: e.get("value") for e in host.get("env", [])}
    c.check(f"{case}: the host is told the sidecar's socket and system",
            host_env.get("TROUPE_SOCKET") == socket and host_env.get("TROUPE_SYSTEM") == config.get("system"),
            f"host {host_env.get('TROUPE_SOCKET')!r}/{host_env.get('TROUPE_SYSTEM')!r}, sidecar {socket!r}/{config.get('system')!r}")
    # The socket lives in a subdirectory of the emptyDir: the sidecar creates it 0700 and refuses
    # the emptyDir itself, which the kubelet makes world-writable (docs/security.md).
    socket_dir = socket.rsplit("/", 1)[0]
    volume_dir = socket_dir.rsplit("/", 1)[0]
    def mount_of(container):
        return next((m for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == volume_dir), None)
    sm, hm = mount_of(sidecar), mount_of(host)
    c.check(f"{case}: the socket is in a subdirectory of one emptyDir mounted in both containers",
            sm is not None and hm is not None and sm["name"] == hm["name"]
            and "emptyDir" in volumes.get(sm["name"], {}) and not hm.get("readOnly") and not sm.get("readOnly"))

    # 4. Probes on the admin endpoint the sidecar listens on.
    admin = str(config.get("admin-listen", ""))
    admin_host, _, admin_port = admin.rpartition(":")
    ports = {p["name"]: p["containerPort"] for p in sidecar.get("ports", [])}
    c.check(f"{case}: admin-listen binds every pod address on the admin port",
            admin_host == "0.0.0.0" and admin_port.isdigit() and ports.get("admin") == int(admin_port), admin)
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = sidecar.get(probe, {}).get("httpGet", {})
        c.check(f"{case}: sidecar {probe} is GET {path} on the admin port",
                get.get("path") == path and get.get("port") in ("admin", ports.get("admin")), str(get))

    # 5. Drain, resources, security.
    drain = int(config.get("drain-timeout-ms", 10000))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    c.check(f"{case}: terminationGracePeriodSeconds ({grace}) covers drain-timeout-ms ({drain})",
            grace >= math.ceil(drain / 1000) + 1)
    res = sidecar.get("resources", {})
    c.check(f"{case}: the sidecar has resource requests and a memory limit",
            bool(res.get("requests")) and "memory" in res.get("limits", {}))
    pod_sc = spec.get("securityContext", {})
    for container in (host, sidecar):
        sc = container.get("securityContext", {})
        c.check(f"{case}: {container['name']} runs as non-root with a read-only root filesystem and no capabilities",
                (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) is True
                and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                and "ALL" in sc.get("capabilities", {}).get("drop", []))

    # 6. Peers Service, PodDisruptionBudget, ServiceMonitor.
    services = by_kind.get("Service", [])
    peers = [s for s in services if s["spec"].get("clusterIP") == "None"]
    if values.get("peerService", {}).get("create", True):
        if c.check(f"{case}: one headless peers Service", len(peers) == 1):
            svc = peers[0]
            c.check(f"{case}: the peers Service publishes not-ready pods", svc["spec"].get("publishNotReadyAddresses") is True)
            c.check(f"{case}: the peers Service selects the pods", labels_match(svc["spec"].get("selector"), pod_labels))
            cluster_port = next((p for p in svc["spec"]["ports"] if p["name"] == "cluster"), {})
            c.check(f"{case}: the peers Service's cluster port is the sidecar's",
                    cluster_port.get("targetPort") == "cluster" and "cluster" in ports)
            dns = config.get("cluster-dns")
            if dns is not None:
                c.check(f"{case}: cluster-dns is the peers Service's name",
                        dns.startswith(f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc."), dns)
    else:
        c.check(f"{case}: no peers Service when peerService.create is false", not peers)
    tls = values.get("cluster", {}).get("tls", {})
    if values.get("cluster", {}).get("enabled", True) and tls.get("enabled"):
        # The three files come from one Secret volume mounted whole (a subPath mount would never
        # see a renewed certificate), read-only.
        tls_mount = next((m for m in sidecar.get("volumeMounts", []) if m["name"] == "troupe-cluster-tls"), {})
        tls_dir = tls_mount.get("mountPath", "?")
        c.check(f"{case}: cluster TLS files come from the Secret {tls.get('secretName')}, mounted whole and read-only",
                volumes.get("troupe-cluster-tls", {}).get("secret", {}).get("secretName") == tls.get("secretName")
                and tls_mount.get("readOnly") is True and "subPath" not in tls_mount
                and config.get("cluster-tls-cert") == f"{tls_dir}/tls.crt"
                and config.get("cluster-tls-key") == f"{tls_dir}/tls.key"
                and config.get("cluster-tls-ca") == f"{tls_dir}/ca.crt", str(tls_mount))
    else:
        c.check(f"{case}: no cluster TLS unless enabled",
                "troupe-cluster-tls" not in volumes and not any(k.startswith("cluster-tls") for k in config))
    if values.get("cluster", {}).get("seeds"):
        c.check(f"{case}: cluster seeds replace DNS discovery",
                config.get("cluster-seeds") == ",".join(values["cluster"]["seeds"]) and "cluster-dns" not in config)
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if values.get("podDisruptionBudget", {}).get("enabled", True):
        c.check(f"{case}: the PodDisruptionBudget selects the pods",
                len(pdbs) == 1 and labels_match(pdbs[0]["spec"]["selector"]["matchLabels"], pod_labels))
    else:
        c.check(f"{case}: no PodDisruptionBudget when disabled", not pdbs)
    monitors = by_kind.get("ServiceMonitor", [])
    if values.get("serviceMonitor", {}).get("enabled"):
        ok = len(monitors) == 1 and monitors[0].get("apiVersion") == "monitoring.coreos.com/v1"
        if c.check(f"{case}: one ServiceMonitor (monitoring.coreos.com/v1)", ok):
            sm_spec = monitors[0]["spec"]
            targets = [s for s in services if labels_match(sm_spec["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
            c.check(f"{case}: the ServiceMonitor selects the peers Service and scrapes /metrics on its admin port",
                    len(targets) == 1 and all(e.get("port") in {p["name"] for p in targets[0]["spec"]["ports"]}
                                              and e.get("path") == "/metrics" for e in sm_spec["endpoints"]))
            token = values.get("sidecar", {}).get("admin", {}).get("tokenSecret", {})
            c.check(f"{case}: the ServiceMonitor scrapes with the sidecar's admin token, which the sidecar gets",
                    all(e.get("bearerTokenSecret") == {"name": token.get("name"), "key": token.get("key")}
                        for e in sm_spec["endpoints"])
                    and env.get("TROUPE_ADMIN_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
                    == {"name": token.get("name"), "key": token.get("key")})
    else:
        c.check(f"{case}: no ServiceMonitor unless enabled", not monitors)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--renderer", required=True)
    p.add_argument("--chart", required=True, type=pathlib.Path)
    p.add_argument("--kube-version", required=True, action="append", help="may be repeated")
    p.add_argument("--too-old", required=True, help="a Kubernetes version the chart must refuse")
    p.add_argument("--settings", required=True, type=pathlib.Path, help="SidecarConfiguration.swift")
    p.add_argument("--dockerfile", type=pathlib.Path, help="the sidecar image's Dockerfile")
    p.add_argument("--package", type=pathlib.Path, help="Package.swift, for the executable's name")
    a = p.parse_args()
    c = Checks()
    known = table_settings(a.settings)

    # The validator itself must refuse what is wrong, or every pass below means nothing.
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"clusterIP": "None", "portz": []}}
    try:
        kubernetes_validate.validate(bad, a.kube_version[0], strict=True)
        c.check("kubernetes-validate refuses an unknown field", False)
    except kubernetes_validate.utils.ValidationError:
        c.check("kubernetes-validate refuses an unknown field", True)

    schema = yaml.safe_load((a.chart / "values.schema.json").read_text())
    config_keys = set(schema["properties"]["sidecar"]["properties"]["config"]["properties"])
    missing = known - config_keys
    c.check("values.schema.json describes every setting of SidecarConfiguration.settings", not missing,
            f"missing: {sorted(missing)}")

    cases = [("default values", None)] + [(f.name, f) for f in sorted((a.chart / "ci").glob("*-values.yaml"))]
    for kube_version in a.kube_version:
        for name, values_file in cases:
            case = f"{name} @ {kube_version}"
            result = render(a.renderer, a.chart, kube_version, values_file)
            if not c.check(f"{case}: renders", result.returncode == 0, result.stderr.strip()):
                continue
            manifests = [d for d in yaml.safe_load_all(result.stdout) if d]
            values = yaml.safe_load((a.chart / "values.yaml").read_text())
            if values_file:
                values = merge(values, yaml.safe_load(values_file.read_text()) or {})
            check_case(c, case, manifests, kube_version, values, known)

    result = render(a.renderer, a.chart, a.too_old)
    c.check(f"Kubernetes {a.too_old} is refused by the chart's kubeVersion",
            result.returncode != 0 and "kubeVersion" in result.stderr, result.stderr.strip())

    for bad_file in sorted((a.chart / "ci" / "invalid").glob("*.yaml")):
        first = bad_file.read_text().splitlines()[0]
        expect = first.split("# expect:", 1)[1].strip() if "# expect:" in first else None
        result = render(a.renderer, a.chart, a.kube_version[0], bad_file)
        c.check(f"invalid/{bad_file.name}: refused, naming {expect}",
                expect is not None and result.returncode != 0 and expect in result.stderr,
                f"exit {result.returncode}: {result.stderr.strip()[:400]}")

    if a.dockerfile:
        check_dockerfile(c, a.dockerfile, a.package, yaml.safe_load((a.chart / "values.yaml").read_text()))

    print(f"chart: {c.passed} passed, {c.failed} failed")
    return 1 if c.failed or c.passed == 0 else 0


def check_dockerfile(c, dockerfile, package, values):
    """The image the chart runs by default is what the Dockerfile builds: the executable product
    troupe-sidecar as ENTRYPOINT (the chart sets no command), the chart's ports, its user."""
    text = dockerfile.read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    products = set(re.findall(r'\.executable\(name:\s*"([^"]+)"', package.read_text())) if package else set()
    c.check("Dockerfile: troupe-sidecar is an executable product of Package.swift", "troupe-sidecar" in products,
            f"products: {sorted(products)}")
    c.check("Dockerfile: the build stage builds --product troupe-sidecar in release mode",
            re.search(r"swift build -c release --product troupe-sidecar\b", text) is not None)
    entry = [line for line in lines if line.startswith("ENTRYPOINT")]
    c.check("Dockerfile: ENTRYPOINT runs troupe-sidecar", len(entry) == 1 and re.search(
        r'\["[^"]*/troupe-sidecar"\]', entry[0]) is not None, f"{entry}")
    copied = [line for line in lines if line.startswith("COPY --from=build")]
    c.check("Dockerfile: the runtime stage copies the binary the ENTRYPOINT names",
            any(line.endswith("/usr/local/bin/troupe-sidecar") for line in copied) and bool(entry)
            and "/usr/local/bin/troupe-sidecar" in entry[0], f"{copied}")
    exposed = {int(port) for line in lines if line.startswith("EXPOSE") for port in re.findall(r"\d+", line)}
    wanted = {int(values["sidecar"]["admin"]["port"]), int(values["cluster"]["port"])}
    c.check("Dockerfile: EXPOSE has the chart's admin and cluster ports", wanted <= exposed,
            f"exposed {sorted(exposed)}, chart {sorted(wanted)}")
    users = [line.split()[1].split(":")[0] for line in lines if line.startswith("USER")]
    uid = values.get("podSecurityContext", {}).get("runAsUser")
    c.check("Dockerfile: USER is the chart's runAsUser (not root)", users[-1:] == [str(uid)] and uid != 0,
            f"USER {users}, runAsUser {uid}")
    c.check("Dockerfile: the chart sets no command for the sidecar, so the ENTRYPOINT runs",
            "command" not in values["sidecar"])


def merge(defaults, user):
    """Helm's coalescing, for reading the values a case was rendered with."""
    out = dict(defaults)
    for k, v in user.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


if __name__ == "__main__":
    sys.exit(main())
