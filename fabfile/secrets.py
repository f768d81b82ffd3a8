"""The chart's secrets: made once per environment, kept in a 0600 file outside git."""
from __future__ import annotations

import getpass
import os
import sys

from invoke import Exit, task

from . import secretfile, values
from .inventory import InventoryError, load
from .secretfile import PROVIDED, SecretsError


def _ask(name: str) -> str | None:
    """The operator's value for a provided secret: its environment variable, else a prompt."""
    value = os.environ.get(PROVIDED[name])
    if value or not sys.stdin.isatty():
        return value
    return getpass.getpass(f"{name} (not echoed): ")


@task(help={
    "env": "environment in hosts.yaml whose secrets to make",
    "rotate": f"make a new value for this one secret ({', '.join(secretfile.GENERATED)})",
    "inventory": "inventory file (default: hosts.yaml beside tasks.py, or $BHOPS_INVENTORY)",
})
def init(c, env=None, rotate=None, inventory=None):
    """Create the chart secrets of an environment once; never regenerate them unless told."""
    try:
        host = load(env or "", inventory).with_role("control-plane")[0]
        path = secretfile.path_for(env)
        for line in secretfile.ensure(path, values.needed_secrets(host), _ask, rotate=rotate):
            print(f"secrets | {path} | {line}")
    except (InventoryError, SecretsError) as exc:
        raise Exit(str(exc)) from None
