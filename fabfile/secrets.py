"""The chart's secrets: made once per environment, kept in a 0600 file outside git."""
from __future__ import annotations

import getpass
import os
import sys

from fabric import Connection
from invoke import Exit

from . import probes, secretfile, values
from .inventory import Host
from .results import Result, Status
from .secretfile import PROVIDED, SecretsError
from .session import Run, host_task

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
        deployed = {}
        if secretfile.missing(path, needed):
            deployed = run.gather(control_plane, STEP, deployed_secrets).get(control_plane[0].name, {})
            run.reporter.hide(deployed.values())
        if run.dry_run:
            todo = [n for n in secretfile.missing(path, needed) if n not in deployed] + ([rotate] if rotate else [])
            found = [n for n in secretfile.missing(path, needed) if n in deployed]
            plan = [f"recover {', '.join(found)} from the release"] * bool(found) + \
                [f"make {', '.join(todo)}"] * bool(todo)
            return [run.reporter.emit(Result("local", STEP, Status.CHANGED if plan else Status.OK,
                                             f"{path}: {'; '.join(plan) or 'all secrets present'}"))]
        report = secretfile.ensure(path, needed, _ask, rotate=rotate, deployed=deployed)
    except SecretsError as exc:
        return [run.reporter.emit(Result("local", STEP, Status.FAILED, str(exc)))]
    return [run.reporter.emit(Result("local", STEP, Status.CHANGED if report else Status.OK,
                                     f"{path}: {'; '.join(report) or 'all secrets present'}"))]


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
