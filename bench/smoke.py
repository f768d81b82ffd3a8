"""The smoke client's own overhead on the lab: its wall time minus the time spent waiting on the
server (the stream's phases, waiting to ready, and the server checks), median of several runs.
Run as root with the lab deployed
(`invoke lab.up deploy --env lab`):

    .venv/bin/python bench/smoke.py [--runs 5]

Target (issue 5): under 0.5 s.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke import Program  # noqa: E402

from fabfile import ns  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="smoke runs to take the median of")
    runs = parser.parse_args().runs
    overheads, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        os.environ["BHOPS_SECRETS_DIR"] = tmp  # secrets.init recovers the release's own secrets
        with contextlib.redirect_stdout(io.StringIO()):
            Program(namespace=ns).run(["invoke", "secrets.init", "--env", "lab"])
        for i in range(runs):
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:  # a new repository each run, so that every run builds
                    Program(namespace=ns).run(["invoke", "smoke", "--env", "lab", "--repo",
                                               f"gh/bench/smoke-{time.time_ns()}-{i}/HEAD", "--report", str(report)])
                except SystemExit as exc:
                    if exc.code:
                        raise RuntimeError(f"smoke failed:\n{out.getvalue()}") from None
            wall = time.perf_counter() - start
            data = json.loads(report.read_text())
            server = sum(p["duration"] for p in data["phases"]) + data["checks_seconds"]
            walls.append(wall)
            overheads.append(wall - server)
    print(f"smoke wall time: median {statistics.median(walls):.2f} s")
    print(f"client overhead (wall - server phases and checks): median {statistics.median(overheads):.2f} s "
          f"(min {min(overheads):.2f}, max {max(overheads):.2f}; target < 0.5 s)")


if __name__ == "__main__":
    main()
