"""docker.mirror on 1, 3 and 10 lab nodes: converging, the no-op re-run, SSH connections per host
per run, and a bare Fabric ThreadingGroup doing the same probe as the floor; then the no-op as a
whole command process beside the floor as a process of its own (start-up included). Then, on 10
nodes (issue 14): the converge with --batch 1 and --batch 5 beside bare Fabric doing the same
restarts in the same batches; the same on a mixed lab (containerd nodes beside docker nodes) with
its no-op; and the pull check's cost, `docker.status --pull hello-world` beside `docker.status`
and beside the bare pulls. The inventory is the lab's with the lab registry as the mirror and no
`mirror_check_image` (the pull check is measured on its own). Run as root:

    .venv/bin/python bench/nodes.py [--runs 5]

Targets (issue 2): the no-op on 10 nodes within 1.5x the no-op on 1 node and within 2x the
floor; exactly one SSH connection per host per run. (Issue 11): the command's process within
1.05x the floor's process on 10 nodes.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import io
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402
from fabric import Config, ThreadingGroup  # noqa: E402
from invoke import Program  # noqa: E402

from fabfile import containerd_config, daemon_config, ns, remote  # noqa: E402
from fabfile.inventory import VARS  # noqa: E402
from fabfile.probes import DOCKER_PROBE  # noqa: E402
from lab import hosts as labhosts  # noqa: E402

MIRROR = "https://10.77.0.6:5000"  # the lab's registry
IMAGE = "hello-world"  # the pull check's image, which the lab's registry holds
CONTAINERD_NODE = "grep -q containerd.sock /var/lib/kubelet/kubeadm-flags.env 2>/dev/null"
# A node as the lab made it, no mirror anywhere ($1: containerd's config.toml, base64).
RESET = r"""rm -rf /etc/containerd/certs.d; rm -f /etc/containerd/*.bhops-*.bak /etc/docker/*.bhops-*.bak
printf '%s' "$1" | base64 -d > /etc/containerd/config.toml
""" + CONTAINERD_NODE + r""" && { service containerd stop >/dev/null 2>&1; exec service containerd start >/dev/null; }
printf '%s\n' '{"log-driver": "json-file", "log-opts": {"max-size": "10m"}}' > /etc/docker/daemon.json
service docker stop >/dev/null 2>&1; service docker start >/dev/null
for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1
"""
# The floor of a converge: the same files written bare and the runtime restarted until it
# answers ($1: the mirror, $2: config.toml with config_path, base64).
CONVERGE = CONTAINERD_NODE + r""" && {
    mkdir -p /etc/containerd/certs.d/docker.io
    printf 'server = "https://registry-1.docker.io"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n' "$1" \
        > /etc/containerd/certs.d/docker.io/hosts.toml
    printf '%s' "$2" | base64 -d > /etc/containerd/config.toml
    exec service containerd restart >/dev/null
}
printf '{"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "registry-mirrors": ["%s"]}\n' "$1" \
    > /etc/docker/daemon.json
service docker restart >/dev/null
for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1
"""
# The floor of the pull check: each node's runtime client pulls the image ($1) through the mirror.
PULL = CONTAINERD_NODE + r""" && exec ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d \
    "docker.io/library/$1:latest" >/dev/null
exec docker pull "$1" >/dev/null
"""
#: What a lab node's containerd starts from: Debian's shipped file (the machine's, under the overlay).
SHIPPED_CONFIG = Path("/etc/containerd/config.toml")


# The floor as a process: a bare Fabric script that connects, runs the probe once and closes.
FLOOR_SCRIPT = """import sys
from fabric import Config, ThreadingGroup
group = ThreadingGroup(*sys.argv[3:], config=Config(runtime_ssh_path=sys.argv[1]))
group.run(sys.argv[2], hide=True)
group.close()
"""


def task(inventory: Path, *args: str) -> float:
    """Seconds one in-process `invoke` run takes; fails loudly if the task failed."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            Program(namespace=ns).run(["invoke", *args, "--env", "lab", "--inventory", str(inventory)])
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"{args} failed:\n{out.getvalue()}") from None
    return time.perf_counter() - start


def group(names: list[str]) -> ThreadingGroup:
    config = Config(runtime_ssh_path=str(labhosts.state_dir() / "ssh_config"))
    return ThreadingGroup(*names, config=config)


def bench_inventory(directory: Path) -> Path:
    """The lab's inventory (nodes in its order) with the lab registry as the mirror and no pull check."""
    data = yaml.safe_load((labhosts.state_dir() / "hosts.yaml").read_text())
    lab = data["environments"]["lab"]
    lab["ssh_config"] = str(labhosts.state_dir() / "ssh_config")
    lab["vars"] = {**lab.get("vars", {}), "docker_mirrors": [MIRROR], "mirror_check_image": None}
    path = directory / "hosts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sudo_sh(script: str, *args: str) -> str:
    return shlex.join(["sudo", "-n", "sh", "-c", script, "sh", *args])


def reset(names: list[str]) -> None:
    g = group(names)
    g.run(sudo_sh(RESET, base64.b64encode(SHIPPED_CONFIG.read_bytes()).decode()), hide=True)
    g.close()


def converge_floor(names: list[str], size: int) -> float:
    """Bare Fabric doing a converge's restarts in batches of `size`: connect, then each batch in parallel."""
    config_path = '\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'
    command = sudo_sh(CONVERGE, MIRROR, base64.b64encode(SHIPPED_CONFIG.read_bytes() + config_path.encode()).decode())
    start = time.perf_counter()
    g = group(names)
    conns = dict(zip(names, g))
    for i in range(0, len(names), size):
        ThreadingGroup.from_connections([conns[n] for n in names[i:i + size]]).run(command, hide=True)
    g.close()
    return time.perf_counter() - start


def pull_floor(names: list[str]) -> float:
    """Bare Fabric pulling IMAGE on every node through its runtime's client."""
    start = time.perf_counter()
    g = group(names)
    g.run(sudo_sh(PULL, IMAGE), hide=True)
    g.close()
    return time.perf_counter() - start


def floor(names: list[str]) -> float:
    """The same probe the task runs, by a bare ThreadingGroup: connect, run once, close."""
    start = time.perf_counter()
    g = group(names)
    g.run(probe_command(), hide=True)
    g.close()
    return time.perf_counter() - start


def probe_command() -> str:
    """The node probe as the task sends it, with the inventory's default paths."""
    hosts_toml = containerd_config.hosts_path(VARS["containerd_hosts_dir"][0])
    paths = (daemon_config.PATH, VARS["containerd_config"][0], hosts_toml)
    return shlex.join(["sudo", "-n", "--", *remote.script(DOCKER_PROBE, *paths)])


def command_argv() -> list[str]:
    """The product's command: the installed `bhops`, else its Program run by this Python."""
    bhops = shutil.which("bhops", path=str(Path(sys.executable).parent))
    return [bhops] if bhops else [sys.executable, "-c", "import sys; from fabfile.cli import program; "
                                  "program.run(['bhops', *sys.argv[1:]])"]


def process(argv: list[str]) -> float:
    """Seconds a whole process takes, start-up included; fails loudly if it failed."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode:
        raise RuntimeError(f"{argv[:3]}... failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start


def processes(inventory: Path, names: list[str], runs: int) -> tuple[float, float]:
    """Median seconds of the no-op docker.mirror as a command, and of the floor's script."""
    ssh_config = str(labhosts.state_dir() / "ssh_config")
    command = [*command_argv(), "docker.mirror", "--env", "lab", "--inventory", str(inventory)]
    floor_script = [sys.executable, "-c", FLOOR_SCRIPT, ssh_config, probe_command(), *names]
    return (statistics.median(process(command) for _ in range(runs)),
            statistics.median(process(floor_script) for _ in range(runs)))


def accepted(names: list[str]) -> dict[str, int]:
    return {n: (labhosts.host_dir(n.removeprefix("lab-")) / "sshd.log").read_text().count("Accepted publickey")
            for n in names}


def median(measure: Callable[[], float], runs: int, before: Callable[[], None] = lambda: None) -> float:
    """The median seconds of `runs` measurements, each after `before()`."""
    times = []
    for _ in range(runs):
        before()
        times.append(measure())
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    rows = {}
    for count in (1, 3, 10):
        labhosts.up(nodes=count, runtime="docker")
        inventory = bench_inventory(work)
        names = [f"lab-node{i}" for i in range(1, count + 1)]
        converge = median(partial(task, inventory, "docker.mirror"), max(1, args.runs // 2), partial(reset, names))
        before = accepted(names)
        noop = [task(inventory, "docker.mirror") for _ in range(args.runs)]
        after = accepted(names)
        per_host = {(after[n] - before[n]) / args.runs for n in names}
        floors = [floor(names) for _ in range(args.runs)]
        rows[count] = (converge, statistics.median(noop), statistics.median(floors), per_host,
                       *processes(inventory, names, args.runs))
    batches = batched(work, max(1, args.runs // 2), args.runs)
    labhosts.up(nodes=3, runtime="docker")
    reset([f"lab-node{i}" for i in range(1, 4)])  # as the lab made them
    shutil.rmtree(work)
    print(f"{'nodes':>5}  {'converge s':>10}  {'no-op s':>8}  {'floor s':>8}  {'command s':>9}  "
          f"{'floor process s':>15}  connections/host/run")
    for count, (conv, noop, flo, per_host, command, floor_process) in rows.items():
        print(f"{count:>5}  {conv:>10.2f}  {noop:>8.2f}  {flo:>8.2f}  {command:>9.2f}  {floor_process:>15.2f}  "
              f"{sorted(per_host)}")
    noop1, noop10, floor10 = rows[1][1], rows[10][1], rows[10][2]
    print(f"no-op 10 / no-op 1 = {noop10 / noop1:.2f} (target <= 1.5)")
    print(f"no-op 10 / floor 10 = {noop10 / floor10:.2f} (target <= 2)")
    print(f"command 10 / floor process 10 = {rows[10][4] / rows[10][5]:.2f} (target <= 1.05)")
    print(f"\n{'10 nodes':<40}  {'task s':>7}  {'floor s':>7}  {'task/floor':>10}")
    for what, (took, floor_s) in batches.items():
        print(f"{what:<40}  {took:>7.2f}  {floor_s:>7.2f}  {took / floor_s:>10.2f}")


def batched(work: Path, converges: int, runs: int) -> dict[str, tuple[float, float]]:
    """Issue 14's figures on 10 nodes, each beside its floor: (task s, floor s) by what was measured."""
    names = [f"lab-node{i}" for i in range(1, 11)]
    figures = {}
    for runtime in ("docker", "mixed"):
        labhosts.up(nodes=10, runtime=runtime)
        inventory = bench_inventory(work)
        for size in (1, 5) if runtime == "docker" else (5,):
            figures[f"{runtime}: converge --batch {size}"] = (
                median(partial(task, inventory, "docker.mirror", "--batch", str(size)), converges,
                       partial(reset, names)),
                median(partial(converge_floor, names, size), converges, partial(reset, names)))
        task(inventory, "docker.mirror", "--batch", "10")
        figures[f"{runtime}: no-op"] = (median(partial(task, inventory, "docker.mirror"), runs),
                                       median(partial(floor, names), runs))
    status = median(partial(task, inventory, "docker.status"), runs)
    pull = median(partial(task, inventory, "docker.status", "--pull", IMAGE), runs)
    pulls = median(partial(pull_floor, names), runs)
    figures[f"mixed: status --pull {IMAGE}"] = (pull, pulls)
    figures["mixed: the pull check (minus status)"] = (pull - status, pulls)
    return figures


if __name__ == "__main__":
    main()
