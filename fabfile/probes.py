"""Read-only facts about the hosts and the cluster, in one room (like pyinfra's facts): helm
and kubectl reads on the control plane, and the one-command probes of nodes and proxy hosts.
Nothing here changes anything."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

import yaml
from fabric import Connection

from . import kube, remote
from .inventory import Host
from .remote import Output, RemoteError

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
METALLB_NAMESPACE = "metallb-system"
METALLB_CRD_VERSION = (0, 13)  # MetalLB 0.13 replaced the ConfigMap with IPAddressPool/L2Advertisement


def key_values(out: str) -> tuple[dict[str, str], str | None]:
    """A probe script's output: `key=value` lines, then (after a `---` line) a file's text,
    None when the script printed no `---` (no file)."""
    head, sep, text = out.partition("---\n")
    return dict(line.split("=", 1) for line in head.splitlines() if "=" in line), text if sep else None


# -- the helm release ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseState:
    """The release as helm lists it (None: not installed) and its deployed values."""

    release: dict | None
    values: dict = field(repr=False)  # the deployed values hold secrets


@dataclass(frozen=True)
class RepoState:
    """The chart repositories helm knows, whether the pinned chart is there, and the namespace."""

    repos: dict[str, str]
    chart_found: bool
    namespace: bool


def _list_release(host: Host) -> list[str]:
    """argv for `helm list` narrowed to the release (pending ones included)."""
    return kube.helm(host, "list", "--namespace", host.vars["namespace"], "--all", "--filter",
                     f"^{host.vars['release']}$", "--output", "json")


def _named(host: Host, rows: list[dict] | None) -> dict | None:
    return next((r for r in rows or [] if r["name"] == host.vars["release"]), None)


def _get_namespace(host: Host) -> list[str]:
    return kube.kubectl(host, "get", "namespace", host.vars["namespace"], "-o", "name", "--request-timeout", "10s")


def _search_chart(host: Host, *versions: str) -> list[str]:
    """argv for `helm search repo` of the chart: the pinned version, or `versions` (e.g. --versions)."""
    return kube.helm(host, "search", "repo", kube.chart(host),
                     *(versions or ("--version", host.vars["chart_version"])), "--devel", "--output", "json")


def _has_pinned(host: Host, rows: list[dict] | None) -> bool:
    return any(r["version"] == host.vars["chart_version"] for r in rows or [])


def items(text: str) -> list[dict]:
    """The objects `kubectl get ... -o json` printed: a List's items, or the one object it got
    (none for empty output, as with --ignore-not-found)."""
    got = json.loads(text or "null")
    return (got.get("items", []) if got.get("kind") == "List" else [got]) if got else []


def release_state(conn: Connection, host: Host) -> ReleaseState:
    """`helm list` of the release and its deployed values, read at once over two channels. The
    values hold the secrets: read off stdout, never through run_many's files on the host."""
    listed, got = kube.read_at_once(conn, host, [
        _list_release(host),
        kube.helm(host, "get", "values", host.vars["release"], "--namespace", host.vars["namespace"],
                  "--output", "json")])
    if not listed.ok:
        raise kube.unreachable(host, listed)
    release = _named(host, json.loads(listed.stdout or "[]"))
    if release and not got.ok:
        raise RemoteError(f"helm get values failed on {host.name}: {remote.tail(got.stderr)}")
    return ReleaseState(release, json.loads(got.stdout or "{}") or {} if release else {})


def repo_state(conn: Connection, host: Host) -> RepoState:
    """The chart repositories, the pinned chart's presence and the namespace, in one round trip."""
    out = kube.probe(conn, host, {
        "namespace": _get_namespace(host),
        "repos": kube.helm(host, "repo", "list", "--output", "json"),
        "chart": _search_chart(host),
    })
    if not out["namespace"].ok and "NotFound" not in out["namespace"].stderr:
        raise kube.unreachable(host, out["namespace"])
    return RepoState(
        repos={r["name"]: r["url"] for r in json.loads(out["repos"].stdout or "[]")} if out["repos"].ok else {},
        chart_found=out["chart"].ok and _has_pinned(host, json.loads(out["chart"].stdout or "[]")),
        namespace=out["namespace"].ok,
    )


def chart_found(conn: Connection, host: Host) -> bool:
    """Whether the pinned chart version is in the local copy of its repository."""
    return _has_pinned(host, kube.read_json(conn, host, _search_chart(host)))


def chart_versions(conn: Connection, host: Host) -> list[str]:
    """The chart's versions in the local copy of its repository, newest first."""
    return [r["version"] for r in kube.read_json(conn, host, _search_chart(host, "--versions")) or []]


def namespace_exists(conn: Connection, host: Host) -> bool:
    """Whether the release's namespace exists, read with helm and kubectl in one round trip;
    so also the reachability check: a missing tool or an unreachable cluster raises with its fix."""
    out = kube.probe(conn, host, {"helm": kube.helm(host, "version", "--short"), "namespace": _get_namespace(host)})
    if not out["namespace"].ok and "NotFound" not in out["namespace"].stderr:
        raise kube.unreachable(host, out["namespace"])
    return out["namespace"].ok


def history(conn: Connection, host: Host) -> list[dict]:
    """The release's revisions, oldest first."""
    return kube.read_json(conn, host, kube.helm(host, "history", host.vars["release"], "--namespace",
                                                host.vars["namespace"], "--output", "json")) or []


def listed_release(conn: Connection, host: Host) -> dict | None:
    """The release as `helm list` shows it (name, revision, status, chart), or None."""
    return _named(host, kube.read_json(conn, host, _list_release(host)))


# -- the cluster's OpenAPI schemas ------------------------------------------------------------------

def group_version_path(api_version: str) -> str:
    """Where the API serves an apiVersion: api/v1, apis/GROUP/VERSION."""
    return f"apis/{api_version}" if "/" in api_version else f"api/{api_version}"


def openapi_documents(conn: Connection, host: Host, objects: list[dict]) -> dict[str, dict]:
    """The cluster's OpenAPI v3 documents of the group-versions `objects` use, by path ("apis/apps/v1"),
    read at once; group-versions the cluster does not publish are left out."""
    index = kube.read(conn, host, kube.kubectl(host, "get", "--raw", "/openapi/v3"))
    if _openapi_missing(index):  # a cluster that publishes no OpenAPI v3 (before 1.24 unless enabled)
        return {}
    if not index.ok:
        raise kube.unreachable(host, index)
    published = json.loads(index.stdout or "{}").get("paths") or {}
    paths = sorted({p for o in objects if (p := group_version_path(str(o.get("apiVersion", "")))) in published})
    if not paths:
        return {}
    got = kube.read_at_once(conn, host, [kube.kubectl(host, "get", "--raw", published[p]["serverRelativeURL"])
                                         for p in paths])
    for path, out in zip(paths, got):
        if not out.ok and not _openapi_missing(out):
            raise RemoteError(f"{host.name} could not read the cluster's OpenAPI document {path}: "
                              f"{remote.tail(out.stderr)}; check that kubectl can reach the cluster")
    return {path: json.loads(out.stdout) for path, out in zip(paths, got) if out.ok}


def _openapi_missing(out: Output) -> bool:
    return not out.ok and "the server could not find the requested resource" in out.stderr


# -- the release's objects ----------------------------------------------------------------------

def in_namespace(conn: Connection, host: Host, kind: str) -> list[dict]:
    """The objects of `kind` (pods, services...) in the release's namespace."""
    return kube.read_json(conn, host, kube.kubectl(host, "get", kind, "--namespace", host.vars["namespace"],
                                                   "-o", "json"))["items"]


#: The kinds `kubectl rollout status` waits for.
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


def manifest(conn: Connection, host: Host) -> list[dict]:
    """The objects of the release's deployed revision (`helm get manifest`; none without a
    release). It holds the chart's Secrets: read off stdout, never through run_many's files."""
    got = kube.read(conn, host, kube.helm(host, "get", "manifest", host.vars["release"], "--namespace",
                                          host.vars["namespace"]))
    return [d for d in yaml.safe_load_all(got.stdout) if isinstance(d, dict)] if got.ok else []


def live_objects(conn: Connection, host: Host, refs: dict[str, list[str]]) -> list[dict]:
    """The objects the cluster has of `refs` (namespace: [RESOURCE/NAME, ...]; those it lacks are
    left out), one kubectl read per namespace. Not for Secrets: the output is kept as is."""
    found = []
    for namespace, names in refs.items():
        if names:
            found += items(kube.run(conn, host, kube.kubectl(host, "get", *names, "--namespace", namespace,
                                                             "--ignore-not-found", "-o", "json")).stdout)
    return found


def workloads(conn: Connection, host: Host) -> tuple[list[str], list[str]]:
    """The release's workloads (from its manifest: the charts leave some without a `release`
    label) as kind/name: those in the cluster, and those the manifest has that the cluster
    lacks (deleted by hand?)."""
    wanted = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in manifest(conn, host)
              if d.get("kind") in WORKLOAD_KINDS]
    items = kube.read_json(conn, host, kube.kubectl(host, "get", ",".join(k.lower() + "s" for k in WORKLOAD_KINDS),
                                                    "--namespace", host.vars["namespace"], "-o", "json"))["items"]
    present = {f"{i['kind'].lower()}/{i['metadata']['name']}" for i in items}
    return [w for w in wanted if w in present], [w for w in wanted if w not in present]


@dataclass(frozen=True)
class Claim:
    """A PersistentVolumeClaim that is not bound, and what decides whether it will be."""

    namespace: str
    name: str
    storage_class: str | None  # None: the claim names none
    class_found: bool  # the StorageClass it names exists
    provisioner: str  # that class's provisioner
    default_class: str | None  # the cluster's default StorageClass
    classes: tuple[str, ...]  # every StorageClass of the cluster
    event: str  # the claim's last event ('' when none)


@dataclass(frozen=True)
class Stuck:
    """Why a workload's rollout does not complete: `reason` ('' when the cluster says nothing)
    and the claims its pods wait for."""

    reason: str
    claims: tuple[Claim, ...] = ()


DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def stuck(conn: Connection, host: Host, workload: str) -> Stuck:
    """Why a workload's rollout does not complete, as the cluster tells it: its first pod that is
    not ready and why (the kubelet's or the scheduler's reason, and the pod's latest warning event:
    the kubelet's FailedMount of a pod in ContainerCreating), else the workload's last warning event
    (a pod that could not even be created); and the claims its pods use that are not bound."""
    namespace = host.vars["namespace"]
    spec = kube.read_json(conn, host, kube.kubectl(host, "get", workload, "-n", namespace, "-o", "json"))["spec"]
    selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector", {}).get("matchLabels") or {}).items())
    pods = kube.read_json(conn, host, kube.kubectl(host, "get", "pods", "-n", namespace, "-l", selector,
                                                   "-o", "json"))["items"] if selector else []
    volumes = [v for p in [spec.get("template") or {}, *pods] for v in (p.get("spec") or {}).get("volumes") or []]
    names = list(dict.fromkeys(v["persistentVolumeClaim"]["claimName"] for v in volumes
                               if (v.get("persistentVolumeClaim") or {}).get("claimName")))
    claims = tuple(unbound_claims(conn, host, namespace, names)) if names else ()
    events = kube.read_json(conn, host, kube.kubectl(host, "get", "events", "-n", namespace,
                                                     "--field-selector", "type=Warning", "-o", "json"))["items"]
    for pod in pods:
        reason = pod_reason(pod)
        if reason:
            warned = latest_warning(events, pod)  # e.g. the kubelet's FailedMount of a ContainerCreating pod
            said = f"; {warned}" if warned and warned.partition(": ")[2] not in reason else ""
            return Stuck(f"pod {pod['metadata']['name']}: {reason}{said}", claims)
    name = workload.split("/")[-1]
    mine = [e for e in events if e.get("involvedObject", {}).get("name", "").startswith(name)]
    return Stuck(f"{mine[-1].get('reason')}: {mine[-1].get('message', '').strip()}" if mine else "", claims)


def unbound_claims(conn: Connection, host: Host, namespace: str, names: list[str]) -> list[Claim]:
    """Those of these claims that exist and are not Bound, with the cluster's StorageClasses and
    each claim's last event, in one round trip."""
    out = kube.probe(conn, host, {
        "claims": kube.kubectl(host, "get", "persistentvolumeclaims", *names, "-n", namespace, "--ignore-not-found",
                               "-o", "json"),
        "classes": kube.kubectl(host, "get", "storageclasses", "-o", "json"),
        "events": kube.kubectl(host, "get", "events", "-n", namespace, "--field-selector",
                               "involvedObject.kind=PersistentVolumeClaim", "-o", "json")})
    claims = items(out["claims"].stdout) if out["claims"].ok else []
    classes = {c["metadata"]["name"]: c for c in json.loads(out["classes"].stdout)["items"]} \
        if out["classes"].ok else {}
    default = max((c for c in classes.values()
                   if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"),
                  key=lambda c: c["metadata"].get("creationTimestamp", ""), default=None)
    events = json.loads(out["events"].stdout)["items"] if out["events"].ok else []
    found = []
    for claim in claims:
        if (claim.get("status") or {}).get("phase") == "Bound":
            continue
        name, wanted = claim["metadata"]["name"], (claim.get("spec") or {}).get("storageClassName")
        said = [e for e in events if (e.get("involvedObject") or {}).get("name") == name]
        found.append(Claim(namespace, name, wanted, wanted in classes,
                           (classes.get(wanted) or {}).get("provisioner", ""),
                           default["metadata"]["name"] if default else None, tuple(sorted(classes)),
                           f"{said[-1].get('reason')}: {said[-1].get('message', '').strip()}" if said else ""))
    return found


def pod_ready(pod: dict) -> bool:
    """Whether the pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_reason(pod: dict) -> str:
    """Why a pod is not ready ('' when it is): a container's waiting reason and message, a
    container that keeps exiting, or the scheduler's reason."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        if container.get("ready"):
            continue
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            why = f"{waiting.get('reason', 'waiting')}: {waiting.get('message', '')}".strip().rstrip(":")
            return f"container {container['name']} {why}"
        if container.get("restartCount"):
            return f"container {container['name']} restarted {container['restartCount']} times"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"{condition.get('reason', 'Unschedulable')}: {condition.get('message', '')}".strip()
    if pod_ready(pod) or status.get("phase") == "Succeeded":
        return ""
    return f"{status.get('phase', 'Pending')}, not ready"


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) picks these labels; a null
    selector picks nothing, an empty one everything (as PodDisruptionBudgets read them)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        if not {"In": present and value in (expr.get("values") or []),
                "NotIn": not present or value not in (expr.get("values") or []),
                "Exists": present, "DoesNotExist": not present}.get(expr["operator"], False):
            return False
    return True


def disruption_budgets(conn: Connection, host: Host, namespace: str, pods: list[str]) -> dict[str, list[dict]]:
    """The PodDisruptionBudgets that select each of these pods of `namespace`, in one round trip."""
    out = kube.probe(conn, host, {
        "pods": kube.kubectl(host, "get", "pods", *pods, "-n", namespace, "--ignore-not-found", "-o", "json"),
        "budgets": kube.kubectl(host, "get", "poddisruptionbudgets", "-n", namespace, "-o", "json")})
    found = items(out["pods"].stdout) if out["pods"].ok else []
    budgets = json.loads(out["budgets"].stdout)["items"] if out["budgets"].ok else []
    return {p["metadata"]["name"]: [b for b in budgets if selects((b.get("spec") or {}).get("selector"),
                                                                  p["metadata"].get("labels") or {})]
            for p in found}


# -- LoadBalancer services and MetalLB ----------------------------------------------------------

def load_balancers(conn: Connection, host: Host) -> list[dict]:
    """Every LoadBalancer service of the cluster."""
    items = kube.read_json(conn, host, kube.kubectl(host, "get", "services", "--all-namespaces", "-o", "json"))["items"]
    return [s for s in items if s["spec"]["type"] == "LoadBalancer"]


def external_ip(service: dict) -> str | None:
    """The IP a LoadBalancer service got, or None (pending)."""
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0].get("ip") if ingress else None


def name_of(service: dict) -> str:
    """A service's namespace/name."""
    return f"{service['metadata']['namespace']}/{service['metadata']['name']}"


def allocation_failures(conn: Connection, host: Host) -> list[dict]:
    """MetalLB's AllocationFailed events, newest last."""
    return kube.read_json(conn, host, kube.kubectl(host, "get", "events", "--all-namespaces", "--field-selector",
                                                   "reason=AllocationFailed", "-o", "json"))["items"]


@dataclass(frozen=True)
class MetalLB:
    """The MetalLB found on the cluster and its configuration, in whichever format it reads."""

    version: tuple[int, ...] | None  # None: not installed
    image: str
    pools: dict[str, list[str]]  # pool name: addresses
    advertised: bool  # (0.13+) an L2Advertisement exists

    @property
    def uses_crds(self) -> bool:
        return bool(self.version) and self.version >= METALLB_CRD_VERSION

    def describe(self) -> str:
        return f"MetalLB {'.'.join(map(str, self.version))}" if self.version else "MetalLB is not installed"


def _version(image: str) -> tuple[int, ...] | None:
    match = re.search(r":v?(\d+)\.(\d+)(?:\.(\d+))?", image)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def metallb_memberlist(conn: Connection, host: Host, secret: str) -> tuple[list[dict], bool]:
    """MetalLB's Deployments and DaemonSets (each with its `kind`), and whether its Secret
    `secret` exists (its name only is read, never its data), in one round trip."""
    out = kube.probe(conn, host, {
        "Deployment": kube.kubectl(host, "get", "deployments", "-n", METALLB_NAMESPACE, "-o", "json"),
        "DaemonSet": kube.kubectl(host, "get", "daemonsets", "-n", METALLB_NAMESPACE, "-o", "json"),
        "Secret": kube.kubectl(host, "get", "secret", secret, "-n", METALLB_NAMESPACE, "-o", "name",
                               "--ignore-not-found")})
    for kind, got in out.items():
        if not got.ok:
            raise RemoteError(f"cannot read MetalLB's {kind}s: {remote.tail(got.stderr)}")
    workloads = [{**obj, "kind": kind} for kind in ("Deployment", "DaemonSet")
                 for obj in json.loads(out[kind].stdout)["items"]]
    return workloads, bool(out["Secret"].stdout.strip())


def metallb(conn: Connection, host: Host) -> MetalLB:
    """MetalLB's controller (its image tag is the version) and its pools, in one round trip."""
    ns = METALLB_NAMESPACE
    out = kube.probe(conn, host, {
        "deployments": kube.kubectl(host, "get", "deployments", "-n", ns, "-o", "json"),
        "configmap": kube.kubectl(host, "get", "configmap", "config", "-n", ns, "-o", "json"),
        "crs": kube.kubectl(host, "get", "ipaddresspools.metallb.io,l2advertisements.metallb.io", "-n", ns,
                            "-o", "json"),
    })
    if not out["deployments"].ok:
        raise RemoteError(f"cannot list MetalLB's deployments: {remote.tail(out['deployments'].stderr)}")
    images = [c["image"] for d in json.loads(out["deployments"].stdout)["items"]
              if d["metadata"]["name"] == "controller" for c in d["spec"]["template"]["spec"]["containers"]]
    version = _version(images[0]) if images else None
    pools: dict[str, list[str]] = {}
    advertised = False
    if version and version >= METALLB_CRD_VERSION and out["crs"].ok:
        for item in json.loads(out["crs"].stdout)["items"]:
            if item["kind"] == "IPAddressPool":
                pools[item["metadata"]["name"]] = list(item.get("spec", {}).get("addresses") or [])
            elif item["kind"] == "L2Advertisement":
                advertised = True
    elif version and out["configmap"].ok:
        config = yaml.safe_load(json.loads(out["configmap"].stdout).get("data", {}).get("config") or "") or {}
        pools = {p["name"]: list(p.get("addresses") or []) for p in config.get("address-pools") or []}
    return MetalLB(version, images[0] if images else "", pools, advertised)


# -- what the nginx site points at --------------------------------------------------------------

@dataclass(frozen=True)
class ClusterFacts:
    """Where the site must send traffic, as the cluster says."""

    node_address: str | None
    node_port: int | None
    floating_ip: str | None  # proxy-public's external IP


def cluster_facts(conn: Connection, host: Host) -> ClusterFacts:
    """The binder NodePort, proxy-public's IP and a node's address, read on the control plane."""
    ns = host.vars["namespace"]
    out = kube.probe(conn, host, {
        "binder": kube.kubectl(host, "get", "service", "binder", "-n", ns, "-o", "json"),
        "public": kube.kubectl(host, "get", "service", "proxy-public", "-n", ns, "-o", "json"),
        "nodes": kube.kubectl(host, "get", "nodes", "-o", "json"),
    })
    binder = json.loads(out["binder"].stdout) if out["binder"].ok else {}
    public = json.loads(out["public"].stdout) if out["public"].ok else {}
    nodes = json.loads(out["nodes"].stdout)["items"] if out["nodes"].ok else []
    ports = [p.get("nodePort") for p in binder.get("spec", {}).get("ports", []) if p.get("nodePort")]
    wanted = host.vars["k8s_node_name"] or host.name
    nodes.sort(key=lambda n: n["metadata"]["name"] != wanted)  # the control plane's own node first
    addresses = [a["address"] for n in nodes for a in n.get("status", {}).get("addresses", [])
                 if a.get("type") == "InternalIP"]
    return ClusterFacts(addresses[0] if addresses else None, ports[0] if ports else None,
                        external_ip(public) if public else None)


# -- a node's container runtimes and a proxy host's nginx (one command each) -----------------------

#: $1 daemon.json, $2 containerd's config.toml, $3 docker.io's hosts.toml; files as base64 lines.
DOCKER_PROBE = r"""conf=$1 ctd_conf=${2:-/etc/containerd/config.toml}
ctd_hosts=${3:-/etc/containerd/certs.d/docker.io/hosts.toml}
if [ -d /run/systemd/system ]; then echo manager=systemd; else echo manager=sysvinit; fi
if command -v dockerd >/dev/null 2>&1; then echo dockerd=yes; else echo dockerd=no; fi
if command -v containerd >/dev/null 2>&1; then echo "containerd=$(containerd --version 2>&1 | head -n 1)"; fi
sed -n 's/.*--container-runtime-endpoint[= ]\([^ "]*\).*/endpoint=\1/p' /var/lib/kubelet/kubeadm-flags.env 2>/dev/null
sed -n 's/^containerRuntimeEndpoint:[[:space:]]*\(.*\)/endpoint_config=\1/p' /var/lib/kubelet/config.yaml 2>/dev/null
[ -S /run/containerd/containerd.sock ] && ctr --connect-timeout 2s version >/dev/null 2>&1 && echo containerd_up=yes
if m=$(docker info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null); then echo "mirrors=$m"; fi
for f in "daemon_json $conf" "config_toml $ctd_conf" "hosts_toml $ctd_hosts"; do
    if [ -e "${f#* }" ]; then printf '%s=%s\n' "${f%% *}" "$(base64 -w0 < "${f#* }")"; fi
done
"""

NGINX_PROBE = r'''site=$1
if [ -d /run/systemd/system ]; then echo manager=systemd; else echo manager=sysvinit; fi
if command -v nginx >/dev/null 2>&1; then echo nginx=yes; else echo nginx=no; fi
if [ -e "$site" ]; then echo ---; cat -- "$site"; fi
'''


@dataclass(frozen=True)
class NodeState:
    """A node's container runtimes: service manager, the kubelet's runtime endpoint, docker (live
    mirrors, daemon.json) and containerd (version line, whether it answers, its two files)."""

    manager: str
    has_dockerd: bool
    kubelet_endpoint: str  # "" when the node shows no kubelet settings
    mirrors: list[str] | None  # None: docker is not answering
    text: str | None  # daemon.json; None: no file
    containerd: str | None = None  # `containerd --version`; None: not installed
    containerd_up: bool = False
    config_toml: str | None = None
    hosts_toml: str | None = None


def _file(facts: dict[str, str], key: str) -> str | None:
    return base64.b64decode(facts[key]).decode() if key in facts else None


def node(conn: Connection, host: Host, daemon_json: str, config_toml: str, hosts_toml: str) -> NodeState:
    """A node in one command: service manager, kubelet runtime (kubeadm-flags.env's flag, else
    config.yaml's containerRuntimeEndpoint), docker info, containerd, and the three files."""
    facts, _ = key_values(remote.run(conn, host, remote.script(DOCKER_PROBE, daemon_json, config_toml,
                                                               hosts_toml)).stdout)
    manager = host.vars["docker_service"]
    return NodeState(
        manager=facts["manager"] if manager == "auto" else manager,
        has_dockerd=facts.get("dockerd") == "yes",
        kubelet_endpoint=facts.get("endpoint") or facts.get("endpoint_config", "").split("#")[0].strip().strip("\"'"),
        mirrors=(json.loads(facts["mirrors"]) or []) if "mirrors" in facts else None,
        text=_file(facts, "daemon_json"),
        containerd=facts.get("containerd"),
        containerd_up=facts.get("containerd_up") == "yes",
        config_toml=_file(facts, "config_toml"),
        hosts_toml=_file(facts, "hosts_toml"),
    )


@dataclass(frozen=True)
class NginxState:
    """A proxy host's service manager, whether nginx is installed, and the site file's text."""

    manager: str
    has_nginx: bool
    site: str | None  # None: no site file


def nginx(conn: Connection, host: Host, site_path: str) -> NginxState:
    """A proxy host in one command: service manager, nginx, the site file."""
    facts, text = key_values(remote.run(conn, host, remote.script(NGINX_PROBE, site_path)).stdout)
    return NginxState(facts["manager"], facts["nginx"] == "yes", text)


# -- the build path: the builder's socket on a node, its DaemonSets' pods ---------------------------

#: $1 the socket path. What is there (socket, directory with its entry count, other, missing), and
#: the node's service manager (a repair restarts docker through it).
SOCKET_PROBE = r'''path=$1
if [ -d /run/systemd/system ]; then echo manager=systemd; else echo manager=sysvinit; fi
if [ -S "$path" ]; then echo kind=socket
elif [ -d "$path" ]; then echo kind=directory; echo "entries=$(ls -A -- "$path" | wc -l)"
elif [ -e "$path" ] || [ -L "$path" ]; then echo kind=other
else echo kind=missing; fi
'''


@dataclass(frozen=True)
class SocketPath:
    """What a node has at a socket path: `socket`, `directory` (with `entries`), `other` or `missing`."""

    path: str
    kind: str
    entries: int = 0
    manager: str = "systemd"

    def describe(self) -> str:
        if self.kind == "directory":
            return f"{self.path} is a directory ({self.entries} entries)" if self.entries else \
                f"{self.path} is an empty directory"
        return {"socket": f"{self.path} is a socket", "missing": f"{self.path} is missing",
                "other": f"{self.path} is not a socket (a file?)"}[self.kind]


def parse_socket_path(path: str, out: str, manager: str = "auto") -> SocketPath:
    """SOCKET_PROBE's output; `manager`: the inventory's docker_service (auto: the probed one)."""
    facts, _ = key_values(out)
    return SocketPath(path, facts["kind"], int(facts.get("entries") or 0),
                      facts["manager"] if manager == "auto" else manager)


def socket_path(conn: Connection, host: Host, path: str) -> SocketPath:
    """What the node has at `path`, in one command."""
    return parse_socket_path(path, remote.run(conn, host, remote.script(SOCKET_PROBE, path)).stdout,
                             host.vars["docker_service"])


@dataclass(frozen=True)
class BuilderPods:
    """The builder's DaemonSets as the control plane sees them: whether the release is installed,
    the DaemonSets found (by name), their pods, the nodes' labels, and the Warning events of pods."""

    installed: bool
    daemonsets: dict[str, dict]
    pods: dict[str, list[dict]]  # DaemonSet name: its pods
    node_labels: dict[str, dict]  # Kubernetes node name: its labels
    events: list[dict]


def _owner(pod: dict) -> str | None:
    return next((o.get("name") for o in (pod.get("metadata") or {}).get("ownerReferences") or []
                 if o.get("kind") == "DaemonSet"), None)


def builder_pods(conn: Connection, host: Host, daemonsets: tuple[str, ...]) -> BuilderPods:
    """The release, these DaemonSets, their pods (by the DaemonSet's selector and owner), the nodes
    and the namespace's Warning events of pods: two round trips of kubectl/helm reads."""
    ns = host.vars["namespace"]
    out = kube.probe(conn, host, {
        "release": _list_release(host),
        "daemonsets": kube.kubectl(host, "get", *(f"daemonset/{d}" for d in daemonsets), "-n", ns,
                                   "--ignore-not-found", "-o", "json"),
        "nodes": kube.kubectl(host, "get", "nodes", "-o", "json"),
        "events": kube.kubectl(host, "get", "events", "-n", ns, "--field-selector",
                               "type=Warning,involvedObject.kind=Pod", "-o", "json")})
    for key in ("release", "daemonsets", "nodes"):
        if not out[key].ok:
            raise kube.unreachable(host, out[key])
    found = {d["metadata"]["name"]: d for d in items(out["daemonsets"].stdout)}
    selectors = {name: ",".join(f"{k}={v}" for k, v in ((d.get("spec") or {}).get("selector") or {})
                                .get("matchLabels", {}).items()) for name, d in found.items()}
    listed = kube.probe(conn, host, {name: kube.kubectl(host, "get", "pods", "-n", ns, "-l", selector, "-o", "json")
                                     for name, selector in selectors.items() if selector}) if found else {}
    pods = {name: [p for p in items(got.stdout) if _owner(p) == name] if got.ok else []
            for name, got in listed.items()}
    return BuilderPods(
        installed=_named(host, json.loads(out["release"].stdout or "[]")) is not None,
        daemonsets=found, pods=pods,
        node_labels={n["metadata"]["name"]: n["metadata"].get("labels") or {}
                     for n in json.loads(out["nodes"].stdout)["items"]},
        events=json.loads(out["events"].stdout)["items"] if out["events"].ok else [])


def last_log_line(conn: Connection, host: Host, pod: str, container: str) -> str:
    """The last line a pod's container wrote ('' when there is none to read)."""
    got = kube.read(conn, host, kube.kubectl(host, "logs", pod, "-c", container, "-n", host.vars["namespace"],
                                             "--tail=1"))
    return got.stdout.strip().splitlines()[-1] if got.ok and got.stdout.strip() else ""


def _when(event: dict) -> str:
    return (event.get("lastTimestamp") or (event.get("series") or {}).get("lastObservedTime")
            or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp") or "")


def latest_warning(events: list[dict], pod: dict) -> str:
    """The pod's latest Warning event among `events`, as `Reason: message` ('' when none)."""
    meta = pod.get("metadata") or {}
    mine = [e for e in events if e.get("type") == "Warning"
            and (e.get("involvedObject") or {}).get("name") == meta.get("name")
            and (e.get("involvedObject") or {}).get("uid") in (None, meta.get("uid"))]
    last = max(mine, key=_when, default=None)
    return f"{last.get('reason')}: {(last.get('message') or '').strip()}" if last else ""
