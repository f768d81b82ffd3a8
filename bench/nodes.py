"""docker.mirror on 1, 3 and 10 lab nodes: converging, the no-op re-run, SSH connections per host
per run, and a bare Fabric ThreadingGroup doing the same probe as the floor; then the no-op as a
whole command process beside the floor as a process of its own (start-up included). Run as root:

    .venv/bin/python bench/nodes.py [--runs 5]

Targets (issue 2): the no-op on 10 nodes within 1.5x the no-op on 1 node and within 2x the
floor; exactly one SSH connection per host per run. (Issue 11): the command's process within
1.05x the floor's process on 10 nodes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabric import Config, ThreadingGroup  # noqa: E402
from invoke import Program  # noqa: E402

from fabfile import daemon_config, ns, remote  # noqa: E402
from fabfile.probes import DOCKER_PROBE  # noqa: E402
from lab import hosts as labhosts  # noqa: E402

RESET = ("printf '%s\\n' '{\"log-driver\": \"json-file\"}' > /etc/docker/daemon.json; "
         "service docker stop >/dev/null 2>&1; service docker start >/dev/null; "
         "for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1")


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


def reset(names: list[str]) -> None:
    g = group(names)
    g.run("sudo -n sh -c " + shlex.quote(RESET), hide=True)
    g.close()


def floor(names: list[str]) -> float:
    """The same probe the task runs, by a bare ThreadingGroup: connect, run once, close."""
    start = time.perf_counter()
    g = group(names)
    g.run(probe_command(), hide=True)
    g.close()
    return time.perf_counter() - start


def probe_command() -> str:
    return shlex.join(["sudo", "-n", "--", *remote.script(DOCKER_PROBE, daemon_config.PATH)])


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    args = parser.parse_args()
    rows = {}
    for count in (1, 3, 10):
        labhosts.up(nodes=count)
        inventory = labhosts.state_dir() / "hosts.yaml"
        names = [f"lab-node{i}" for i in range(1, count + 1)]
        converge = []
        for _ in range(max(1, args.runs // 2)):
            reset(names)
            converge.append(task(inventory, "docker.mirror"))
        before = accepted(names)
        noop = [task(inventory, "docker.mirror") for _ in range(args.runs)]
        after = accepted(names)
        per_host = {(after[n] - before[n]) / args.runs for n in names}
        floors = [floor(names) for _ in range(args.runs)]
        rows[count] = (statistics.median(converge), statistics.median(noop), statistics.median(floors), per_host,
                       *processes(inventory, names, args.runs))
    labhosts.up(nodes=3)
    print(f"{'nodes':>5}  {'converge s':>10}  {'no-op s':>8}  {'floor s':>8}  {'command s':>9}  "
          f"{'floor process s':>15}  connections/host/run")
    for count, (conv, noop, flo, per_host, command, floor_process) in rows.items():
        print(f"{count:>5}  {conv:>10.2f}  {noop:>8.2f}  {flo:>8.2f}  {command:>9.2f}  {floor_process:>15.2f}  "
              f"{sorted(per_host)}")
    noop1, noop10, floor10 = rows[1][1], rows[10][1], rows[10][2]
    print(f"no-op 10 / no-op 1 = {noop10 / noop1:.2f} (target <= 1.5)")
    print(f"no-op 10 / floor 10 = {noop10 / floor10:.2f} (target <= 2)")
    print(f"command 10 / floor process 10 = {rows[10][4] / rows[10][5]:.2f} (target <= 1.05)")


if __name__ == "__main__":
    main()
