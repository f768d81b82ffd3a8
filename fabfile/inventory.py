"""Load `hosts.yaml` into frozen objects, refusing bad input before any connection.

Format (see README, "Inventory"): a top-level `defaults` block and `environments`, each
environment a block of settings plus `hosts`. Every block may carry the connection keys and
`vars`; a host's value wins over its environment's, which wins over `defaults`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "hosts.yaml"
ROLES = ("node", "control-plane", "proxy")
CONNECTION_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "hostname": None,
    "user": None,
    "port": None,
    "sudo": False,
    "ssh_config": None,
    "gateway": None,
    "connect_timeout": 10,
    "command_timeout": 120,
})


class InventoryError(Exception):
    """The inventory cannot be used; the message says where and how to fix it."""


def _mirrors(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InventoryError(f"{where}: must be a non-empty list of http(s) URLs")
    for url in value:
        parsed = urlparse(url) if isinstance(url, str) else None
        if not parsed or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InventoryError(
                f"{where}: {url!r} is not an http(s) URL; write it like https://mirror.example.org")
    return tuple(value)


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if value not in choices:
            raise InventoryError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        return value
    return check


#: Every variable the tasks read, with its default and its check.
VARS: Mapping[str, tuple[Any, Callable[[Any, str], Any]]] = MappingProxyType({
    "docker_mirrors": (["https://dockerhub.stfc.ac.uk"], _mirrors),
    "docker_service": ("auto", _choice("auto", "systemd", "sysvinit")),
})


@dataclass(frozen=True)
class Host:
    """One machine of an environment: how to reach it, its roles and its variables."""

    name: str
    hostname: str
    user: str | None
    port: int | None
    sudo: bool
    ssh_config: Path | None
    gateway: str | None
    connect_timeout: float
    command_timeout: float
    roles: tuple[str, ...]
    vars: Mapping[str, Any]


@dataclass(frozen=True)
class Environment:
    """The hosts of one environment, in inventory order."""

    name: str
    source: Path
    hosts: tuple[Host, ...]

    def with_role(self, role: str) -> tuple[Host, ...]:
        """The hosts holding `role`; an error if there are none."""
        hosts = tuple(h for h in self.hosts if role in h.roles)
        if not hosts:
            raise InventoryError(
                f"{self.source}: environment {self.name!r} has no host with role {role!r}; "
                f"add `roles: [{role}]` to one of its hosts")
        return hosts

    def limited(self, names: list[str]) -> Environment:
        """The same environment narrowed to the named hosts."""
        known = {h.name for h in self.hosts}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InventoryError(
                f"--limit names unknown host(s) {', '.join(unknown)}; "
                f"hosts of {self.name!r}: {', '.join(sorted(known))}")
        return Environment(self.name, self.source, tuple(h for h in self.hosts if h.name in names))


def _block(data: Any, where: str, allowed: set[str]) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(f"{where}: must be a mapping")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InventoryError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}")
    return data


def _check_vars(merged: dict, where: str) -> Mapping[str, Any]:
    return MappingProxyType({k: check(merged.get(k, default), f"{where}.vars.{k}")
                             for k, (default, check) in VARS.items()})


def _connection(merged: dict, where: str, base: Path) -> dict:
    port = merged["port"]
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                             or not 1 <= port <= 65535):
        raise InventoryError(f"{where}.port: {port!r} is out of range; use a number from 1 to 65535")
    for key in ("connect_timeout", "command_timeout"):
        value = merged[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise InventoryError(f"{where}.{key}: {value!r} must be a positive number of seconds")
    if not isinstance(merged["sudo"], bool):
        raise InventoryError(f"{where}.sudo: {merged['sudo']!r} must be true or false")
    ssh_config = merged["ssh_config"]
    if ssh_config is not None:
        ssh_config = (base / os.path.expanduser(ssh_config)).resolve()
        if not ssh_config.is_file():
            hint = " (for the lab, run `invoke lab.up` first)" if ".lab" in ssh_config.parts else ""
            raise InventoryError(f"{where}.ssh_config: {ssh_config} does not exist{hint}")
    return dict(merged, ssh_config=ssh_config)


def _host(name: str, data: Any, env_block: dict, defaults: dict, where: str, base: Path) -> Host:
    env_where, _, _ = where.rpartition(".hosts.")
    defaults_where = where.split(": ", 1)[0] + ": defaults"
    allowed = set(CONNECTION_DEFAULTS) | {"roles", "vars"}
    data = _block(data, where, allowed)
    roles = data.get("roles")
    if not isinstance(roles, list) or not roles:
        raise InventoryError(f"{where}.roles: give at least one of {', '.join(ROLES)}")
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise InventoryError(f"{where}.roles: unknown role(s) {bad}; valid roles: {', '.join(ROLES)}")
    layers = (CONNECTION_DEFAULTS, defaults, env_block, data)
    merged = {k: next(l[k] for l in reversed(layers) if k in l) for k in CONNECTION_DEFAULTS}
    merged = _connection(merged, where, base)
    variables: dict = {}
    for layer, at in ((defaults, defaults_where), (env_block, env_where), (data, where)):
        variables.update(_block(layer.get("vars"), f"{at}.vars", set(VARS)))
    return Host(
        name=str(name),
        hostname=str(merged["hostname"] or name),
        user=merged["user"],
        port=merged["port"],
        sudo=merged["sudo"],
        ssh_config=merged["ssh_config"],
        gateway=merged["gateway"],
        connect_timeout=float(merged["connect_timeout"]),
        command_timeout=float(merged["command_timeout"]),
        roles=tuple(roles),
        vars=_check_vars(variables, where),
    )


def load(env: str, path: Path | str | None = None) -> Environment:
    """Read the inventory at `path` and return environment `env`, fully checked."""
    path = Path(path or os.environ.get("BHOPS_INVENTORY") or DEFAULT_PATH)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from None
    data = _block(data, str(path), {"defaults", "environments"})
    defaults = _block(data.get("defaults"), f"{path}: defaults", set(CONNECTION_DEFAULTS) | {"vars"})
    envs = _block(data.get("environments"), f"{path}: environments", set(data.get("environments") or {}))
    if env not in envs:
        what = f"unknown environment {env!r}" if env else "no environment given (pass --env ENV)"
        raise InventoryError(f"{path}: {what}; valid environments: {', '.join(sorted(envs)) or 'none'}")
    where = f"{path}: environments.{env}"
    block = _block(envs[env], where, set(CONNECTION_DEFAULTS) | {"vars", "hosts"})
    hosts = _block(block.get("hosts"), f"{where}.hosts", set(block.get("hosts") or {}))
    if not hosts:
        raise InventoryError(f"{where}.hosts: the environment has no hosts; add at least one")
    return Environment(env, path, tuple(
        _host(name, spec, block, defaults, f"{where}.hosts.{name}", path.parent)
        for name, spec in hosts.items()))
