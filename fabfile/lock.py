"""The deploy lock: a ConfigMap in the cluster saying who deploys the environment, until when."""
from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
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
                  float(data.get("expires", 0)))


def _create(conn: Connection, host: Host, env: str, now: float) -> str | None:
    """Create the lock's ConfigMap (atomic); its uid, or None when it exists already."""
    owner = f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"
    made = kube.run(conn, host, kube.kubectl(
        host, "create", "configmap", NAME, "-n", NAMESPACE, f"--from-literal=owner={owner}",
        f"--from-literal=env={env}", f"--from-literal=started={now:.0f}", f"--from-literal=expires={now + TTL:.0f}",
        "--output", "jsonpath={.metadata.uid}"), check=False)
    if made.failed and not re.search(r"already ?exists", made.stderr, re.IGNORECASE):
        raise RemoteError(f"cannot take the deploy lock: {made.stderr.strip()}")
    return made.stdout.strip() if made.ok else None


def acquire(conn: Connection, host: Host, env: str, break_lock: bool) -> tuple[str, str]:
    """Take the lock: create it, and only when it exists read who holds it (and with
    `break_lock`, take it over); return its uid and what happened."""
    now = time.time()
    uid = _create(conn, host, env, now)
    if uid:
        return uid, "took the deploy lock"
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
    uid = _create(conn, host, env, now)
    if not uid:
        raise LockError("another deploy took the lock a moment ago; try again")
    return uid, note


def release(conn: Connection, host: Host, uid: str) -> None:
    """Give the lock back if it is still ours: one DELETE with a uid precondition, so a lock
    broken and taken by another deploy meanwhile (another uid) or already gone is left alone."""
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"
    got = kube.run(conn, host, kube.kubectl(host, "delete", "--raw", path, "--filename", "-"),
                   stdin=json.dumps(options), check=False)
    if got.failed and not re.search(r"NotFound|Precondition failed", got.stderr):
        raise RemoteError(f"cannot give the deploy lock back: {remote.tail(got.stderr)}")


def peek(conn: Connection, host: Host) -> str:
    """Who holds the lock, for a dry run."""
    holder = _holder(conn, host)
    return f"deploy lock held by {holder.describe(time.time())}" if holder else "deploy lock is free"


@step(STEP)
def take(conn: Connection, host: Host, env: str, break_lock: bool, uids: dict[str, str]) -> Result:
    """Take the lock, keeping its uid in `uids`."""
    try:
        uids[host.name], note = acquire(conn, host, env, break_lock)
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
def give_back(conn: Connection, host: Host, uids: dict[str, str]) -> Result:
    """Give the lock back, if it is still ours."""
    release(conn, host, uids[host.name])
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
    uids: dict[str, str] = {}
    control_plane = run.control_plane()
    hold = Hold(False, run.each(control_plane, show) if run.dry_run else
                run.each(control_plane, take, env=run.env.name, break_lock=break_lock, uids=uids))
    hold.held = succeeded(hold.results)
    try:
        yield hold
    finally:
        if uids:
            returned = run.each(control_plane, give_back, uids=uids)
            hold.results += returned
            if not succeeded(returned):
                run.reporter.write(f"the deploy lock stays until it expires ({TTL // 60} min); "
                                   "or the next deploy takes it over with --break-lock")
