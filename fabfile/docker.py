"""Docker on the Kubernetes nodes: the Docker Hub mirror in daemon.json (runbook steps 1-2)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from fabric import Connection

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


@dataclass(frozen=True)
class Drain:
    """Moves a node's pods away (kubectl on the control plane) while its docker restarts, and
    lets them back after."""

    conn: Connection
    host: Host

    def _kubectl(self, *args: str) -> None:
        kube.run(self.conn, self.host, kube.kubectl(self.host, *args), timeout=self.host.command_timeout + 180)

    def cordon_and_drain(self, node: Host) -> str:
        """Cordon the node and evict its pods; its Kubernetes name."""
        name = node.vars["k8s_node_name"] or node.name
        self._kubectl("cordon", name)
        self._kubectl("drain", name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=180s")
        return name

    def uncordon(self, name: str) -> None:
        """Let pods be scheduled on the node again."""
        self._kubectl("uncordon", name)


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
    drained = drain.cordon_and_drain(host) if drain and plan.action != "reload" else None
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


def converge_mirrors(run: Run, drain: bool = False) -> list[Result]:
    """Probe every node in parallel, then change the ones that differ: reloads in parallel,
    restarts one node at a time (drained first, with `drain`), stopping the rollout at the
    first failure."""
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
            drainer = Drain(run.pool.get(control_plane), control_plane)
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
             "uncordon it once docker is back"})
def mirror(run: Run, drain=False):
    """Set the Docker Hub mirror in daemon.json on every node and apply it, node by node."""
    converge_mirrors(run, drain)


@host_task(STATUS_STEP, name="status", changes=False)
def status_task(run: Run):
    """Show the mirrors docker reports on every node and whether daemon.json matches."""
    run.each(run.hosts("node"), status)
