"""Load `hosts.yaml` into frozen objects, refusing bad input before any connection.

Format (see README, "Inventory"): a top-level `defaults` block and `environments`, each
environment a block of settings plus `hosts`. Every block may carry the connection keys and
`vars`; a host's value wins over its environment's, which wins over `defaults`.
"""
from __future__ import annotations

import ipaddress
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


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InventoryError(f"{where}: must be a non-empty string")
    return value


def _optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, where: None if value is None else check(value, where)


def _url(value: Any, where: str) -> str:
    return _mirrors([value], where)[0]


def _url_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not (value.startswith("/") and value.endswith("/")):
        raise InventoryError(f"{where}: {value!r} must start and end with '/', like /binderhub/")
    return value


def _ipv4(value: Any, where: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError):
        raise InventoryError(f"{where}: {value!r} is not an IPv4 address like 192.0.2.10") from None


def _address_range(value: Any, where: str) -> str:
    """A MetalLB pool entry: an address, a CIDR or an A-B range."""
    try:
        if isinstance(value, str) and "-" in value:
            first, last = (ipaddress.IPv4Address(v.strip()) for v in value.split("-", 1))
            if last < first:
                raise ValueError
        else:
            ipaddress.IPv4Network(value)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError, TypeError):
        raise InventoryError(f"{where}: {value!r} is not an address, CIDR or range like "
                             "192.0.2.10-192.0.2.20") from None
    return value


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InventoryError(f"{where}: {value!r} must be a whole number, 0 or more")
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(f"{where}: {value!r} must be true or false")
    return value


def _node_port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 30000 <= value <= 32767:
        raise InventoryError(f"{where}: {value!r} is outside Kubernetes' NodePort range 30000-32767")
    return value


def _shape(fields: Mapping[str, Callable[[Any, str], Any]], required: tuple[str, ...] = ()):
    """A check for a mapping with these keys (the `required` ones must be given; others default to None)."""
    def check(value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise InventoryError(f"{where}: must be a mapping with keys {', '.join(fields)}")
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise InventoryError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
        missing = [k for k in required if k not in value]
        if missing:
            raise InventoryError(f"{where}: missing {', '.join(missing)}")
        return MappingProxyType({k: None if value.get(k) is None else check(value[k], f"{where}.{k}")
                                 for k, check in fields.items()})
    return check


def _list_of(check: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple]:
    def check_list(value: Any, where: str) -> tuple:
        if not isinstance(value, list):
            raise InventoryError(f"{where}: must be a list")
        return tuple(check(v, f"{where}[{i}]") for i, v in enumerate(value))
    return check_list


_AUTH = _shape({
    "login_service": _text, "client_id": _text, "authorize_url": _url, "token_url": _url,
    "userdata_url": _url, "username_key": _text, "scope": _list_of(_text),
    "allowed_users": _list_of(_text), "allow_all": _flag,
}, required=("client_id", "authorize_url", "token_url", "userdata_url"))
_STORAGE = _shape({
    "per_user": _shape({"storage_class": _text, "capacity": _text, "mount_path": _text},
                       required=("capacity",)),
    "shared": _shape({"claim": _text, "mount_path": _text}, required=("claim", "mount_path")),
})
_PROFILE = _shape({"display_name": _text, "description": _text, "image": _text, "default": _flag},
                  required=("display_name",))

#: Every variable the tasks read, with its default and its check.
VARS: Mapping[str, tuple[Any, Callable[[Any, str], Any]]] = MappingProxyType({
    "docker_mirrors": (["https://dockerhub.stfc.ac.uk"], _mirrors),
    "docker_service": ("auto", _choice("auto", "systemd", "sysvinit")),
    "k8s_node_name": (None, _optional(_text)),
    "kubeconfig": (None, _optional(_text)),
    "namespace": ("binder", _text),
    "release": ("binder", _text),
    "chart_repo_name": ("jupyterhub", _text),
    "chart_repo_url": ("https://jupyterhub.github.io/helm-chart/", _url),
    "chart_version": ("0.2.0-n600.h36369a7", _text),
    "public_url": (None, _optional(_url)),
    "binder_base_url": ("/binderhub/", _url_path),
    "hub_base_url": ("/jupyterhub/", _url_path),
    "binder_node_port": (32574, _node_port),
    "use_registry": (True, _flag),
    "rate_limit": (None, _optional(_count)),
    "image_prefix": ("binder-", _text),
    "registry_url": (None, _optional(_url)),
    "registry_username": (None, _optional(_text)),
    "auth": (None, _optional(_AUTH)),
    "storage": (None, _optional(_STORAGE)),
    "profiles": ([], _list_of(_PROFILE)),
    "floating_ip": (None, _optional(_ipv4)),
    "metallb_addresses": ([], _list_of(_address_range)),
    "metallb_pool_name": ("default", _text),
    "floating_ip_request": ("annotation", _choice("annotation", "loadBalancerIP")),
    "metallb_manifest": ("https://raw.githubusercontent.com/metallb/metallb/v0.14.8/config/manifests/"
                         "metallb-native.yaml", _text),
    "binder_node_address": (None, _optional(_ipv4)),
    "nginx_site": ("binderhub", _text),
    "nginx_log_dir": ("/var/log/nginx", _text),
    "tls_certificate": (None, _optional(_text)),
    "tls_certificate_key": (None, _optional(_text)),
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
    confirm: bool = False  # deploy asks the operator to type the environment's name

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
        return Environment(self.name, self.source, tuple(h for h in self.hosts if h.name in names), self.confirm)


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
    block = _block(envs[env], where, set(CONNECTION_DEFAULTS) | {"vars", "hosts", "confirm"})
    confirm = _flag(block.get("confirm", False), f"{where}.confirm")
    hosts = _block(block.get("hosts"), f"{where}.hosts", set(block.get("hosts") or {}))
    if not hosts:
        raise InventoryError(f"{where}.hosts: the environment has no hosts; add at least one")
    return Environment(env, path, tuple(
        _host(name, spec, block, defaults, f"{where}.hosts.{name}", path.parent)
        for name, spec in hosts.items()), confirm)
