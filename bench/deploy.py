"""`deploy` on the lab with 3 and 10 nodes: the full deploy from fresh nodes, the no-op
re-deploy (everything converged), and SSH connections opened per host per run. As root:

    .venv/bin/python bench/deploy.py [--runs 3] [--skip-smoke]

Targets (issue 6): the no-op re-deploy on 10 nodes within 1.5x the one on 3 nodes; one
connection per host per run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fabric import Config, ThreadingGroup  # noqa: E402
from invoke import Program  # noqa: E402

from fabfile import ns  # noqa: E402
from lab import hosts as labhosts  # noqa: E402

FRESH = ("printf '%s\\n' '{\"log-driver\": \"json-file\"}' > /etc/docker/daemon.json; "
         "service docker stop >/dev/null 2>&1; service docker start >/dev/null")


def deploy(inventory: Path, *extra: str) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            Program(namespace=ns).run(["invoke", "deploy", "--env", "lab", "--inventory", str(inventory), *extra])
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"deploy failed:\n{out.getvalue()}") from None
    return time.perf_counter() - start


def accepted() -> dict[str, int]:
    return {p.parent.name: p.read_text().count("Accepted publickey")
            for p in (labhosts.hosts_dir() / "hosts").glob("*/sshd.log")}


def fresh_nodes(names: list[str]) -> None:
    """Nodes back to a daemon.json without the mirror, and no release."""
    group = ThreadingGroup(*names, config=Config(runtime_ssh_path=str(labhosts.state_dir() / "ssh_config")))
    group.run("sudo -n sh -c " + shlex.quote(FRESH), hide=True)
    group[0].run("helm uninstall binder -n binder --wait >/dev/null 2>&1; true", hide=True)
    group.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the no-op re-deploy")
    parser.add_argument("--skip-smoke", action="store_true", help="leave the smoke stage out")
    args = parser.parse_args()
    extra = ["--skip-smoke"] if args.skip_smoke else []
    rows = {}
    with tempfile.TemporaryDirectory() as secrets:
        os.environ["BHOPS_SECRETS_DIR"] = secrets
        for count in (3, 10):
            labhosts.up(nodes=count)
            inventory = labhosts.state_dir() / "hosts.yaml"
            fresh_nodes([f"lab-node{i}" for i in range(1, count + 1)])
            full = deploy(inventory, *extra)
            before = accepted()
            noop = [deploy(inventory, *extra) for _ in range(args.runs)]
            after = accepted()
            per_host = sorted({(after[h] - before.get(h, 0)) / args.runs for h in after})
            rows[count] = (full, statistics.median(noop), per_host)
    labhosts.up(nodes=3)
    print(f"{'nodes':>5}  {'full deploy s':>13}  {'no-op s':>8}  connections/host/run")
    for count, (full, noop, per_host) in rows.items():
        print(f"{count:>5}  {full:>13.2f}  {noop:>8.2f}  {per_host}")
    print(f"no-op 10 / no-op 3 = {rows[10][1] / rows[3][1]:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
