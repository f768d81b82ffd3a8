"""Docker on the Kubernetes nodes: the Docker Hub mirror in daemon.json (runbook steps 1-2)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from fabric import Connection
from invoke import Exit

from . import daemon_config, kube, probes, remote
from .connections import ConnectError
from .inventory import Host
from .probes import DockerState
from .remote import RemoteError
from .results import Change, Result, Status
from .session import Run, host_task, step

STEP = "docker.mirror"
STATUS_STEP = "docker.status"
DOCKER_WAIT = 60  # seconds docker may take to answer after a start or restart
DRAIN_TIMEOUT = 180  # seconds a node's pods may take to be evicted (--drain)

_WAIT = r'''i=0
while [ "$i" -lt "$1" ]; do
    if m=$(docker info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null); then echo "$m"; exit 0; fi
    if [ "$i" -ge 4 ] && ! pidof dockerd >/dev/null 2>&1; then
        echo "dockerd exited instead of starting" >&2
        [ -r /var/log/docker.log ] && tail -n 1 /var/log/docker.log >&2
        exit 1
    fi
    sleep 0.5; i=$((i + 1))
done
echo "docker did not answer 'docker info' within $(($1 / 2)) s" >&2; exit 1
'''

_VALIDATE = r'''if dockerd --help 2>&1 | grep -q -- --validate; then exec dockerd --validate --config-file "$1"; fi'''


@dataclass(frozen=True)
class Plan:
    """What converging one node takes: maybe a new file, then a service action."""

    old_text: str | None
    new_text: str
    write: bool
    manager: str
    action: str  # reload, restart or start

    @property
    def diff(self) -> str:
        return daemon_config.diff(self.old_text, self.new_text) if self.write else ""

    def describe(self) -> str:
        return f"{'write daemon.json and ' if self.write else ''}{self.action} docker"


def observe(conn: Connection, host: Host) -> DockerState:
    """A node's docker and daemon.json, probed in one command."""
    return probes.docker(conn, host, daemon_config.PATH)


def decide(host: Host, state: DockerState) -> Plan | Result:
    """A Plan when the node needs a change, else the Result that says why not."""
    wanted = host.vars["docker_mirrors"]
    if "containerd" in state.kubelet_endpoint:
        return Result(host.name, STEP, Status.SKIPPED,
                      f"kubelet uses containerd ({state.kubelet_endpoint}), not docker: daemon.json "
                      "would change nothing; set the mirror in containerd's "
                      "/etc/containerd/certs.d/docker.io/hosts.toml")
    if not state.has_dockerd:
        return Result(host.name, STEP, Status.SKIPPED, "docker is not installed on this node")
    try:
        current = daemon_config.parse(state.text)
    except daemon_config.DaemonJsonError as exc:
        return Result(host.name, STEP, Status.FAILED, str(exc))
    merged = daemon_config.merge(current, wanted)
    write = merged != current
    if not write and daemon_config.same_mirrors(state.mirrors, wanted):
        return Result(host.name, STEP, Status.OK, f"docker uses {', '.join(wanted)}")
    if state.mirrors is None:
        action = "start"
    elif state.manager == "systemd" and not daemon_config.needs_restart(current, merged):
        action = "reload"
    else:
        action = "restart"
    return Plan(state.text, daemon_config.render(merged), write, state.manager, action)


def _wait_for_docker(conn: Connection, host: Host) -> list[str]:
    done = remote.run(conn, host, remote.script(_WAIT, str(DOCKER_WAIT * 2)),
                      check=False, timeout=DOCKER_WAIT + 30)
    if done.failed:
        raise RemoteError(remote.tail(done.stderr))
    out = done.stdout
    return json.loads(out.strip().splitlines()[-1]) or []


class DrainError(RemoteError):
    """A node could not be drained; it was uncordoned again."""


#: kubectl drain's line for an eviction a PodDisruptionBudget refused (429), retried until its timeout.
_BUDGET_REFUSAL = re.compile(r'error when evicting pods/"([^"]+)" -n "([^"]+)" \(will retry after [^)]*\): '
                             r"Cannot evict pod as it would violate the pod's disruption budget")


@dataclass(frozen=True)
class Drain:
    """Moves a node's pods away (kubectl on the control plane) while its docker restarts, and
    lets them back after; `timeout`: seconds the evictions may take."""

    conn: Connection
    host: Host
    timeout: int = DRAIN_TIMEOUT

    def _kubectl(self, *args: str) -> None:
        kube.run(self.conn, self.host, kube.kubectl(self.host, *args))

    def cordon_and_drain(self, node: Host) -> str:
        """Cordon the node and evict its pods; its Kubernetes name. When that fails (a
        PodDisruptionBudget refuses an eviction until the timeout...), uncordon it and raise
        DrainError saying why."""
        name = node.vars["k8s_node_name"] or node.name
        self._kubectl("cordon", name)
        try:
            drain = kube.kubectl(self.host, "drain", name, "--ignore-daemonsets", "--delete-emptydir-data",
                                 f"--timeout={self.timeout}s")
            done = kube.run(self.conn, self.host, drain, check=False, timeout=self.timeout + 60)
            why = "" if done.ok else self._why(name, done.stderr)
        except RemoteError as exc:
            why = f"cannot drain {name}: {exc}"
        if why:
            self.uncordon(name)
            raise DrainError(why)
        return name

    def _why(self, name: str, stderr: str) -> str:
        """Why `kubectl drain` failed, with the fix: the budgets that refused evictions, by name."""
        refused: dict[str, list[str]] = {}
        for pod, namespace in dict.fromkeys(_BUDGET_REFUSAL.findall(stderr)):
            refused.setdefault(namespace, []).append(pod)
        if not refused:
            return f"cannot drain {name} within {self.timeout} s: {remote.tail(stderr, 1)}; see what holds its pods " \
                   "(`kubectl get pods -A --field-selector spec.nodeName=" + name + "`), or run without --drain"
        blocked = []
        for namespace, pods in refused.items():
            budgets = probes.disruption_budgets(self.conn, self.host, namespace, pods)
            for pod in pods:
                guards = ", ".join(f"{namespace}/{b['metadata']['name']} ({_allowed(b)} disruptions allowed)"
                                   for b in budgets.get(pod, [])) or "a budget"
                blocked.append(f"pod {namespace}/{pod} is protected by PodDisruptionBudget {guards}")
        return (f"cannot drain {name}: {'; '.join(blocked)}; wait until the budget allows a disruption (its pods "
                f"ready elsewhere), scale the workload up, or relax the budget's minAvailable/maxUnavailable, "
                f"then re-run; or run without --drain")

    def uncordon(self, name: str) -> None:
        """Let pods be scheduled on the node again."""
        self._kubectl("uncordon", name)


def _allowed(budget: dict) -> int:
    return (budget.get("status") or {}).get("disruptionsAllowed", 0)


@step(STEP)
def converge(conn: Connection, host: Host, plans: dict[str, Plan], drain: Drain | None = None) -> Change:
    """Carry out the node's plan (see `_apply`)."""
    plan = plans[host.name]
    return Change(plan.describe(), lambda: _apply(conn, host, plan, drain), plan.diff)


def _apply(conn: Connection, host: Host, plan: Plan, drain: Drain | None) -> Result:
    """Write the file if needed, reload or restart docker, and verify with docker info;
    when docker does not come back, put the old file back and bring docker up again.
    With `drain`, a node is cordoned and drained before a restart, uncordoned after it."""
    wanted = host.vars["docker_mirrors"]
    try:
        drained = drain.cordon_and_drain(host) if drain and plan.action != "reload" else None
    except DrainError as exc:
        return Result.failed(f"{exc}; node uncordoned, daemon.json untouched, docker not restarted")
    backup = None
    if plan.write:
        backup = remote.write(conn, host, daemon_config.PATH, plan.new_text, "0644",
                              validate=lambda path: remote.script(_VALIDATE, path))
    try:
        remote.service(conn, host, plan.manager, "docker", plan.action)
        mirrors = _wait_for_docker(conn, host)
        if not daemon_config.same_mirrors(mirrors, wanted):
            raise RemoteError(f"docker info reports mirrors {mirrors} after the {plan.action}")
    except RemoteError as exc:
        undo = f"; {_roll_back(conn, host, plan, backup)}" if plan.write else ""
        left = f"; node {drained} left cordoned: `kubectl uncordon {drained}` once docker is healthy" \
            if drained else ""
        return Result.failed(f"{exc}{undo}{left}")
    if drained:
        drain.uncordon(drained)
    what = ("wrote daemon.json, " if plan.write else "") + (f"drained {drained}, " if drained else "")
    again = f", uncordoned {drained}" if drained else ""
    return Result.changed(f"{what}docker {plan.action}ed, docker info shows {', '.join(mirrors)}{again}")


def _roll_back(conn: Connection, host: Host, plan: Plan, backup: str | None) -> str:
    """Restore the previous daemon.json and restart docker on it; say how that went."""
    restored = f"restored the previous daemon.json{f' from {backup}' if backup else ' (removed the new one)'}"
    try:
        remote.restore(conn, host, daemon_config.PATH, backup)
        state = observe(conn, host)
        remote.service(conn, host, plan.manager, "docker", "start" if state.mirrors is None else "restart")
        _wait_for_docker(conn, host)
    except RemoteError as exc:
        return f"{restored}, but docker is still down: {exc}"
    return f"{restored}; docker runs again on it"


def converge_mirrors(run: Run, drain: bool = False, drain_timeout: int = DRAIN_TIMEOUT) -> list[Result]:
    """Probe every node in parallel, then change the ones that differ: reloads in parallel,
    restarts one node at a time (drained first, with `drain`, in `drain_timeout` s at most),
    stopping the rollout at the first failure."""
    nodes = run.hosts("node")
    states = run.gather(nodes, observe, of=converge)
    plans: dict[str, Plan] = {}
    results: list[Result] = list(states.failures)
    for host in nodes:
        if host.name in states:
            outcome = decide(host, states[host.name])
            if isinstance(outcome, Result):
                results.append(run.report(outcome))
            else:
                plans[host.name] = outcome
    reloads = [h for h in nodes if h.name in plans and plans[h.name].action == "reload"]
    rolling = [h for h in nodes if h.name in plans and plans[h.name].action != "reload"]
    results += run.each(reloads, converge, plans=plans)
    if rolling and drain:
        control_plane = run.control_plane()[0]
        try:
            drainer = Drain(run.pool.get(control_plane), control_plane, drain_timeout)
        except ConnectError as exc:
            return results + [run.report(Result(h.name, STEP, Status.SKIPPED,
                                                f"not touched: cannot drain without the control plane: {exc}"))
                              for h in rolling]
        return results + run.serially(rolling, converge, plans=plans, drain=drainer)
    return results + run.serially(rolling, converge, plans=plans)


@step(STATUS_STEP)
def status(conn: Connection, host: Host) -> Result:
    """Read-only: the mirrors docker reports and whether daemon.json matches the inventory."""
    state = observe(conn, host)
    outcome = decide(host, state)
    if isinstance(outcome, Result):
        return Result("", "", outcome.status, outcome.detail)
    reported = "docker is not answering" if state.mirrors is None else \
        f"docker reports {', '.join(state.mirrors) or 'no mirror'}"
    file_state = "daemon.json differs from the inventory" if outcome.write else "daemon.json matches"
    return Result.failed(f"drift: {reported}; {file_state}; run docker.mirror", outcome.diff)


@host_task(STEP, name="mirror", help={
    "drain": "cordon and drain each node (kubectl on the control plane) before its docker restarts; "
             "uncordon it once docker is back",
    "drain_timeout": f"seconds a node's pods may take to be evicted before the rollout stops "
                     f"(default {DRAIN_TIMEOUT})"})
def mirror(run: Run, drain=False, drain_timeout=DRAIN_TIMEOUT):
    """Set the Docker Hub mirror in daemon.json on every node and apply it, node by node."""
    if drain_timeout < 1:
        raise Exit(f"--drain-timeout must be at least 1 second, not {drain_timeout}")
    converge_mirrors(run, drain, drain_timeout)


@host_task(STATUS_STEP, name="status", changes=False)
def status_task(run: Run):
    """Show the mirrors docker reports on every node and whether daemon.json matches."""
    run.each(run.hosts("node"), status)
