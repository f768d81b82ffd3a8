"""The cluster seen from the control plane: namespace, rollout, and the pods and services view."""
from __future__ import annotations

import json
import time

from fabric import Connection

from . import helm, inventory, kube, lock, probes, remote
from .inventory import Host
from .results import Change, Result, succeeded, table
from .session import Run, host_task, step

ROLLOUT_TIMEOUT = 300
IP_TIMEOUT = 120
HUB_CLAIM = "hub-db-dir"  # the hub's database claim (the chart's jupyterhub.hub.db.type sqlite-pvc)


@step("cluster.namespace")
def namespace(conn: Connection, host: Host) -> Result | Change:
    """Create the release's namespace if it does not exist (runbook step 4)."""
    name = host.vars["namespace"]
    if probes.namespace_exists(conn, host):
        return Result.ok(f"namespace {name} exists")

    def create() -> Result:
        kube.run(conn, host, kube.kubectl(host, "create", "namespace", name))
        return Result.changed(f"created namespace {name}")
    return Change(f"create namespace {name}", create)


@step("cluster.wait")
def wait(conn: Connection, host: Host, timeout: int = ROLLOUT_TIMEOUT) -> list[Result]:
    """`kubectl rollout status` on every workload (deployment, daemonset, statefulset) of the
    release; one that does not complete in time is reported with its pod's reason and latest warning
    event (a FailedMount's text) and, for a volume claim its pods wait for, why the claim stays Pending
    and the fix."""
    found, missing = probes.workloads(conn, host)
    results = [Result.failed(f"{name} is in the release but not in the cluster; `helm rollback "
                             f"{host.vars['release']} -n {host.vars['namespace']}` to the current revision "
                             "recreates it") for name in missing]
    if not found:
        return [Result.failed(f"no workload of release {host.vars['release']} in namespace "
                              f"{host.vars['namespace']}; run helm.upgrade first")]
    for name in found:
        done = kube.run(conn, host, kube.kubectl(host, "rollout", "status", name, "--namespace",
                                                 host.vars["namespace"], f"--timeout={timeout}s"),
                        check=False, timeout=timeout + 30)
        if done.ok:
            results.append(Result.ok(f"{name}: {remote.tail(done.stdout, 1)}"))
            continue
        why = probes.stuck(conn, host, name)
        said = [remote.tail(done.stderr, 1), why.reason, *map(unbound, why.claims),
                f"see `kubectl describe {name} -n {host.vars['namespace']}`"]
        results.append(Result.failed(f"{name}: " + "; ".join(s for s in said if s)))
    return results


def unbound(claim: probes.Claim) -> str:
    """Why a PersistentVolumeClaim stays Pending, and the fix."""
    what = f"PersistentVolumeClaim {claim.namespace}/{claim.name} is Pending"
    said = f" ({claim.event})" if claim.event else ""
    if claim.storage_class is None:
        classes = ", ".join(claim.classes) or "none"
        default = (f"make one the default (`kubectl annotate storageclass {claim.classes[0]} "
                   f"{probes.DEFAULT_CLASS_ANNOTATION}=true`; from Kubernetes 1.28 the claim then gets it)"
                   if claim.classes else "install a dynamic provisioner (e.g. local-path-provisioner) and make its "
                   "StorageClass the default")
        return (f"{what}: it names no StorageClass and the cluster has no default one (StorageClasses: {classes})"
                f"{said}; {default}, or create a PersistentVolume without storageClassName that fits the claim"
                + (" (or run the hub without it: the chart's jupyterhub.hub.db.type sqlite-memory, which loses the "
                   "hub's database on restart)" if claim.name == HUB_CLAIM else ""))
    if not claim.class_found:
        return (f"{what}: its StorageClass {claim.storage_class} does not exist{said}; create it, or delete the claim "
                "so that the chart recreates it with a class that exists")
    return (f"{what}: StorageClass {claim.storage_class} (provisioner {claim.provisioner}) has not provisioned a "
            f"volume for it{said}; check that this provisioner runs in the cluster "
            f"(`kubectl get events -n {claim.namespace} --field-selector involvedObject.name={claim.name}`)")


def _pod_row(pod: dict) -> list[str]:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    return [pod["metadata"]["name"], f"{ready}/{len(statuses)}", pod.get("status", {}).get("phase", "?"),
            str(restarts)]


def _service_row(svc: dict) -> list[str]:
    spec = svc["spec"]
    ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    external = ",".join(i.get("ip", "") for i in ingress) or \
        ("<pending>" if spec["type"] == "LoadBalancer" else "<none>")
    ports = ",".join(f"{p['port']}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                     for p in spec.get("ports", []))
    return [svc["metadata"]["name"], spec["type"], spec.get("clusterIP", ""), external, ports]


@step("cluster.status")
def status(conn: Connection, host: Host) -> Result:
    """Read-only: the runbook's step 6 and 9 view, pods and services of the namespace."""
    ns = host.vars["namespace"]
    pods, svcs = probes.in_namespace(conn, host, "pods"), probes.in_namespace(conn, host, "services")
    running = sum(1 for p in pods if p.get("status", {}).get("phase") == "Running")
    view = table([["POD", "READY", "STATUS", "RESTARTS"]] + [_pod_row(p) for p in pods]) + "\n\n" + \
        table([["SERVICE", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"]] + [_service_row(s) for s in svcs])
    return Result.ok(f"namespace {ns}: {len(pods)} pods ({running} running), {len(svcs)} services", view)


def _patch_type(conn: Connection, host: Host, service: dict, kind: str) -> None:
    meta = service["metadata"]
    kube.run(conn, host, kube.kubectl(host, "patch", "service", meta["name"], "-n", meta["namespace"],
                                      "--type", "merge", "-p", json.dumps({"spec": {"type": kind}})))


def _wait_for_ip(conn: Connection, host: Host, name: str, ip: str, timeout: int) -> dict | None:
    """Poll until service `name` (ns/name) holds `ip`; the service then, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        service = next((s for s in probes.load_balancers(conn, host) if probes.name_of(s) == name), None)
        if service and probes.external_ip(service) == ip:
            return service
        if time.monotonic() > deadline:
            return None
        time.sleep(1)


def _pending_reason(conn: Connection, host: Host, name: str) -> str:
    events = [e for e in probes.allocation_failures(conn, host)
              if f"{e['involvedObject'].get('namespace')}/{e['involvedObject']['name']}" == name]
    return f"AllocationFailed: {events[-1].get('message', '').strip()}" if events else \
        "no AllocationFailed event: is MetalLB installed (metallb.install) and the IP in its pool (metallb.pool)?"


@step("cluster.floating-ip")
def claim_floating_ip(conn: Connection, host: Host, fix: bool = False, timeout: int = IP_TIMEOUT) -> Result | Change:
    """Make proxy-public hold the floating IP. When other LoadBalancers hold it, name them;
    with `fix`, switch them to NodePort and re-apply proxy-public (runbook step 9)."""
    ip = inventory.floating_ip(host)
    public_name = f"{host.vars['namespace']}/proxy-public"
    services = probes.load_balancers(conn, host)
    public = next((s for s in services if probes.name_of(s) == public_name), None)
    if public is None:
        return Change(f"wait for {public_name} (made by helm.upgrade) to get {ip}", lambda: Result.failed(
            f"{public_name} is not a LoadBalancer service; run helm.upgrade"))
    if probes.external_ip(public) == ip:
        return Result.ok(f"{public_name} holds {ip}")
    holders = [s for s in services if probes.external_ip(s) == ip and s is not public]
    if not holders:
        def await_ip() -> Result:
            if _wait_for_ip(conn, host, public_name, ip, timeout):
                return Result.changed(f"{public_name} got {ip}")
            return Result.failed(f"waited {timeout} s for {public_name} to get {ip}; it holds "
                                 f"{probes.external_ip(public) or 'nothing'}; "
                                 f"{_pending_reason(conn, host, public_name)}")
        return Change(f"wait for {public_name} to get {ip}", await_ip)
    names = ", ".join(probes.name_of(s) for s in holders)
    if not fix:
        return Result.failed(f"{ip} is held by {names}; re-run with --fix to switch "
                             f"{'them' if len(holders) > 1 else 'it'} to NodePort so proxy-public can take it "
                             "(the runbook's step 9 workaround)")
    undo = "\n".join(f"undo: kubectl patch service {s['metadata']['name']} -n {s['metadata']['namespace']} "
                     "--type merge -p '{\"spec\":{\"type\":\"LoadBalancer\"}}' (it then waits for a free address)"
                     for s in holders)

    def switch() -> Result:
        for service in holders:
            _patch_type(conn, host, service, "NodePort")
        _patch_type(conn, host, public, "NodePort")
        _patch_type(conn, host, public, "LoadBalancer")
        if not _wait_for_ip(conn, host, public_name, ip, timeout):
            return Result.failed(f"switched {names} to NodePort and re-applied {public_name}, but it did not get "
                                 f"{ip} within {timeout} s; {_pending_reason(conn, host, public_name)}")
        return Result.changed(f"switched {names} to NodePort, re-applied {public_name}: it holds {ip}")
    return Change(f"switch {names} to NodePort, re-apply {public_name}", switch, undo)


@host_task(claim_floating_ip.label, name="floating-ip", needs=("public_url", "floating_ip"), help={
    "fix": "switch other LoadBalancers holding the IP to NodePort",
    "timeout": f"seconds to wait for the IP (default {IP_TIMEOUT})",
    "break_lock": "take over the deploy lock even though someone holds it"})
def floating_ip_task(run: Run, fix=False, timeout=IP_TIMEOUT, break_lock=False):
    """Make proxy-public hold the floating IP, durably (in the chart values) first."""
    with lock.held(run, break_lock) as holding:
        if holding.held and (succeeded(helm.release_stage(run)) or run.dry_run):
            run.each(run.control_plane(), claim_floating_ip, fix=fix, timeout=timeout)


@host_task(namespace.label, name="namespace")
def namespace_task(run: Run):
    """Create the BinderHub namespace if it is missing."""
    run.each(run.control_plane(), namespace)


@host_task(wait.label, name="wait", changes=False,
           help={"timeout": f"seconds to wait for each rollout (default {ROLLOUT_TIMEOUT})"})
def wait_task(run: Run, timeout=ROLLOUT_TIMEOUT):
    """Wait for every deployment, daemonset and statefulset of the release to roll out."""
    run.each(run.control_plane(), wait, timeout=timeout)


@host_task(status.label, name="status", changes=False)
def status_task(run: Run):
    """Show the release's pods and services, as the runbook's steps 6 and 9 check them."""
    run.each(run.control_plane(), status)
