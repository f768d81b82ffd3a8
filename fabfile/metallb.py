"""MetalLB on the cluster: its address pool in either format, install, and a read-only audit
(runbook steps 7 and 8)."""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from fabric import Connection

from . import kube, remote
from .inventory import Host, InventoryError
from .remote import RemoteError
from .results import Result, Status, succeeded
from .session import Run, host_task

NAMESPACE = "metallb-system"
CRD_VERSION = (0, 13)  # MetalLB 0.13 replaced the ConfigMap with IPAddressPool/L2Advertisement


@dataclass(frozen=True)
class MetalLB:
    """The MetalLB found on the cluster and its configuration, in whichever format it reads."""

    version: tuple[int, ...] | None  # None: not installed
    image: str
    pools: dict[str, list[str]]  # pool name: addresses
    advertised: bool  # (0.13+) an L2Advertisement exists

    @property
    def uses_crds(self) -> bool:
        return bool(self.version) and self.version >= CRD_VERSION

    def describe(self) -> str:
        return f"MetalLB {'.'.join(map(str, self.version))}" if self.version else "MetalLB is not installed"


def wanted_addresses(host: Host) -> list[str]:
    """The pool's addresses: `metallb_addresses`, else the floating IP alone; the floating IP
    must be one of them."""
    ip = floating_ip(host)
    addresses = list(host.vars["metallb_addresses"]) or [f"{ip}/32"]
    if not _contains(addresses, ip):
        raise InventoryError(f"host {host.name}: floating_ip {ip} is outside metallb_addresses "
                             f"{addresses}; add it to the pool or fix floating_ip")
    return addresses


def floating_ip(host: Host) -> str:
    ip = host.vars["floating_ip"]
    if not ip:
        raise InventoryError(f"host {host.name}: vars.floating_ip is not set; give the IP proxy-public "
                             "must hold (the runbook's floating IP)")
    return ip


def _contains(pool: list[str], ip: str) -> bool:
    address = ipaddress.IPv4Address(ip)
    for entry in pool:
        if "-" in entry:
            first, last = (ipaddress.IPv4Address(v.strip()) for v in entry.split("-", 1))
            if first <= address <= last:
                return True
        elif address in ipaddress.IPv4Network(entry, strict=False):
            return True
    return False


def _version(image: str) -> tuple[int, ...] | None:
    match = re.search(r":v?(\d+)\.(\d+)(?:\.(\d+))?", image)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def observe(conn: Connection, host: Host) -> MetalLB:
    """Find MetalLB's controller (its image tag is the version) and read its pools."""
    out = kube.probe(conn, host, {
        "deployments": kube.kubectl(host, "get", "deployments", "-n", NAMESPACE, "-o", "json"),
        "configmap": kube.kubectl(host, "get", "configmap", "config", "-n", NAMESPACE, "-o", "json"),
        "crs": kube.kubectl(host, "get", "ipaddresspools.metallb.io,l2advertisements.metallb.io",
                            "-n", NAMESPACE, "-o", "json"),
    })
    if not out["deployments"].ok:
        raise RemoteError(f"cannot list MetalLB's deployments: {remote.tail(out['deployments'].stderr)}")
    images = [c["image"] for d in json.loads(out["deployments"].stdout)["items"]
              if d["metadata"]["name"] == "controller" for c in d["spec"]["template"]["spec"]["containers"]]
    version = _version(images[0]) if images else None
    pools: dict[str, list[str]] = {}
    advertised = False
    if version and version >= CRD_VERSION and out["crs"].ok:
        for item in json.loads(out["crs"].stdout)["items"]:
            if item["kind"] == "IPAddressPool":
                pools[item["metadata"]["name"]] = list(item.get("spec", {}).get("addresses") or [])
            elif item["kind"] == "L2Advertisement":
                advertised = True
    elif version and out["configmap"].ok:
        config = yaml.safe_load(json.loads(out["configmap"].stdout).get("data", {}).get("config") or "") or {}
        pools = {p["name"]: list(p.get("addresses") or []) for p in config.get("address-pools") or []}
    return MetalLB(version, images[0] if images else "", pools, advertised)


def _pool_objects(host: Host, state: MetalLB, addresses: list[str]) -> list[dict]:
    """The objects that give the pool `addresses`, in the format this MetalLB reads."""
    name = host.vars["metallb_pool_name"]
    if state.uses_crds:
        meta = {"name": name, "namespace": NAMESPACE}
        return [{"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": meta,
                 "spec": {"addresses": addresses}},
                {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": meta,
                 "spec": {"ipAddressPools": [name]}}]
    pools = [{"name": n, "protocol": "layer2", "addresses": a} for n, a in state.pools.items() if n != name]
    pools.append({"name": name, "protocol": "layer2", "addresses": addresses})
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": NAMESPACE},
             "data": {"config": yaml.safe_dump({"address-pools": pools}, sort_keys=False)}}]


def pool(conn: Connection, host: Host, dry_run: bool) -> Result:
    """Make MetalLB's pool hold the inventory's addresses, in the format its version reads."""
    step, name = "metallb.pool", host.vars["metallb_pool_name"]
    state = observe(conn, host)
    addresses = wanted_addresses(host)
    if not state.version and dry_run:
        return Result(host.name, step, Status.CHANGED, f"set pool {name} to {addresses} once MetalLB is installed")
    if not state.version:
        return Result(host.name, step, Status.FAILED, "MetalLB is not installed; run metallb.install first")
    request = "annotation" if state.uses_crds else "loadBalancerIP"
    if host.vars["floating_ip_request"] != request:
        return Result(host.name, step, Status.FAILED,
                      f"{state.describe()} reads the floating IP from {request} (set vars.floating_ip_request: "
                      f"{request}, then helm.upgrade): "
                      + ("0.13+ refuses a service that also has spec.loadBalancerIP" if state.uses_crds
                         else "before 0.13 MetalLB ignores the annotation"))
    fmt = "IPAddressPool + L2Advertisement" if state.uses_crds else "ConfigMap metallb-system/config"
    current = state.pools.get(name)
    if current == addresses and (state.advertised or not state.uses_crds):
        return Result(host.name, step, Status.OK, f"{state.describe()}: pool {name} holds {', '.join(addresses)} ({fmt})")
    patch = f"pool {name}: {current or '(none)'} -> {addresses}"
    if dry_run:
        return Result(host.name, step, Status.CHANGED, f"{state.describe()}: set {patch} ({fmt})")
    report = kube.apply(conn, host, _pool_objects(host, state, addresses))
    return Result(host.name, step, Status.CHANGED, f"{state.describe()}: set {patch} ({fmt}): {remote.tail(report)}")


def install(conn: Connection, host: Host, manifest: str, dry_run: bool) -> Result:
    """Apply MetalLB's manifest where no MetalLB controller runs, then wait for its rollout."""
    step = "metallb.install"
    state = observe(conn, host)
    if state.version:
        return Result(host.name, step, Status.OK, f"{state.describe()} runs ({state.image})")
    if dry_run:
        return Result(host.name, step, Status.CHANGED, f"apply {manifest}")
    if re.match(r"https?://", manifest):
        kube.run(conn, host, kube.kubectl(host, "apply", "-f", manifest))
    else:
        with remote.private_files(conn, host, {"metallb.yaml": Path(manifest).read_text()}) as directory:
            kube.run(conn, host, kube.kubectl(host, "apply", "-f", f"{directory}/metallb.yaml"))
    kube.run(conn, host, kube.kubectl(host, "rollout", "status", "deployment/controller", "-n", NAMESPACE,
                                      "--timeout=180s"), timeout=host.command_timeout + 180)
    return Result(host.name, step, Status.CHANGED, f"installed {observe(conn, host).describe()} from {manifest}")


def load_balancers(conn: Connection, host: Host) -> list[dict]:
    """Every LoadBalancer service of the cluster."""
    items = kube.read_json(conn, host, kube.kubectl(host, "get", "services", "--all-namespaces", "-o", "json"))["items"]
    return [s for s in items if s["spec"]["type"] == "LoadBalancer"]


def external_ip(service: dict) -> str | None:
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0].get("ip") if ingress else None


def name_of(service: dict) -> str:
    return f"{service['metadata']['namespace']}/{service['metadata']['name']}"


def allocation_failures(conn: Connection, host: Host) -> list[dict]:
    """MetalLB's AllocationFailed events, newest last."""
    items = kube.read_json(conn, host, kube.kubectl(host, "get", "events", "--all-namespaces",
                                                    "--field-selector", "reason=AllocationFailed", "-o", "json"))["items"]
    return items


def audit(conn: Connection, host: Host) -> Result:
    """Read-only: pools, every LoadBalancer and its IP, who holds the floating IP, and why
    pending services are pending."""
    state = observe(conn, host)
    ip = host.vars["floating_ip"]
    services = load_balancers(conn, host)
    lines = [f"{state.describe()}; pools: " + ("; ".join(f"{n}: {', '.join(a)}" for n, a in state.pools.items())
                                                or "none")]
    lines += [f"{name_of(s):40} {external_ip(s) or '<pending>'}" for s in services]
    pending = {name_of(s) for s in services if not external_ip(s)}
    for event in allocation_failures(conn, host):
        target = f"{event['involvedObject'].get('namespace')}/{event['involvedObject']['name']}"
        if target in pending:
            lines.append(f"{target}: AllocationFailed: {event.get('message', '').strip()}")
    holders = [name_of(s) for s in services if ip and external_ip(s) == ip]
    if not ip:
        summary = "no floating_ip in the inventory"
    elif ip and not any(_contains(a, ip) for a in state.pools.values()):
        summary = f"floating IP {ip} is in no MetalLB pool (run metallb.pool)"
    else:
        summary = f"floating IP {ip} held by {', '.join(holders) or 'nobody'}"
    return Result(host.name, "metallb.audit", Status.OK, summary, "\n".join(lines))


def stage(run: Run) -> bool:
    """metallb.install where missing, then metallb.pool (used by deploy)."""
    control_plane = run.control_plane()
    return succeeded(run.each(control_plane, "metallb.install", install, _manifest(run), run.dry_run)) and \
        succeeded(run.each(control_plane, "metallb.pool", pool, run.dry_run))


def _manifest(run: Run) -> str:
    manifest = run.control_plane()[0].vars["metallb_manifest"]
    if re.match(r"https?://", manifest):
        return manifest
    path = (run.env.source.parent / manifest).resolve()
    if not path.is_file():
        raise InventoryError(f"vars.metallb_manifest: {path} does not exist")
    return str(path)


@host_task("metallb.install", name="install")
def install_task(run: Run):
    """Install MetalLB (the inventory's pinned manifest) where it is missing."""
    run.each(run.control_plane(), "metallb.install", install, _manifest(run), run.dry_run)


@host_task("metallb.pool", name="pool")
def pool_task(run: Run):
    """Make MetalLB's address pool hold the floating IP(s), in the format its version reads."""
    run.each(run.control_plane(), "metallb.pool", pool, run.dry_run)


@host_task("metallb.audit", name="audit", changes=False)
def audit_task(run: Run):
    """Show MetalLB's pools, every LoadBalancer's IP, and who holds the floating IP."""
    run.each(run.control_plane(), "metallb.audit", audit)
