"""The per-environment secrets file: made once, mode 0600, outside git, never printed.

`<env>.yaml` in the secrets directory (setting `secrets_dir`: `secrets/` beside the inventory,
or `$BHOPS_SECRETS_DIR`) holds the chart's secrets.
Values are wrapped in `Secret`, whose repr and str never show them.
"""
from __future__ import annotations

import os
import secrets as token
import stat
from pathlib import Path
from typing import Callable, Iterable, Mapping

import yaml

from . import localfiles, settings
from .results import MASK

#: Made here like the runbook's `openssl rand -hex 32`, and what rotating each one breaks.
GENERATED = {
    "binder_api_token": "BinderHub's token at the hub (jupyterhub.hub.services.binder.apiToken): "
                        "launches fail until helm.upgrade has rolled both binder and hub",
    "proxy_secret_token": "the hub's token at the proxy (jupyterhub.proxy.secretToken): hub and "
                          "proxy restart on the next helm.upgrade; users' open sessions drop briefly",
}
#: Given by the operator, from these environment variables or a prompt.
PROVIDED = {name: settings.SECRET_ENV[name] for name in ("registry_password", "oauth_client_secret")}
#: Put in the file by the operator if wanted; never asked for.
OPTIONAL = {
    "smoke_hub_token": "the JupyterHub API token `smoke` sends when authentication is on ($BHOPS_HUB_TOKEN wins)",
}


class SecretsError(Exception):
    """The secrets file cannot be used; the message says how to fix it."""


class Secret:
    """A secret value that does not show itself; `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def path_for(env: str, secrets_dir: Path) -> Path:
    """Where environment `env` keeps its secrets in `secrets_dir` (a run's `settings.secrets_dir`)."""
    return secrets_dir / f"{env}.yaml"


def load(path: Path) -> dict[str, Secret]:
    """The secrets in `path`; refuses a file others can read or one that does not parse."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretsError(f"{path} does not exist; create it with `{settings.command()} secrets.init --env "
                           f"{path.stem}`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(f"{path} is open to other users (mode {stat.S_IMODE(mode):o}); "
                           f"run `chmod 600 {path}`, and rotate its secrets if others could read them")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SecretsError(f"{path} is not valid YAML{where}; fix it by hand (it was not changed)") from None
    known = set(GENERATED) | set(PROVIDED) | set(OPTIONAL)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SecretsError(f"{path} must map secret names to strings; fix it by hand (it was not changed)")
    unknown = sorted(set(data) - known)
    if unknown:
        raise SecretsError(f"{path}: unknown secret(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {k: Secret(v) for k, v in data.items()}


def save(path: Path, values: Mapping[str, Secret]) -> None:
    """Write the file atomically with mode 0600, through a new temp file, in a 0700 directory
    of the user's own (refused otherwise, with the fix)."""
    text = "# binderhub-ops chart secrets: mode 0600, never commit, never paste.\n" + yaml.safe_dump(
        {k: v.reveal() for k, v in sorted(values.items())}, default_flow_style=False)
    try:
        localfiles.write_private(path, text)
    except localfiles.LocalFileError as exc:
        raise SecretsError(f"secrets directory: {exc}") from None


def check_dir(path: Path) -> None:
    """Refuse, before anything is done, a secrets directory that others could use (one that
    does not exist yet is made 0700 when the file is written)."""
    if os.path.lexists(path.parent):
        try:
            localfiles.private_dir(path.parent)
        except localfiles.LocalFileError as exc:
            raise SecretsError(f"secrets directory: {exc}") from None


def check_rotate(path: Path, name: str | None) -> None:
    """Refuse a --rotate NAME this tool cannot rotate; for an operator's own secret, say how."""
    if not name or name in GENERATED:
        return
    env, takes = path.stem, f"--rotate takes one of {', '.join(GENERATED)}"
    if name in PROVIDED:
        raise SecretsError(
            f"{takes}; {name} is yours: to rotate it, change it where it is issued, set the new value "
            f"as {name} in {path} (or delete that line and re-run `{settings.command()} secrets.init --env {env}` "
            f"with ${PROVIDED[name]} set), then run `{settings.command()} helm.upgrade --env {env}`")
    raise SecretsError(f"{takes}, not {name!r}")


def missing(path: Path, provided: Iterable[str]) -> list[str]:
    """The secrets `ensure` would make or ask for; refuses an unsafe secrets directory."""
    check_dir(path)
    have = load(path) if path.exists() else {}
    return [n for n in [*GENERATED, *provided] if n not in have]


def ensure(path: Path, provided: Iterable[str], ask: Callable[[str], str | None],
           rotate: str | None = None, deployed: Mapping[str, str] | None = None) -> list[str]:
    """Make the missing secrets: take them from the `deployed` release's values where it has
    them (a lost file must not rotate what runs), else generate them or `ask` for them.
    Rotate one if told; never regenerate anything else. Returns what was done (or nothing)."""
    check_rotate(path, rotate)
    check_dir(path)
    values = load(path) if path.exists() else {}
    report = []
    for name, value in (deployed or {}).items():
        if name not in values and name != rotate:
            values[name] = Secret(value)
            report.append(f"recovered {name} from the deployed release")
    for name in GENERATED:
        if name not in values or name == rotate:
            report.append(f"{'rotated' if name in values else 'created'} {name}"
                          + (f" (effect: {GENERATED[name]})" if name in values else ""))
            values[name] = Secret(token.token_hex(32))
    for name in provided:
        if name not in values:
            value = ask(name)
            if not value:
                raise SecretsError(f"{name} is needed: set ${PROVIDED[name]} or run in a terminal to be asked")
            values[name] = Secret(value)
            report.append(f"stored {name}")
    if report:
        save(path, values)
    return report
