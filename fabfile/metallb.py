"""MetalLB on the cluster: its address pool in either format, install, and a read-only audit
(runbook steps 7 and 8)."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml
from fabric import Connection

from . import kube, probes, remote
from .inventory import Host, InventoryError
from .probes import MetalLB, external_ip, name_of
from .results import Result, Status, succeeded
from .session import Run, host_task

NAMESPACE = probes.METALLB_NAMESPACE


def wanted_addresses(host: Host) -> list[str]:
    """The pool's addresses: `metallb_addresses`, else the floating IP alone; the floating IP
    must be one of them."""
    ip = inventory_floating_ip(host)
    addresses = list(host.vars["metallb_addresses"]) or [f"{ip}/32"]
    if not _contains(addresses, ip):
        raise InventoryError(f"host {host.name}: floating_ip {ip} is outside metallb_addresses "
                             f"{addresses}; add it to the pool or fix floating_ip")
    return addresses


def inventory_floating_ip(host: Host) -> str:
    """The inventory's floating IP (the one proxy-public must hold); refused when not set."""
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
    state = probes.metallb(conn, host)
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
        return Result(host.name, step, Status.OK,
                      f"{state.describe()}: pool {name} holds {', '.join(addresses)} ({fmt})")
    patch = f"pool {name}: {current or '(none)'} -> {addresses}"
    if dry_run:
        return Result(host.name, step, Status.CHANGED, f"{state.describe()}: set {patch} ({fmt})")
    report = kube.apply(conn, host, _pool_objects(host, state, addresses))
    return Result(host.name, step, Status.CHANGED, f"{state.describe()}: set {patch} ({fmt}): {remote.tail(report)}")


def install(conn: Connection, host: Host, manifest: str, dry_run: bool) -> Result:
    """Apply MetalLB's manifest where no MetalLB controller runs, then wait for its rollout."""
    step = "metallb.install"
    state = probes.metallb(conn, host)
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
    return Result(host.name, step, Status.CHANGED, f"installed {probes.metallb(conn, host).describe()} from {manifest}")


def audit(conn: Connection, host: Host) -> Result:
    """Read-only: pools, every LoadBalancer and its IP, who holds the floating IP, and why
    pending services are pending."""
    state = probes.metallb(conn, host)
    ip = host.vars["floating_ip"]
    services = probes.load_balancers(conn, host)
    lines = [f"{state.describe()}; pools: " + ("; ".join(f"{n}: {', '.join(a)}" for n, a in state.pools.items())
                                                or "none")]
    lines += [f"{name_of(s):40} {external_ip(s) or '<pending>'}" for s in services]
    pending = {name_of(s) for s in services if not external_ip(s)}
    for event in probes.allocation_failures(conn, host):
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
