"""The cluster seen from the control plane: namespace, rollout, and the pods and services view."""
from __future__ import annotations

from fabric import Connection
from invoke import task

from . import kube, remote
from .inventory import Host
from .results import Result, Status
from .session import HELP, READ_HELP, session

ROLLOUT_TIMEOUT = 300


def namespace(conn: Connection, host: Host, dry_run: bool) -> Result:
    """Create the release's namespace if it does not exist (runbook step 4)."""
    name = host.vars["namespace"]
    kube.preflight(conn, host)
    if kube.namespace_exists(conn, host):
        return Result(host.name, "cluster.namespace", Status.OK, f"namespace {name} exists")
    if dry_run:
        return Result(host.name, "cluster.namespace", Status.CHANGED, f"create namespace {name}")
    kube.run(conn, host, kube.kubectl(host, "create", "namespace", name))
    return Result(host.name, "cluster.namespace", Status.CHANGED, f"created namespace {name}")


def workloads(conn: Connection, host: Host) -> list[str]:
    """The release's deployments and daemonsets, as kind/name."""
    items = kube.read_json(conn, host, kube.kubectl(
        host, "get", "deployments,daemonsets", "--namespace", host.vars["namespace"],
        "--selector", f"release={host.vars['release']}", "-o", "json"))["items"]
    return [f"{i['kind'].lower()}/{i['metadata']['name']}" for i in items]


def wait(conn: Connection, host: Host, timeout: int) -> list[Result]:
    """`kubectl rollout status` on every deployment and daemonset of the release."""
    found = workloads(conn, host)
    if not found:
        return [Result(host.name, "cluster.wait", Status.FAILED,
                       f"no deployment or daemonset of release {host.vars['release']} in namespace "
                       f"{host.vars['namespace']}; run helm.upgrade first")]
    results = []
    for name in found:
        done = kube.run(conn, host, kube.kubectl(host, "rollout", "status", name, "--namespace",
                                                 host.vars["namespace"], f"--timeout={timeout}s"),
                        check=False, timeout=timeout + 30)
        ok = done.ok
        results.append(Result(host.name, "cluster.wait", Status.OK if ok else Status.FAILED,
                              f"{name}: {remote.tail(done.stdout if ok else done.stderr, 1)}"))
    return results


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _pod_row(pod: dict) -> list[str]:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    return [pod["metadata"]["name"], f"{ready}/{len(statuses)}", pod.get("status", {}).get("phase", "?"),
            str(restarts)]


def _service_row(svc: dict) -> list[str]:
    spec = svc["spec"]
    ingress = svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    external = ",".join(i.get("ip", "") for i in ingress) or ("<pending>" if spec["type"] == "LoadBalancer" else "<none>")
    ports = ",".join(f"{p['port']}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                     for p in spec.get("ports", []))
    return [svc["metadata"]["name"], spec["type"], spec.get("clusterIP", ""), external, ports]


def status(conn: Connection, host: Host) -> Result:
    """Read-only: the runbook's step 6 and 9 view, pods and services of the namespace."""
    ns = host.vars["namespace"]
    pods = kube.read_json(conn, host, kube.kubectl(host, "get", "pods", "--namespace", ns, "-o", "json"))["items"]
    svcs = kube.read_json(conn, host, kube.kubectl(host, "get", "services", "--namespace", ns, "-o", "json"))["items"]
    running = sum(1 for p in pods if p.get("status", {}).get("phase") == "Running")
    table = _table([["POD", "READY", "STATUS", "RESTARTS"]] + [_pod_row(p) for p in pods]) + "\n\n" + \
        _table([["SERVICE", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"]] + [_service_row(s) for s in svcs])
    return Result(host.name, "cluster.status", Status.OK,
                  f"namespace {ns}: {len(pods)} pods ({running} running), {len(svcs)} services", table)


@task(name="namespace", help=HELP)
def namespace_task(c, env=None, limit=None, dry_run=False, parallel=10, inventory=None, accept_new_host_keys=False):
    """Create the BinderHub namespace if it is missing."""
    with session(c, env, "cluster.namespace", limit=limit, dry_run=dry_run, parallel=parallel,
                 inventory_path=inventory, accept_new_host_keys=accept_new_host_keys) as run:
        run.each(run.control_plane(), "cluster.namespace", namespace, dry_run)


@task(name="wait", help={**READ_HELP, "timeout": f"seconds to wait for each rollout (default {ROLLOUT_TIMEOUT})"})
def wait_task(c, env=None, timeout=ROLLOUT_TIMEOUT, limit=None, parallel=10, inventory=None,
              accept_new_host_keys=False):
    """Wait for every deployment and daemonset of the release to roll out."""
    with session(c, env, "cluster.wait", limit=limit, parallel=parallel,
                 inventory_path=inventory, accept_new_host_keys=accept_new_host_keys) as run:
        run.each(run.control_plane(), "cluster.wait", wait, int(timeout))


@task(name="status", help=READ_HELP)
def status_task(c, env=None, limit=None, parallel=10, inventory=None, accept_new_host_keys=False):
    """Show the release's pods and services, as the runbook's steps 6 and 9 check them."""
    with session(c, env, "cluster.status", limit=limit, parallel=parallel,
                 inventory_path=inventory, accept_new_host_keys=accept_new_host_keys) as run:
        run.each(run.control_plane(), "cluster.status", status)
