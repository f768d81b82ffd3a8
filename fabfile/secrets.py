"""The chart's secrets: made once per environment, kept in a 0600 file outside git."""
from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from fabric import Connection
from invoke import Exit

from . import probes, secretfile, values
from .inventory import Host
from .results import Change, Result, Status
from .secretfile import PROVIDED, SecretsError
from .session import Run, host_task, step

STEP = "secrets"


def _ask(name: str) -> str | None:
    """The operator's value for a provided secret: its environment variable, else a prompt."""
    value = os.environ.get(PROVIDED[name])
    if value or not sys.stdin.isatty():
        return value
    return getpass.getpass(f"{name} (not echoed): ")


def deployed_secrets(conn: Connection, host: Host) -> dict[str, str]:
    """The secrets the running release was given, if there is one (they are never printed)."""
    return values.secrets_in(probes.release_state(conn, host).values)


def stage(run: Run, rotate: str | None = None) -> list[Result]:
    """Make the environment's missing chart secrets (runbook step 3): recovered from the
    deployed release where it has them, else generated or asked for; never regenerated."""
    path = run.secrets_path
    control_plane = run.control_plane()
    needed = values.needed_secrets(control_plane[0])
    try:
        missing = secretfile.missing(path, needed)
    except SecretsError as exc:
        return run.local(refuse, why=str(exc))
    read: list[Result] = []
    deployed = {}
    if missing:
        found = run.gather(control_plane, deployed_secrets, of=ensure)
        read, deployed = found.failures, found.get(control_plane[0].name, {})
        run.reporter.masked.hide(deployed.values())
    return read + run.local(ensure, path=path, needed=needed, missing=missing, deployed=deployed, rotate=rotate)


@step(STEP)
def ensure(path: Path, needed: list[str], missing: list[str], deployed: dict[str, str],
           rotate: str | None) -> Result | Change:
    """The secrets file made whole: `missing` recovered from `deployed` or made, `rotate` renewed."""
    todo = [n for n in missing if n not in deployed] + ([rotate] if rotate else [])
    found = [n for n in missing if n in deployed]
    if not todo and not found:
        return Result.ok(f"{path}: all secrets present")
    plan = [f"recover {', '.join(found)} from the release"] * bool(found) + [f"make {', '.join(todo)}"] * bool(todo)

    def write() -> Result:
        try:
            report = secretfile.ensure(path, needed, _ask, rotate=rotate, deployed=deployed)
        except SecretsError as exc:
            return Result.failed(str(exc))
        return Result("", "", Status.CHANGED if report else Status.OK,
                      f"{path}: {'; '.join(report) or 'all secrets present'}")
    return Change(f"{path}: {'; '.join(plan)}", write)


@step(STEP)
def refuse(why: str) -> Result:
    """A secrets file that cannot be used, with why."""
    return Result.failed(why)


@host_task("secrets.init", name="init",
           help={"rotate": f"make a new value for this one secret ({', '.join(secretfile.GENERATED)})"})
def init(run: Run, rotate=None):
    """Create an environment's chart secrets once; never regenerate them unless told."""
    rotate = rotate.strip() if rotate is not None else None
    if rotate == "":
        raise Exit(f"--rotate needs the name of a secret: one of {', '.join(secretfile.GENERATED)}")
    try:  # before any host is reached
        secretfile.check_rotate(run.secrets_path, rotate)
    except SecretsError as exc:
        raise Exit(str(exc)) from None
    stage(run, rotate)
