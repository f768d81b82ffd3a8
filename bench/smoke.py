"""smoke on the lab's real BinderHub: its time to `ready` and the client's own overhead, beside
a bare `curl -N` of the same stream in the same run. Run as root with the lab deployed
(`invoke lab.up deploy --env lab`):

    .venv/bin/python bench/smoke.py [--runs 5]

A first, unmeasured smoke builds a new repository; then each round requests that same repository
with `curl -N` and with `bhops smoke` (the command an operator runs, interpreter start-up
included), in alternating order, so that both get the same stream: the built image launched
(`built`, `launching`, `ready`). Medians over the rounds:

- time to ready: from sending the request to the `ready` event (curl: when its output shows it;
  smoke: its report's `ready_seconds`). curl's is the floor; smoke's minus curl's is what reading
  the stream costs smoke, within the spread of two launches (each request launches a server).
- client overhead: smoke's wall time minus its time to ready and minus the server checks and the
  stop (`checks_seconds`: a kernel round trip and the wait for the hub to drop the server, which
  curl does not do): the interpreter's start-up, the inventory, the secrets, the reports.
  Target (issues 5 and 13): under 0.5 s.

The servers curl launched are stopped through their own API with the ready event's token. The lab
must run with authentication off (its default deploy): with it on, every launch is the same user's
and a second one meets 409 until the hub drops the first. The lab's rate limit
(config.RateLimiter.limit) must allow 1 + 2 x runs requests an hour.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invoke import Program  # noqa: E402

from fabfile import inventory, ns, smoke, values  # noqa: E402
from fabfile.eventstream import Event, events, lines  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BHOPS = Path(sys.executable).parent / "bhops"


class Round(NamedTuple):
    curl_ready: float     # s from starting curl to the ready event in its output
    smoke_ready: float    # s from smoke's request to the ready event (its report)
    smoke_wall: float     # s the whole `bhops smoke` process took
    smoke_checks: float   # s smoke spent on the server checks and the stop

    @property
    def overhead(self) -> float:
        return self.smoke_wall - self.smoke_ready - self.smoke_checks


def until_ready(stdout: IO[bytes], start: float) -> tuple[float, Event]:
    """Seconds after `start` when the stream on `stdout` gave `ready`, and that event; an error
    when it failed or ended first."""
    for event in events(lines(iter(stdout.readline, b""))):
        if event and event.phase == "ready":
            return time.perf_counter() - start, event
        if event and event.failed:
            raise RuntimeError(f"curl's stream failed ({event.data.get('status_code')}): {event.message.strip()}")
    raise RuntimeError("curl's stream ended without ready")


def curl(url: str) -> tuple[float, Event]:
    """`curl -N` of the build stream until `ready` (then curl is stopped: BinderHub keeps the
    stream open 60 s more)."""
    argv = ["curl", "-sS", "-N", "-H", "Accept: text/event-stream", url]
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        return until_ready(process.stdout, start)
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


def stop_curls_server(ready: Event) -> None:
    import requests

    check = smoke.stop_through_server(requests.Session(), ready.data["url"].rstrip("/") + "/", ready.data["token"])
    if not check.ok:
        raise RuntimeError(f"the server curl launched did not stop: {check.detail}")


def run_smoke(repo: str, report: Path, env: dict[str, str]) -> tuple[float, dict]:
    argv = [str(BHOPS), "smoke", "--env", "lab", "--inventory", str(REPO / "hosts.yaml"), "--repo", repo,
            "--report", str(report)]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"smoke failed:\n{done.stdout}{done.stderr}")
    return wall, json.loads(report.read_text())


def summary(rounds: list[Round]) -> str:
    def figures(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"
    curl_ready, smoke_ready = ([r.curl_ready for r in rounds], [r.smoke_ready for r in rounds])
    overhead = [r.overhead for r in rounds]
    return "\n".join([
        f"time to ready, curl -N (the floor): {figures(curl_ready)}",
        f"time to ready, smoke:               {figures(smoke_ready)}; smoke - curl: "
        f"{statistics.median(smoke_ready) - statistics.median(curl_ready):+.2f} s (medians)",
        f"smoke wall time:                    {figures([r.smoke_wall for r in rounds])}, of which server checks "
        f"and stop {statistics.median(r.smoke_checks for r in rounds):.2f} s",
        f"client overhead (smoke wall - its time to ready - server checks and stop): {figures(overhead)}; "
        f"target < 0.5 s: {'met' if statistics.median(overhead) < 0.5 else 'NOT met'}",
        f"({len(rounds)} rounds, the same stream each time: a launch of an image already built)",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (curl and smoke each) to take the median of")
    runs = parser.parse_args().runs
    host = inventory.load("lab", REPO / "hosts.yaml").with_role("control-plane")[0]
    if host.vars["auth"]:
        sys.exit("the lab's BinderHub has authentication on: deploy it with authentication off (invoke deploy "
                 "--env lab) to bench smoke")
    inventory_path = str(REPO / "hosts.yaml")
    repo = f"gh/bench/smoke-{time.time_ns()}/HEAD"  # new: the first request builds it
    url = f"{values.binder_url(host)}build/{repo}"
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BHOPS_SECRETS_DIR": tmp, "BHOPS_LOGS_DIR": tmp}
        env.pop(smoke.TOKEN_ENV, None)  # it would turn authentication on
        os.environ.update(BHOPS_SECRETS_DIR=tmp)  # secrets.init recovers the release's own secrets
        with contextlib.redirect_stdout(io.StringIO()):
            Program(namespace=ns).run(["invoke", "secrets.init", "--env", "lab", "--inventory", inventory_path])
        report = Path(tmp) / "report.json"
        run_smoke(repo, report, env)  # builds the image
        for i in range(runs):
            if i % 2 == 0:
                curl_ready, ready = curl(url)
                wall, data = run_smoke(repo, report, env)
            else:
                wall, data = run_smoke(repo, report, env)
                curl_ready, ready = curl(url)
            stop_curls_server(ready)
            rounds.append(Round(curl_ready, data["ready_seconds"], wall, data["checks_seconds"]))
    print(summary(rounds))


if __name__ == "__main__":
    main()
