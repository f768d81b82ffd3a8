"""helm.upgrade on the lab with each real chart: median wall time when it installs, when it is a
no-op, and when a value changes and it upgrades; then the upgrade from the runbook's pinned chart
to the current one. Run as root with the lab up (`invoke lab.up`):

    .venv/bin/python bench/cluster.py [--runs 5]

Target (issues 3 and 12): the no-op costs no more than its probes, under a third of the install.
The no-op is timed once the install has rolled out (`cluster.wait`), as an operator re-runs it
after a deploy: the lab's two CPUs are otherwise busy starting the release's pods.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402
from invoke import Program  # noqa: E402

from fabfile import ns  # noqa: E402
from lab import hosts as labhosts  # noqa: E402


def task(*args: str) -> float:
    """Seconds one in-process `invoke` run takes; fails loudly if the task failed."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            Program(namespace=ns).run(["invoke", *args])
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"{args} failed:\n{out.getvalue()}") from None
    return time.perf_counter() - start


PINNED, CURRENT = "0.2.0-n600.h36369a7", "1.0.0-0.dev.git.2227.hb9fad995"


def inventory(directory: Path, prefix: str, chart: str) -> str:
    data = yaml.safe_load((labhosts.state_dir() / "hosts.yaml").read_text())
    lab = data["environments"]["lab"]
    lab["ssh_config"] = str(labhosts.state_dir() / "ssh_config")
    lab["vars"].update(image_prefix=prefix, chart_version=chart)
    path = directory / f"{chart}-{prefix.strip('/').replace('/', '-')}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def uninstall() -> None:
    subprocess.run(["ssh", "-F", str(labhosts.state_dir() / "ssh_config"), "lab-node1",
                    "helm uninstall binder -n binder --wait >/dev/null 2>&1; kubectl create namespace binder "
                    ">/dev/null 2>&1; true"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    runs = parser.parse_args().runs
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BHOPS_SECRETS_DIR"] = tmp
        for chart in (PINNED, CURRENT):
            first, second = inventory(Path(tmp), "lab/a-", chart), inventory(Path(tmp), "lab/b-", chart)
            task("secrets.init", "--env", "lab", "--inventory", first)
            install, noop, upgrade = [], [], []
            for _ in range(runs):
                uninstall()
                install.append(task("helm.upgrade", "--env", "lab", "--inventory", first))
                task("cluster.wait", "--env", "lab", "--inventory", first)  # as deploy does before any re-run
                noop.append(task("helm.upgrade", "--env", "lab", "--inventory", first))
                upgrade.append(task("helm.upgrade", "--env", "lab", "--inventory", second))
            rows.update({f"{chart} install": install, f"{chart} no-op": noop, f"{chart} upgrade": upgrade})
        across = []
        for _ in range(runs):
            uninstall()
            task("helm.upgrade", "--env", "lab", "--inventory", inventory(Path(tmp), "lab/a-", PINNED))
            across.append(task("helm.upgrade", "--env", "lab", "--inventory", inventory(Path(tmp), "lab/a-", CURRENT)))
        rows["pinned -> current"] = across
    for name, times in rows.items():
        print(f"{name:>40}: median {statistics.median(times):.2f} s  (min {min(times):.2f}, max {max(times):.2f})")
    for chart in (PINNED, CURRENT):
        ratio = statistics.median(rows[f"{chart} no-op"]) / statistics.median(rows[f"{chart} install"])
        print(f"{chart}: no-op / install = {ratio:.2f} (target < 0.33)")

if __name__ == "__main__":
    main()
