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
MEMBERLIST = "memberlist"
# MetalLB 0.9's install, first time only: `kubectl create secret generic -n metallb-system memberlist
# --from-literal=secretkey="$(openssl rand -base64 128)"` (its speakers read the key from it; from 0.13
# the controller makes it). Here the key is made on the host and reaches kubectl on its stdin: it is in
# no argv, no file, no output. kubectl's words come as the script's arguments.
_CREATE_MEMBERLIST = r"""key=$(head -c 128 /dev/urandom | base64 -w0) && [ -n "$key" ] || exit 1
printf %s "$key" | "$@" create secret generic memberlist -n metallb-system --from-file=secretkey=/dev/stdin -o name
"""


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


def memberlist_by_hand(objects: list[dict]) -> bool:
    """Whether these MetalLB objects (a manifest's, or the cluster's workloads) leave the speakers'
    `memberlist` Secret to the operator: a speaker DaemonSet reads it and no controller is told to
    make it (`METALLB_ML_SECRET_NAME`, 0.13+)."""
    def pod(obj: dict) -> dict:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}

    def env(obj: dict) -> list[dict]:
        return [e for c in pod(obj).get("containers") or [] for e in c.get("env") or []]
    reads = any(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == MEMBERLIST
                for o in objects if o.get("kind") == "DaemonSet" for e in env(o)) or any(
        (v.get("secret") or {}).get("secretName") == MEMBERLIST
        for o in objects if o.get("kind") == "DaemonSet" for v in pod(o).get("volumes") or [])
    made = any(e.get("name") == "METALLB_ML_SECRET_NAME" for o in objects if o.get("kind") == "Deployment"
               for e in env(o))
    return reads and not made


def _memberlist_missing(conn: Connection, host: Host) -> bool:
    """Whether the installed MetalLB needs the memberlist Secret by hand and it is not there."""
    workloads, present = probes.metallb_memberlist(conn, host, MEMBERLIST)
    return memberlist_by_hand(workloads) and not present


def _create_memberlist(conn: Connection, host: Host) -> None:
    kube.run(conn, host, remote.script(_CREATE_MEMBERLIST, *kube.kubectl(host)))


_MEMBERLIST_CHANGE = f"create Secret {NAMESPACE}/{MEMBERLIST} (the speakers' key, made on the host)"


@step("metallb.install")
def install(conn: Connection, host: Host, manifest: str) -> Result | Change:
    """Apply MetalLB's manifest where no MetalLB controller runs, create the speakers' memberlist
    Secret where this MetalLB (before 0.13) leaves it to the operator and it is missing, then wait
    for the rollout."""
    state = probes.metallb(conn, host)
    if state.version and _memberlist_missing(conn, host):
        def create() -> Result:
            _create_memberlist(conn, host)
            return Result.changed(f"{state.describe()}: created Secret {NAMESPACE}/{MEMBERLIST}")
        return Change(f"{state.describe()}: {_MEMBERLIST_CHANGE}", create)
    if state.version:
        return Result.ok(f"{state.describe()} runs ({state.image})")
    local = not re.match(r"https?://", manifest)
    text = Path(manifest).read_text() if local else ""

    def apply() -> Result:
        if local:
            with remote.private_files(conn, host, {"metallb.yaml": text}) as directory:
                kube.run(conn, host, kube.kubectl(host, "apply", "-f", f"{directory}/metallb.yaml"))
        else:
            kube.run(conn, host, kube.kubectl(host, "apply", "-f", manifest))
        made = _memberlist_missing(conn, host)
        if made:
            _create_memberlist(conn, host)
        kube.run(conn, host, kube.kubectl(host, "rollout", "status", "deployment/controller", "-n", NAMESPACE,
                                          "--timeout=180s"), timeout=host.command_timeout + 180)
        return Result.changed(f"installed {probes.metallb(conn, host).describe()} from {manifest}"
                              + (f"; created Secret {NAMESPACE}/{MEMBERLIST}" if made else ""))
    by_hand = local and memberlist_by_hand([d for d in yaml.safe_load_all(text) if isinstance(d, dict)])
    return Change(f"apply {manifest}" + (f" and {_MEMBERLIST_CHANGE}" if by_hand else ""), apply)


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
