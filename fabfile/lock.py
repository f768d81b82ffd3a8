"""The deploy lock: a ConfigMap in the cluster saying who deploys the environment, until when."""
from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from fabric import Connection

from . import kube, probes, remote
from .inventory import Host
from .remote import RemoteError
from .results import Result, succeeded
from .session import Run, step

NAME = "binderhub-ops-deploy-lock"
STEP = "deploy.lock"
NAMESPACE = "kube-system"
TTL = 3600  # seconds a lock holds before it is stale


class LockError(Exception):
    """Someone else holds the lock; the message says who and what to do."""


@dataclass(frozen=True)
class Holder:
    owner: str
    env: str
    started: float
    expires: float
    token: str

    def describe(self, now: float) -> str:
        age = (now - self.started) / 60
        state = f"expired {(now - self.expires) / 60:.0f} min ago" if now > self.expires else \
            f"expires in {(self.expires - now) / 60:.0f} min"
        return f"{self.owner}, deploying {self.env} since {age:.0f} min ago ({state})"


def _holder(conn: Connection, host: Host) -> Holder | None:
    got = kube.run(conn, host, kube.kubectl(host, "get", "configmap", NAME, "-n", NAMESPACE, "-o", "json"), check=False)
    if got.failed:
        if "NotFound" in got.stderr:
            return None
        raise RemoteError(f"cannot read the deploy lock: {got.stderr.strip()}")
    data = json.loads(got.stdout).get("data") or {}
    return Holder(data.get("owner", "?"), data.get("env", "?"), float(data.get("started", 0)),
                  float(data.get("expires", 0)), data.get("token", ""))


def _create(conn: Connection, host: Host, env: str, now: float, token: str) -> bool:
    """Create the lock's ConfigMap (atomic); False when it exists already."""
    owner = f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"
    made = kube.run(conn, host, kube.kubectl(
        host, "create", "configmap", NAME, "-n", NAMESPACE, f"--from-literal=owner={owner}",
        f"--from-literal=env={env}", f"--from-literal=started={now:.0f}", f"--from-literal=expires={now + TTL:.0f}",
        f"--from-literal=token={token}"), check=False)
    if made.failed and not re.search(r"already ?exists", made.stderr, re.IGNORECASE):
        raise RemoteError(f"cannot take the deploy lock: {made.stderr.strip()}")
    return made.ok


def acquire(conn: Connection, host: Host, env: str, break_lock: bool) -> tuple[str, str]:
    """Take the lock: create it, and only when it exists read who holds it (and with
    `break_lock`, take it over); return its token and what happened."""
    now, token = time.time(), uuid.uuid4().hex
    if _create(conn, host, env, now, token):
        return token, "took the deploy lock"
    holder = _holder(conn, host)
    note = "took the deploy lock"
    if holder:
        if not break_lock:
            stale = "stale " if now > holder.expires else ""
            raise LockError(f"{stale}deploy lock held by {holder.describe(now)}; "
                            + ("pass --break-lock to take it over" if stale else
                               "wait for that deploy to end, or pass --break-lock if you know it is dead"))
        kube.run(conn, host, kube.kubectl(host, "delete", "configmap", NAME, "-n", NAMESPACE, "--ignore-not-found"))
        note = f"broke the deploy lock of {holder.describe(now)}"
    if not _create(conn, host, env, now, token):
        raise LockError("another deploy took the lock a moment ago; try again")
    return token, note


#: Delete the lock if it holds our token ($1), in one round trip; "$@" is then the kubectl argv.
_RELEASE = f"""token=$1; shift
err=$(mktemp) || exit 1
trap 'rm -- "$err"' EXIT
if ! held=$("$@" get configmap {NAME} -n {NAMESPACE} -o jsonpath='{{.data.token}}' 2>"$err"); then
    grep -q NotFound "$err" && exit 0
    cat "$err" >&2; exit 1
fi
[ "$held" = "$token" ] || exit 0
"$@" delete configmap {NAME} -n {NAMESPACE} --ignore-not-found
"""


def release(conn: Connection, host: Host, token: str) -> None:
    """Give the lock back, if it is still ours."""
    kube.run(conn, host, remote.script(_RELEASE, token, *kube.kubectl(host)))


def peek(conn: Connection, host: Host) -> str:
    """Who holds the lock, for a dry run."""
    holder = _holder(conn, host)
    return f"deploy lock held by {holder.describe(time.time())}" if holder else "deploy lock is free"


@step(STEP)
def take(conn: Connection, host: Host, env: str, break_lock: bool, tokens: dict[str, str]) -> Result:
    """Take the lock, keeping its token in `tokens`."""
    try:
        tokens[host.name], note = acquire(conn, host, env, break_lock)
    except LockError as exc:
        return Result.failed(str(exc))
    except RemoteError:
        probes.namespace_exists(conn, host)  # a missing tool or an unreachable cluster: that, with its fix
        raise
    return Result.ok(note)


@step(STEP)
def show(conn: Connection, host: Host) -> Result:
    """Who holds the lock (a dry run takes none)."""
    return Result.ok(peek(conn, host))


@step(STEP)
def give_back(conn: Connection, host: Host, tokens: dict[str, str]) -> Result:
    """Give the lock back, if it is still ours."""
    release(conn, host, tokens[host.name])
    return Result.ok("gave the deploy lock back")


@dataclass
class Hold:
    """Whether the body holds the lock, and the results of taking and giving it back."""

    held: bool
    results: list[Result]


@contextmanager
def held(run: Run, break_lock: bool = False) -> Iterator[Hold]:
    """Hold the deploy lock on the control plane around the body, which is told whether it
    holds it (a dry run only shows who does, and goes on). Taking and giving it back are
    `deploy.lock` results; it is given back however the body ends."""
    tokens: dict[str, str] = {}
    control_plane = run.control_plane()
    hold = Hold(False, run.each(control_plane, show) if run.dry_run else
                run.each(control_plane, take, env=run.env.name, break_lock=break_lock, tokens=tokens))
    hold.held = succeeded(hold.results)
    try:
        yield hold
    finally:
        if tokens:
            returned = run.each(control_plane, give_back, tokens=tokens)
            hold.results += returned
            if not succeeded(returned):
                run.reporter.write(f"the deploy lock stays until it expires ({TTL // 60} min); "
                                   "or the next deploy takes it over with --break-lock")
