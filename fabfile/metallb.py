"""MetalLB on the cluster: its address pool in either format, install, and a read-only audit
(runbook steps 7 and 8)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from fabric import Connection

from . import inventory, kube, probes, remote
from .inventory import Host
from .probes import MetalLB, external_ip, name_of
from .results import Change, Result, succeeded
from .session import Run, host_task, step

NAMESPACE = probes.METALLB_NAMESPACE


def wanted_addresses(host: Host) -> list[str]:
    """The pool's addresses: `metallb_addresses`, else the floating IP alone."""
    return list(host.vars["metallb_addresses"]) or [f"{inventory.floating_ip(host)}/32"]


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


@step("metallb.pool")
def pool(conn: Connection, host: Host) -> Result | Change:
    """Make MetalLB's pool hold the inventory's addresses, in the format its version reads."""
    name = host.vars["metallb_pool_name"]
    state = probes.metallb(conn, host)
    addresses = wanted_addresses(host)
    if not state.version:
        return Change(f"set pool {name} to {addresses} once MetalLB is installed", lambda: Result.failed(
            "MetalLB is not installed; run metallb.install first"))
    request = "annotation" if state.uses_crds else "loadBalancerIP"
    if host.vars["floating_ip_request"] != request:
        return Result.failed(f"{state.describe()} reads the floating IP from {request} (set vars.floating_ip_request: "
                             f"{request}, then helm.upgrade): "
                             + ("0.13+ refuses a service that also has spec.loadBalancerIP" if state.uses_crds
                                else "before 0.13 MetalLB ignores the annotation"))
    fmt = "IPAddressPool + L2Advertisement" if state.uses_crds else "ConfigMap metallb-system/config"
    current = state.pools.get(name)
    if current == addresses and (state.advertised or not state.uses_crds):
        return Result.ok(f"{state.describe()}: pool {name} holds {', '.join(addresses)} ({fmt})")
    patch = f"pool {name}: {current or '(none)'} -> {addresses}"

    def apply() -> Result:
        report = kube.apply(conn, host, _pool_objects(host, state, addresses))
        return Result.changed(f"{state.describe()}: set {patch} ({fmt}): {remote.tail(report)}")
    return Change(f"{state.describe()}: set {patch} ({fmt})", apply)


@step("metallb.install")
def install(conn: Connection, host: Host, manifest: str) -> Result | Change:
    """Apply MetalLB's manifest where no MetalLB controller runs, then wait for its rollout."""
    state = probes.metallb(conn, host)
    if state.version:
        return Result.ok(f"{state.describe()} runs ({state.image})")

    def apply() -> Result:
        if re.match(r"https?://", manifest):
            kube.run(conn, host, kube.kubectl(host, "apply", "-f", manifest))
        else:
            with remote.private_files(conn, host, {"metallb.yaml": Path(manifest).read_text()}) as directory:
                kube.run(conn, host, kube.kubectl(host, "apply", "-f", f"{directory}/metallb.yaml"))
        kube.run(conn, host, kube.kubectl(host, "rollout", "status", "deployment/controller", "-n", NAMESPACE,
                                          "--timeout=180s"), timeout=host.command_timeout + 180)
        return Result.changed(f"installed {probes.metallb(conn, host).describe()} from {manifest}")
    return Change(f"apply {manifest}", apply)


@step("metallb.audit")
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
    elif ip and not any(inventory.in_pool(a, ip) for a in state.pools.values()):
        summary = f"floating IP {ip} is in no MetalLB pool (run metallb.pool)"
    else:
        summary = f"floating IP {ip} held by {', '.join(holders) or 'nobody'}"
    return Result.ok(summary, "\n".join(lines))


def stage(run: Run) -> list[Result]:
    """metallb.install where missing, then metallb.pool (used by deploy)."""
    control_plane = run.control_plane()
    installed = run.each(control_plane, install, manifest=_manifest(run))
    return installed + run.each(control_plane, pool) if succeeded(installed) else installed


def _manifest(run: Run) -> str:
    return inventory.metallb_manifest(run.env, run.control_plane()[0])


@host_task(install.label, name="install", needs=("metallb_manifest",))
def install_task(run: Run):
    """Install MetalLB (the inventory's pinned manifest) where it is missing."""
    run.each(run.control_plane(), install, manifest=_manifest(run))


@host_task(pool.label, name="pool", needs=("floating_ip",))
def pool_task(run: Run):
    """Make MetalLB's address pool hold the floating IP(s), in the format its version reads."""
    run.each(run.control_plane(), pool)


@host_task(audit.label, name="audit", changes=False)
def audit_task(run: Run):
    """Show MetalLB's pools, every LoadBalancer's IP, and who holds the floating IP."""
    run.each(run.control_plane(), audit)
