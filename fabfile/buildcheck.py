"""The build path on every node: the chosen builder's socket (`buildpath.Builder.socket`) is a socket
there, and the builder's DaemonSets (its own, then the image cleaner) have a ready pod there; and the
repair of a socket path that became a directory (a hostPath mount without a type, as the charts' binder
Deployment has, makes a missing path a directory: mybinder.org-deploy#3603, #3778), one node at a time."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from fabric import Connection

from . import buildpath, docker, kube, probes, remote
from .buildpath import HOST, Builder
from .inventory import Host
from .probes import BuilderPods, SocketPath
from .results import Change, Result
from .session import Run, step

STEP = "status.build"
FIX_STEP = "nodes.fix-build-socket"
FIX_TIMEOUT = 120  # seconds a repaired node may take to show its socket and a ready builder pod


def node_name(host: Host) -> str:
    """The host's Kubernetes node name."""
    return host.vars["k8s_node_name"] or host.name


@dataclass(frozen=True)
class Cluster:
    """The builder's DaemonSets as the control plane sees them, with the last log line of each pod
    that keeps crashing (pod name: line)."""

    pods: BuilderPods
    logs: dict[str, str]


def observe(conn: Connection, host: Host, builder: Builder) -> Cluster:
    """The builder's DaemonSets and their pods, read on the control plane."""
    pods = probes.builder_pods(conn, host, builder.daemonsets(host.vars["release"]))
    crashing = [(p["metadata"]["name"], c["name"]) for ps in pods.pods.values() for p in ps
                for c in (p.get("status") or {}).get("containerStatuses") or []
                if ((c.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"]
    return Cluster(pods, {pod: line for pod, container in crashing
                          if (line := probes.last_log_line(conn, host, pod, container))})


def _selected(daemonset: dict, labels: dict | None) -> bool:
    """Whether the DaemonSet's nodeSelector (the charts' build_node_selector) picks the node."""
    wanted = ((daemonset.get("spec") or {}).get("template") or {}).get("spec", {}).get("nodeSelector") or {}
    return labels is None or all(labels.get(k) == v for k, v in wanted.items())


def pod_on(cluster: Cluster, daemonset: str, node: str) -> dict | None:
    """The DaemonSet's newest pod on the node, or None."""
    pods = [p for p in cluster.pods.pods.get(daemonset, []) if (p.get("spec") or {}).get("nodeName") == node]
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def why_not_ready(cluster: Cluster, pod: dict) -> str:
    """Why a pod is not ready: its waiting reason, its latest Warning event, its last log line."""
    name = pod["metadata"]["name"]
    event = probes.latest_warning(cluster.pods.events, pod)
    said = [probes.pod_reason(pod) or "not ready", event, f"last log line: {cluster.logs[name]}"
            if name in cluster.logs else ""]
    return "; ".join(s for s in said if s)


def pod_problems(builder: Builder, cluster: Cluster, node: str, release: str) -> tuple[list[str], list[str]]:
    """(what is wrong, what is fine) with the builder's DaemonSets on the node."""
    problems, fine = [], []
    for name in builder.daemonsets(release):
        daemonset = cluster.pods.daemonsets.get(name)
        if daemonset is None:
            problems.append(f"DaemonSet {name} is not in the cluster (the release was deployed for another "
                            "builder?): run helm.upgrade")
        elif not _selected(daemonset, cluster.pods.node_labels.get(node)):
            fine.append(f"{name} not meant for this node (nodeSelector)")
        elif (pod := pod_on(cluster, name, node)) is None:
            problems.append(f"DaemonSet {name} has no pod on node {node}")
        elif not probes.pod_ready(pod):
            problems.append(f"pod {pod['metadata']['name']} of {name} not ready: {why_not_ready(cluster, pod)}")
        else:
            fine.append(f"{name} ready")
    return problems, fine


def _socket_problem(builder: Builder, socket: SocketPath) -> str:
    if socket.kind == "directory":
        return f"{socket.describe()}: run nodes.fix-build-socket"
    if socket.kind == "missing" and builder.name == HOST:
        return f"{socket.describe()}: is docker running on this node? the host builder builds through it"
    return socket.describe()


def verdict(builder: Builder, socket: SocketPath, cluster: Cluster | None, node: str, release: str) -> Result:
    """A node's build path: failed naming each cause, else ok."""
    problems = [] if socket.kind == "socket" else [_socket_problem(builder, socket)]
    fine = [socket.describe()] if socket.kind == "socket" else []
    if cluster is None:
        fine.append("DaemonSets not checked: the control plane did not answer")
    elif not cluster.pods.installed:
        fine.append(f"release {release} not installed: the socket checked alone")
    else:
        wrong, right = pod_problems(builder, cluster, node, release)
        problems += wrong
        fine += right
    head = f"{builder.name} builder: "
    return Result.failed(head + "; ".join(problems + fine)) if problems else Result.ok(head + "; ".join(fine))


def verdicts(run: Run, builder: Builder, of: str = STEP) -> list[Result]:
    """Every node's build path, not reported (hosts that do not answer are, under `of`)."""
    control_plane = run.control_plane()
    release = control_plane[0].vars["release"] if control_plane else ""
    clusters = run.gather(control_plane, observe, of=of, builder=builder)
    cluster = clusters.get(control_plane[0].name) if control_plane else None
    nodes = run.hosts("node")
    sockets = run.gather(nodes, probes.socket_path, of=of, path=builder.socket)
    return [dataclasses.replace(verdict(builder, sockets[h.name], cluster, node_name(h), release),
                                host=h.name, step=of) for h in nodes if h.name in sockets]


def check(run: Run, builder: Builder) -> list[Result]:
    """Report every node's build path (status)."""
    return [run.report(r) for r in verdicts(run, builder)]


def describe(run: Run, builder: Builder, of: str) -> str:
    """Every node's build path as text, one line each (the diagnostics bundle)."""
    lines = [f"image builder: {builder.name} ({builder.why}); socket {builder.socket}"]
    lines += [f"{r.host}: {r.status.value}: {r.detail}" for r in verdicts(run, builder, of)]
    return "\n".join(lines) + "\n"


# -- the repair -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ControlPlane:
    """kubectl on the control plane, for the repair of the nodes' builder pods."""

    conn: Connection
    host: Host

    def cluster(self, builder: Builder) -> Cluster:
        return observe(self.conn, self.host, builder)

    def delete_pod(self, name: str) -> None:
        kube.run(self.conn, self.host, kube.kubectl(self.host, "delete", "pod", name, "-n",
                                                    self.host.vars["namespace"], "--wait=false"))


@step(FIX_STEP)
def repair(conn: Connection, host: Host, builder: Builder, control: ControlPlane | None,
           timeout: int = FIX_TIMEOUT) -> Result | Change:
    """Where the builder's socket path is an empty directory: remove it, then make the builder
    recreate the socket (dind, pink: restart its pod on the node through `control`; host: restart
    docker) and wait for it."""
    socket = probes.socket_path(conn, host, builder.socket)
    path = socket.path
    if socket.kind == "socket":
        return Result.ok(f"{socket.describe()}: nothing to do")
    if socket.kind != "directory":
        return Result.skipped(f"{socket.describe()}, not a directory: nothing this task repairs; see `invoke status`")
    if socket.entries:
        return Result.failed(f"{socket.describe()}: not removed; look at it by hand (`ls -la {path}` on "
                             f"{host.name}), empty it if nothing there is needed, then re-run")
    if builder.name == HOST:
        return Change(f"remove directory {path} on {host.name} and restart docker",
                      lambda: _restart_docker(conn, host, socket))
    daemonset, node = builder.daemonsets(host.vars["release"])[0], node_name(host)
    pod = pod_on(control.cluster(builder), daemonset, node)
    if pod is None:
        return Change(f"remove directory {path} on {host.name} (no {daemonset} pod on node {node} to restart)",
                      lambda: _remove(conn, host, path, f"no {daemonset} pod on node {node}: its socket appears "
                                                        "when one starts"))
    old = pod["metadata"]["name"]
    return Change(f"remove directory {path} on {host.name} and restart pod {old}",
                  lambda: _restart_pod(conn, host, builder, control, pod, timeout))


def _remove(conn: Connection, host: Host, path: str, then: str) -> Result:
    remote.run(conn, host, ["rmdir", "--", path])
    return Result.changed(f"removed empty directory {path}; {then}")


def _restart_pod(conn: Connection, host: Host, builder: Builder, control: ControlPlane, old: dict,
                 timeout: int) -> Result:
    """Remove the directory, delete the builder's pod on the node, and wait until its DaemonSet's new
    pod is ready and the socket is there."""
    path, name, uid = builder.socket, old["metadata"]["name"], old["metadata"].get("uid")
    daemonset, node = builder.daemonsets(host.vars["release"])[0], node_name(host)
    remote.run(conn, host, ["rmdir", "--", path])
    control.delete_pod(name)
    done = f"removed empty directory {path} and deleted pod {name}"

    def now() -> tuple[SocketPath, Cluster, dict | None]:
        cluster = control.cluster(builder)
        return probes.socket_path(conn, host, path), cluster, pod_on(cluster, daemonset, node)

    def replaced(pod: dict | None) -> bool:
        return pod is not None and pod["metadata"].get("uid") != uid

    def repaired(socket: SocketPath, cluster: Cluster, pod: dict | None) -> bool:
        return socket.kind == "socket" and replaced(pod) and probes.pod_ready(pod)

    socket, cluster, pod = _until(now, repaired, timeout)
    if repaired(socket, cluster, pod):
        return Result.changed(f"{done}: new pod {pod['metadata']['name']} ready, {path} is a socket")
    new = f"new pod {pod['metadata']['name']} not ready: {why_not_ready(cluster, pod)}" if replaced(pod) else \
        "no new pod yet"
    return Result.failed(f"{done}, but after {timeout} s: {socket.describe()}; {new}; see `kubectl describe "
                         f"pod -n {host.vars['namespace']} {pod['metadata']['name'] if pod else name}`")


def _until(observe_now: Callable[[], tuple], done: Callable[..., bool], timeout: int) -> tuple:
    """`observe_now()` every second until `done(*it)` or `timeout` s have passed; the last observation."""
    deadline = time.monotonic() + timeout
    while True:
        seen = observe_now()
        if done(*seen) or time.monotonic() >= deadline:
            return seen
        time.sleep(1)


def _restart_docker(conn: Connection, host: Host, socket: SocketPath) -> Result:
    """Remove the directory, (re)start docker, wait until it answers, and check its socket."""
    remote.run(conn, host, ["rmdir", "--", socket.path])
    running = socket.manager == "systemd" or remote.run(conn, host, ["service", "docker", "status"], check=False).ok
    action = "restart" if running else "start"  # sysvinit's restart fails when docker is stopped
    try:
        remote.service(conn, host, socket.manager, "docker", action)
        remote.await_daemon(conn, host, "dockerd", "/var/log/docker.log", ["docker", "info", "--format", "{{.ID}}"],
                            docker.DOCKER_WAIT)
    except remote.RemoteError as exc:
        return Result.failed(f"removed empty directory {socket.path}, but docker did not come back: {exc}")
    after = probes.socket_path(conn, host, socket.path)
    said = f"removed empty directory {socket.path}, docker {action}ed: {after.describe()}"
    return Result.changed(said) if after.kind == "socket" else Result.failed(said)


def fix(run: Run, timeout: int = FIX_TIMEOUT) -> list[Result]:
    """Repair the nodes one at a time, stopping after a failure."""
    builder = buildpath.for_run(run)
    control = None
    if builder.name != HOST:
        host = run.control_plane()[0]
        reached = run.gather([host], lambda conn, h: ControlPlane(conn, h), of=FIX_STEP)
        if not reached:
            return reached.failures
        control = reached[host.name]
    return run.in_batches(run.hosts("node"), 1, repair, builder=builder, control=control, timeout=timeout)
