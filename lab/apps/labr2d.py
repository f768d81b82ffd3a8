"""The lab's repo2docker, as BinderHub's build pod runs it: `python -m lab.apps.labr2d ARGS...`, ARGS
the pod's args (KubernetesBuildExecutor.get_cmd(): `jupyter-repo2docker --ref=REF --image=NAME
--no-clean --no-run --json-logs --user-name=jovyan --user-id=1000 [--appendix A] [--push] REPO_URL`),
with DOCKER_HOST=unix://<the node's socket the pod mounts> and OUTCOME_ENV (set by lab.apps.labbuild).

What repo2docker 2024.07 does (repo2docker/app.py), in its order:
- Its command line: unknown options are refused as its argparse refuses them (exit 2).
- The container engine first: when `docker version` cannot reach $DOCKER_HOST (socket missing,
  daemon down), its error line "Container engine initialization error: ..." (no phase), exit 1.
- Its log lines, one JSON object a line with --json-logs (python-json-logger: `message`, `phase`),
  else the bare messages: `fetching` (stand-in: the repository is not cloned, the lab has no
  forge), then `building`: the output of a real `docker build` (legacy builder) through $DOCKER_HOST
  of an image FROM scratch holding one small file (the repository and ref), tagged NAME. Stand-in:
  that is the whole image (no build pack: --appendix, --user-name, --user-id are taken, not
  applied); the lab's kubelet runs it with the lab's own Jupyter.
  When docker build fails, its error as a `failed` line, then the "Error during build" line its
  excepthook logs, exit 1. With --push, a `pushing` line and no push (the lab's BinderHub has no
  registry for builds: upstream's FakeRegistry).
OUTCOME_ENV `fail` (the lab's scripted failure): after the first lines, a pip install that fails,
as repo2docker reports docker's error, exit 1; `stall`: the first lines, then nothing until killed.
Lab measure: after `failed` lines it exits LINGER s later. A kubelet reports a container's exit at
its next relist (PLEG, every 1 s), long after the log follower has sent the last lines; the lab's
node agent can be quicker, and BinderHub would then send the pod's `failed` status (no message)
before repo2docker's `failed` line, which says why.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

OUTCOME_ENV = "LAB_BUILD_OUTCOME"  # succeed (default), fail, stall
OUTCOMES = ("succeed", "fail", "stall")
_PIP_INSTALL = '${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "requirements.txt"'
_PIP_FAILED = f"The command '/bin/sh -c {_PIP_INSTALL}' returned a non-zero code: 1"
# The lines a scripted (fail, stall) build sends after fetching: repo2docker's PythonBuildPack.
SCRIPTED = ("Using PythonBuildPack builder\n", "Step 1/3 : FROM buildpack-deps:jammy\n",
            "Step 2/3 : COPY --chown=1000:1000 src/ ${REPO_DIR}/\n")
FAILING = (f"Step 3/3 : RUN {_PIP_INSTALL}\n",  # then the `failed` lines of _PIP_FAILED
           "ERROR: Could not find a version that satisfies the requirement lab-build-fails\n")
LINGER = 0.3  # seconds between the `failed` lines and the exit (module docstring)
DOCKERFILE = "FROM scratch\nCOPY repo2docker-source /repo2docker-source\n"


def parser() -> argparse.ArgumentParser:
    """repo2docker's options that BinderHub passes (repo2docker/__main__.py names them so)."""
    p = argparse.ArgumentParser(prog="jupyter-repo2docker")
    p.add_argument("--ref")
    p.add_argument("--image-name", default="")
    p.add_argument("--no-clean", action="store_true")
    p.add_argument("--no-run", action="store_true")
    p.add_argument("--json-logs", action="store_true")
    p.add_argument("--user-name")
    p.add_argument("--user-id", type=int)
    p.add_argument("--appendix")
    p.add_argument("--push", action="store_true")
    p.add_argument("repo")
    return p


class Log:
    """repo2docker's log: a JSON object a line (--json-logs) or the bare message."""

    def __init__(self, json_logs: bool):
        self.json_logs = json_logs

    def __call__(self, message: str, phase: str | None = None) -> None:
        if self.json_logs:
            line = json.dumps({"message": message, **({"phase": phase} if phase else {})})
        else:
            line = message.rstrip("\n")
        print(line, flush=True)


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess | subprocess.Popen:
    """The docker CLI with $DOCKER_HOST, legacy builder."""
    argv = [shutil.which("docker") or "/usr/bin/docker", *args]
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    if kwargs.pop("stream", False):
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    return subprocess.run(argv, env=env, capture_output=True, text=True, **kwargs)


def engine_error() -> str | None:
    """Why the container engine at $DOCKER_HOST cannot be used, else None."""
    try:
        found = docker("version", "--format", "{{.Server.APIVersion}}", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if found.returncode == 0 else (found.stderr.strip() or found.stdout.strip())


def fetch(log: Log, ref: str) -> None:
    log("Picked Git content provider.\n", "fetching")
    log(f"Cloning into '/tmp/repo2docker{secrets.token_hex(4)}'...\n", "fetching")
    log(f"HEAD is now at {ref[:7]}\n", "fetching")


def build(log: Log, args: argparse.Namespace) -> int:
    """`docker build` of the tiny image, its output as building lines; repo2docker's exit code."""
    log("Lab build: the lab's repo2docker (lab.apps.labr2d) builds the repository as a tiny image FROM "
        "scratch; the lab's kubelet runs it with the lab's own Jupyter.\n", "building")
    with tempfile.TemporaryDirectory(prefix="repo2docker") as context:
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        with open(os.path.join(context, "repo2docker-source"), "w") as f:
            f.write(f"{args.repo}@{args.ref}\n")
        proc = docker("build", "--tag", args.image_name, context, stream=True)
        last = ""
        for line in proc.stdout:
            if line.strip():
                last = line.strip()
                if not last.startswith("DEPRECATED:"):  # a newer CLI's note on the legacy builder
                    log(line, "building")
        if proc.wait() != 0:
            return failed(log, last)
    if args.push:
        log(f"Lab build: {args.image_name} not pushed (the lab's builds have no registry)\n", "pushing")
    return 0


def failed(log: Log, error: str) -> int:
    """repo2docker's end on a build error: the error (phase failed), then its excepthook's line; exit 1."""
    log(error, "failed")
    log(f"Error during build: {error}", "failed")
    time.sleep(LINGER)
    return 1


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and os.path.basename(words[0]) == "jupyter-repo2docker":
        words = words[1:]  # the container's args start with the command
    args = parser().parse_args(words)
    outcome = os.environ.get(OUTCOME_ENV) or "succeed"
    if outcome not in OUTCOMES:
        print(f"labr2d: {OUTCOME_ENV}={outcome!r}: expected one of {', '.join(OUTCOMES)}", file=sys.stderr)
        return 2
    log = Log(args.json_logs)
    if (error := engine_error()) is not None:
        log(f"\nContainer engine initialization error: ('Check if docker is running on the host.', {error!r})\n")
        return 1
    fetch(log, args.ref or "HEAD")
    if outcome == "succeed":
        return build(log, args)
    for message in SCRIPTED:
        log(message, "building")
    if outcome == "stall":
        while True:
            time.sleep(3600)  # until the pod is deleted
    for message in FAILING:
        log(message, "building")
    return failed(log, _PIP_FAILED)


if __name__ == "__main__":
    sys.exit(main())
