"""The Kubernetes nodes' container runtimes: the Docker Hub mirror for docker or containerd, whichever
the kubelet uses (runbook steps 1-2), proven by a pull; and the repair of a build socket path that
became a directory."""
from __future__ import annotations

import dataclasses

from fabric import Connection
from invoke import Exit

from . import buildcheck, containerd, daemon_config, docker, probes, remote, rollout
from .connections import ConnectError
from .drain import DRAIN_TIMEOUT, Drain, DrainError
from .inventory import Host
from .probes import NodeState
from .results import Change, Result, Status
from .session import Run, host_task, step

STEP = "nodes.mirror"
STATUS_STEP = "nodes.status"
PULL_STEP = "nodes.pull"
PULL_TIMEOUT = 300  # seconds a node's pull of the check image may take

Plan = docker.Plan | containerd.Plan


def observe(conn: Connection, host: Host) -> NodeState:
    """A node's runtimes and their files, probed in one command."""
    hosts_toml, config_toml = containerd.paths(host)
    return probes.node(conn, host, daemon_config.PATH, config_toml, hosts_toml)


def runtime(state: NodeState) -> str | None:
    """The runtime the kubelet uses: its endpoint decides (containerd's socket: containerd;
    cri-dockerd or dockershim: docker); without kubelet settings, docker where dockerd is
    installed, else containerd. None: neither (or another runtime, such as CRI-O)."""
    endpoint = state.kubelet_endpoint
    if endpoint:
        return "containerd" if "containerd" in endpoint else "docker" if "docker" in endpoint else None
    return "docker" if state.has_dockerd else "containerd" if state.containerd else None


def decide(host: Host, state: NodeState) -> Plan | Result:
    """The node's Plan for its runtime, else the Result that says why there is none."""
    used = runtime(state)
    if used is None:
        what = f"the kubelet uses {state.kubelet_endpoint}" if state.kubelet_endpoint else \
            "neither docker nor containerd is installed"
        return Result.skipped(f"{what}: no mirror set; nodes.mirror configures docker and containerd only")
    return (docker if used == "docker" else containerd).decide(host, state)


@step(STEP)
def converge(conn: Connection, host: Host, plans: dict[str, Plan], drain: Drain | None = None) -> Change:
    """Carry out the node's plan; with `drain`, the node is cordoned and drained before a
    restart and uncordoned once its runtime answers again."""
    plan = plans[host.name]
    return Change(plan.describe(), lambda: _apply(conn, host, plan, drain), plan.diff)


def _apply(conn: Connection, host: Host, plan: Plan, drain: Drain | None) -> Result:
    try:
        drained = drain.cordon_and_drain(host) if drain and plan.restarts else None
    except DrainError as exc:
        return Result.failed(f"{exc}; node uncordoned, {plan.untouched}")
    result = plan.apply(conn, host)
    if not drained:
        return result
    if result.status == Status.FAILED:
        return Result.failed(f"{result.detail}; node {drained} left cordoned: `kubectl uncordon {drained}` "
                             "once its runtime is healthy")
    drain.uncordon(drained)
    return Result.changed(f"drained {drained}, {result.detail}, uncordoned {drained}")


def batch_of(nodes: tuple[Host, ...], flag: str | None) -> int:
    """How many nodes restart at once: --batch, else the smallest `max_unavailable` of the nodes."""
    values = [rollout.parse_batch(flag)] if flag is not None else [h.vars["max_unavailable"] for h in nodes]
    return min((rollout.batch_size(v, len(nodes)) for v in values), default=1)


def converge_mirrors(run: Run, drain: bool = False, drain_timeout: int = DRAIN_TIMEOUT,
                     batch_flag: str | None = None) -> list[Result]:
    """Probe every node in parallel, then change the ones that differ: what needs no restart
    (a docker reload, a new hosts.toml) in parallel, restarts in batches (see `_roll_out`).
    Then, on the nodes whose inventory names a `mirror_check_image`, the pull check."""
    nodes = run.hosts("node")
    size = batch_of(nodes, batch_flag)
    states = run.gather(nodes, observe, of=converge)
    plans: dict[str, Plan] = {}
    results: list[Result] = list(states.failures)
    for host in (h for h in nodes if h.name in states):
        outcome = decide(host, states[host.name])
        if isinstance(outcome, Result):
            results.append(run.report(dataclasses.replace(outcome, host=host.name, step=STEP)))
        else:
            plans[host.name] = outcome
    results += run.each([h for h in nodes if h.name in plans and not plans[h.name].restarts], converge, plans=plans)
    results += _roll_out(run, [h for h in nodes if h.name in plans and plans[h.name].restarts], plans, size,
                         drain, drain_timeout)
    checked = [h for h in nodes if h.vars["mirror_check_image"]]
    return results + (pull_check(run, checked, results, states) if checked else [])


def _roll_out(run: Run, rolling: list[Host], plans: dict[str, Plan], size: int, drain: bool,
              drain_timeout: int) -> list[Result]:
    """The restarts, `size` nodes at a time (drained first, with `drain`, in `drain_timeout` s at
    most), stopping the rollout after a batch with a failure."""
    if not rolling or not drain:
        return run.in_batches(rolling, size, converge, plans=plans)
    control_plane = run.control_plane()[0]
    try:
        drainer = Drain(run.pool.get(control_plane), control_plane, drain_timeout)
    except ConnectError as exc:
        return [run.report(Result(h.name, STEP, Status.SKIPPED,
                                  f"not touched: cannot drain without the control plane: {exc}")) for h in rolling]
    return run.in_batches(rolling, size, converge, plans=plans, drain=drainer)


def pull_check(run: Run, nodes: list[Host], results: list[Result], states: dict[str, NodeState]) -> list[Result]:
    """The end of a converge: each node whose mirror step succeeded pulls its `mirror_check_image`."""
    if run.dry_run:
        return [run.report(Result(h.name, PULL_STEP, Status.SKIPPED, "a dry run does not pull")) for h in nodes]
    done = {r.host for r in results if r.step == STEP and r.status in (Status.OK, Status.CHANGED)}
    skipped = [run.report(Result(h.name, PULL_STEP, Status.SKIPPED, f"not checked: {STEP} did not succeed here"))
               for h in nodes if h.name not in done]
    return skipped + run.each([h for h in nodes if h.name in done], check_pull,
                              runtimes={n: runtime(s) for n, s in states.items()})


@step(PULL_STEP)
def check_pull(conn: Connection, host: Host, image: str | None = None,
               runtimes: dict[str, str | None] | None = None) -> Result:
    """Pull `image` (default: the node's `mirror_check_image`) through the runtime's own client:
    the proof that the mirror serves the node. Not a change: ok or failed."""
    image = image or host.vars["mirror_check_image"]
    used = runtimes[host.name] if runtimes is not None else runtime(observe(conn, host))
    if used is None:
        return Result.skipped("no docker or containerd for the kubelet: nothing to pull with")
    argv = docker.pull_argv(image) if used == "docker" else \
        containerd.pull_argv(image, host.vars["containerd_hosts_dir"])
    done = remote.run(conn, host, argv, check=False, timeout=PULL_TIMEOUT)
    mirrors = ", ".join(host.vars["docker_mirrors"])
    if done.failed:
        return Result.failed(f"{used} could not pull {image}: {remote.tail(done.stderr or done.stdout, 1)}; the "
                             f"mirror ({mirrors}) did not serve it and the node cannot reach Docker Hub itself: check "
                             f"that the mirror answers from this node (curl {mirrors.split(', ')[0]}/v2/) and holds "
                             "the image")
    pulled = argv[-1] if used == "containerd" else remote.tail(done.stdout, 1)
    return Result.ok(f"{used} pulled {pulled} (mirrors: {mirrors})")


@step(STATUS_STEP)
def status(conn: Connection, host: Host) -> Result:
    """Read-only: whether the node's runtime and its files match the inventory."""
    state = observe(conn, host)
    outcome = decide(host, state)
    if isinstance(outcome, Result):
        return outcome
    return Result.failed(f"drift: {outcome.drift(state)}; run nodes.mirror", outcome.diff)


def _image(pull_flag: str | None) -> str | None:
    if pull_flag is not None and not pull_flag.strip():
        raise Exit("--pull takes an image, e.g. --pull hello-world")
    return pull_flag.strip() if pull_flag else None


@host_task(STEP, name="mirror", help={
    "drain": "cordon and drain each node (kubectl on the control plane) before its runtime restarts; "
             "uncordon it once the runtime answers again",
    "drain_timeout": f"seconds a node's pods may take to be evicted before the rollout stops "
                     f"(default {DRAIN_TIMEOUT})",
    "batch": "how many nodes restart at once: N, or N% of the nodes (default: the inventory's max_unavailable, 1)"})
def mirror(run: Run, drain=False, drain_timeout=DRAIN_TIMEOUT, batch=None):
    """Set the Docker Hub mirror for each node's runtime (docker or containerd), in batches."""
    if drain_timeout < 1:
        raise Exit(f"--drain-timeout must be at least 1 second, not {drain_timeout}")
    converge_mirrors(run, drain, drain_timeout, batch)


@host_task(STATUS_STEP, name="status", changes=False, help={
    "pull": "also pull this image on each node through its runtime's client (e.g. hello-world)"})
def status_task(run: Run, pull=None):
    """Show whether each node's runtime uses the inventory's mirrors; --pull IMAGE proves it."""
    image = _image(pull)
    nodes = run.hosts("node")
    run.each(nodes, status)
    if image:
        run.each(nodes, check_pull, image=image)


@host_task(buildcheck.FIX_STEP, name="fix-build-socket", help={
    "timeout": f"seconds a node may take to show its socket and a ready builder pod again "
               f"(default {buildcheck.FIX_TIMEOUT})"})
def fix_build_socket(run: Run, timeout=buildcheck.FIX_TIMEOUT):
    """Remove a build socket path that became an empty directory, and recreate the socket, node by node."""
    if timeout < 1:
        raise Exit(f"--timeout must be at least 1 second, not {timeout}")
    buildcheck.fix(run, timeout)
