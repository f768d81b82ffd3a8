"""Load `hosts.yaml` into frozen objects, refusing bad input before any connection.

Format (see README, "Inventory"): a top-level `defaults` block and `environments`, each
environment a block of settings plus `hosts`. Every block may carry the connection keys and
`vars`; a host's value wins over its environment's, which wins over `defaults`. An error names
the block that set the value. A key given twice, or two entries for one machine, is refused.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse

import yaml
from paramiko.config import SSHConfig
from paramiko.ssh_exception import ConfigParseError, CouldNotCanonicalize

from . import settings

ROLES = ("node", "control-plane", "proxy")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a host name or ssh_config alias
_USER = re.compile(r"[^\s@:/]+")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


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


def _not_a_scalar(value: Any, where: str) -> None:
    """Refuse a number or true/false where text is meant, saying to quote it."""
    if isinstance(value, (bool, int, float)):
        kind = "true/false" if isinstance(value, bool) else "a number"
        written = getattr(value, "written", value)
        raise InventoryError(f"{where}: YAML read {written} as {kind}, not text; put the value in quotes, "
                             f'like {where.rpartition(".")[2]}: "{written}"')


def _text(value: Any, where: str) -> str:
    _not_a_scalar(value, where)
    if not isinstance(value, str) or not value.strip():
        raise InventoryError(f"{where}: must be a non-empty string")
    return value


def _matching(pattern: re.Pattern, most: int, what: str) -> Callable[[Any, str], str]:
    """A text check: `value` must match `pattern` in full and be at most `most` characters."""
    def check(value: Any, where: str) -> str:
        _not_a_scalar(value, where)
        if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > most:
            raise InventoryError(f"{where}: {value!r} is not {what}")
        return value
    return check


def _number(value: Any, where: str) -> int | float:
    if isinstance(value, str):
        raise InventoryError(f"{where}: {value!r} must be a number, not text; remove the quotes")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InventoryError(f"{where}: {value!r} must be a number")
    return value


def _port(value: Any, where: str) -> int:
    if not isinstance(_number(value, where), int) or not 1 <= value <= 65535:
        raise InventoryError(f"{where}: {value!r} is out of range; use a number from 1 to 65535")
    return value


def _seconds(value: Any, where: str) -> float:
    if not math.isfinite(_number(value, where)) or value <= 0:
        raise InventoryError(f"{where}: {value!r} must be a positive number of seconds, like 30")
    return float(value)


def _gateway(value: Any, where: str) -> str:
    """`[user@]host[:port]`, read as Fabric reads it (an IPv6 address takes no port)."""
    user, at, hostport = value.rpartition("@") if isinstance(value, str) else ("", "", "")
    host, colon, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    good_host = _NAME.fullmatch(host) or (hostport.count(":") > 1 and _is_ipv6(host))
    good_port = not colon or (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535)
    if not good_host or not good_port or (at and not _USER.fullmatch(user)):
        raise InventoryError(f"{where}: {value!r} is not [user@]host[:port] with a port from 1 to 65535; "
                             "write it like ops@bastion.example.org:22")
    return value


def _hostname(value: Any, where: str) -> str:
    _not_a_scalar(value, where)
    if not isinstance(value, str) or not (_NAME.fullmatch(value) or _is_ipv6(value)) or len(value) > 253:
        raise InventoryError(f"{where}: {value!r} is not a host name or address; "
                             "give one, like head.example.org")
    return value


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _chart_version(value: Any, where: str) -> str:
    """A chart version the values templates know (fabfile/eras.py)."""
    from . import eras  # it names this module's error

    eras.era_of(_text(value, where), where)
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
        return str(ipaddress.IPv4Address(_text(value, where)))
    except (ipaddress.AddressValueError, ValueError):
        raise InventoryError(f"{where}: {value!r} is not an IPv4 address like 192.0.2.10") from None


def _address_range(value: Any, where: str) -> str:
    """A MetalLB pool entry: an address, a CIDR or an A-B range."""
    try:
        if "-" in _text(value, where):
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
    if not isinstance(_number(value, where), int) or value < 0:
        raise InventoryError(f"{where}: {value!r} must be a whole number, 0 or more")
    return value


def _batch(value: Any, where: str) -> int | str:
    """How many nodes may be down at once: a whole number from 1, or a percentage like "25%"."""
    if isinstance(value, str) and re.fullmatch(r"[1-9]\d?%|100%", value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise InventoryError(f"{where}: {value!r} must be a whole number from 1, or a percentage like \"25%\"")


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(f"{where}: {value!r} must be true or false")
    return value


def _node_port(value: Any, where: str) -> int:
    if not isinstance(_number(value, where), int) or not 30000 <= value <= 32767:
        raise InventoryError(f"{where}: {value!r} is outside Kubernetes' NodePort range 30000-32767")
    return value


def _shape(fields: Mapping[str, Callable[[Any, str], Any]], required: tuple[str, ...] = ()):
    """A check for a mapping with these keys (the `required` ones must be given; others default to None)."""
    def check(value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise InventoryError(f"{where}: must be a mapping with keys {', '.join(fields)}")
        unknown = sorted(map(str, set(value) - set(fields)))
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
    "containerd_config": ("/etc/containerd/config.toml", _text),
    "containerd_hosts_dir": ("/etc/containerd/certs.d", _text),
    "max_unavailable": (1, _batch),
    "mirror_check_image": (None, _optional(_text)),
    "k8s_node_name": (None, _optional(_text)),
    "kubeconfig": (None, _optional(_text)),
    "namespace": ("binder", _matching(_DNS_LABEL, 63, "a Kubernetes namespace: lowercase letters, "
                                      "digits and '-', at most 63, like binder")),
    "release": ("binder", _matching(_DNS_SUBDOMAIN, 53, "a helm release name: lowercase letters, "
                                    "digits, '-' and '.', at most 53, like binder")),
    "chart_repo_name": ("jupyterhub", _text),
    "chart_repo_url": ("https://jupyterhub.github.io/helm-chart/", _url),
    "chart_version": ("0.2.0-n600.h36369a7", _chart_version),
    # false: the release has no PodDisruptionBudget, in either era (pdb.enabled and the user-scheduler's
    # pdb.enabled off, and the user placeholder off: its PDB has no switch of its own). The pinned chart's
    # PDBs are policy/v1beta1, which Kubernetes 1.25+ refuses: set false there. The current chart's are
    # policy/v1; false there only stops them from holding up node drains.
    "pod_disruption_budgets": (True, _flag),
    "public_url": (None, _optional(_url)),
    "binder_base_url": ("/binderhub/", _url_path),
    "hub_base_url": ("/jupyterhub/", _url_path),
    "binder_node_port": (32574, _node_port),
    "use_registry": (True, _flag),
    # BinderHub's image builder (fabfile/buildpath.py): auto follows the nodes' runtimes.
    "image_builder": ("auto", _choice("auto", "host", "dind", "pink")),
    "rate_limit": (None, _optional(_count)),
    "launch_retries": (None, _optional(_count)),
    "launch_retry_delay": (None, _optional(_count)),
    "spawn_timeout": (None, _optional(_count)),
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
    "nginx_site": ("binderhub", _matching(_NAME, 255, "a file name in /etc/nginx/sites-available; "
                                          "give a plain name like binderhub")),
    "nginx_log_dir": ("/var/log/nginx", _text),
    "tls_certificate": (None, _optional(_text)),
    "tls_certificate_key": (None, _optional(_text)),
    "tls_ca_bundle": (None, _optional(_text)),
})

#: The connection keys (any block may set them), with their defaults and checks; see also ssh_config.
CONNECTION: Mapping[str, tuple[Any, Callable[[Any, str], Any]]] = MappingProxyType({
    "hostname": (None, _optional(_hostname)),
    "user": (None, _optional(_matching(_USER, 64, "a user name; give one name, like deploy"))),
    "port": (None, _optional(_port)),
    "sudo": (False, _flag),
    "gateway": (None, _optional(_gateway)),
    "connect_timeout": (10, _seconds),
    "command_timeout": (120, _seconds),
})
_CONNECTION_KEYS = {*CONNECTION, "ssh_config"}


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


def _block(data: Any, where: str, allowed: set[str] | None = None) -> dict:
    """A mapping (None reads as empty) whose keys are all in `allowed`, or any text when it is None."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(f"{where}: must be a mapping")
    if allowed is None:
        for key in data:
            _name(key, f"{where}.{key}")
        return data
    unknown = sorted(map(str, set(data) - allowed))
    if unknown:
        raise InventoryError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return data


def _name(value: Any, where: str) -> str:
    """An environment's or a host's name: text, so that --env and --limit can name it."""
    if not isinstance(value, str) or not value.strip():
        raise InventoryError(f"{where}: the name {value!r} must be text; put it in quotes, like '{value}':")
    return value


def _setting(layers: tuple, key: str, default: Any, where: str) -> tuple[Any, str]:
    """The value of `key` in the last of `layers` ((block, where)...) that sets it, and its key path."""
    return next(((block[key], f"{at}.{key}") for block, at in reversed(layers) if key in block),
                (default, f"{where}.{key}"))


def _settings(table: Mapping[str, tuple[Any, Callable]], layers: tuple, where: str) -> dict:
    """Each key of `table` from `layers` (else its default), checked and named where it was set."""
    checked = {}
    for key, (default, check) in table.items():
        value, at = _setting(layers, key, default, where)
        checked[key] = check(value, at)
    return checked


def _ssh_config(value: Any, where: str, base: Path) -> Path | None:
    if value is None:
        return None
    path = (base / os.path.expanduser(_text(value, where))).resolve()
    if not path.is_file():
        hint = " (for the lab, run `invoke lab.up` first)" if ".lab" in path.parts else ""
        raise InventoryError(f"{where}: {path} does not exist{hint}")
    return path


def _roles(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InventoryError(f"{where}: give at least one of {', '.join(ROLES)}")
    bad = [r for r in value if r not in ROLES]
    if bad:
        raise InventoryError(f"{where}: unknown role(s) {bad}; valid roles: {', '.join(ROLES)}")
    return tuple(value)


def _host(name: str, data: Any, layers: tuple, where: str, base: Path) -> Host:
    """Host `name` from its block `data` over `layers` ((defaults, where), (environment, where))."""
    data = _block(data, where, _CONNECTION_KEYS | {"roles", "vars"})
    roles = _roles(data.get("roles"), f"{where}.roles")
    layers = (*layers, (data, where))
    settings = _settings(CONNECTION, layers, where)
    ssh_config = _ssh_config(*_setting(layers, "ssh_config", None, where), base)
    var_layers = tuple((_block(block.get("vars"), f"{at}.vars", set(VARS)), f"{at}.vars")
                       for block, at in layers)
    return Host(
        name=name,
        hostname=settings["hostname"] or _hostname(name, where),
        user=settings["user"],
        port=settings["port"],
        sudo=settings["sudo"],
        ssh_config=ssh_config,
        gateway=settings["gateway"],
        connect_timeout=settings["connect_timeout"],
        command_timeout=settings["command_timeout"],
        roles=roles,
        vars=MappingProxyType(_settings(VARS, var_layers, f"{where}.vars")),
    )


def _address(host: Host, configs: dict[Path, SSHConfig]) -> tuple[str | None, str, int]:
    """Where a connection to `host` goes: its gateway, and host name and port after its ssh_config."""
    hostname, port = host.hostname, host.port
    if host.ssh_config:
        if host.ssh_config not in configs:
            configs[host.ssh_config] = SSHConfig.from_path(str(host.ssh_config))
        found = configs[host.ssh_config].lookup(hostname)
        hostname, port = found["hostname"], port or int(found.get("port", 22))
    return host.gateway, hostname.lower(), port or 22


def _distinct(hosts: tuple[Host, ...], where: str) -> tuple[Host, ...]:
    """Refuse two names for one machine (same gateway, host name and port): it would be worked on twice."""
    seen: dict[tuple, Host] = {}
    configs: dict[Path, SSHConfig] = {}
    for host in hosts:
        try:
            address = _address(host, configs)
        except (ConfigParseError, CouldNotCanonicalize, ValueError) as exc:
            raise InventoryError(f"{where}.{host.name}: its ssh_config {host.ssh_config} cannot be read: "
                                 f"{exc}; fix that file") from None
        first = seen.setdefault(address, host)
        if first is not host:
            raise InventoryError(
                f"{where}: {first.name} and {host.name} are the same machine ({address[1]}:{address[2]}); "
                "keep one of them and give it the roles and vars of both")
    return hosts


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (else the last one silently wins),
    and keeping how each float was written."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.get(key)
            except TypeError:
                continue  # an unhashable key, which the safe loader refuses itself
            if first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first}); keep only one",
                    key_node.start_mark)
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


class _Float(float):
    """A float that keeps the text the file wrote (YAML reads 1.10 as 1.1), for the hint to quote it."""

    written = ""


def _float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> _Float:
    value = _Float(loader.construct_yaml_float(node))
    value.written = node.value
    return value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _float)


def _read(path: Path) -> Any:
    """The YAML document at `path`; every failure an InventoryError naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InventoryError(f"{path}: line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); "
                             "save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = "; ".join(filter(None, (exc.context, exc.problem)))
        raise InventoryError(f"{path}: {at}not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise InventoryError(f"{path}: line {line}: not valid YAML: character #x{exc.character:04x} "
                             "is not allowed; remove it") from None


def load(env: str, path: Path | str | None = None) -> Environment:
    """Read the inventory at `path` (default: the `inventory` setting from the environment and
    defaults) and return environment `env`, fully checked."""
    path = Path(path) if path else settings.resolve().inventory
    data = _block(_read(path), str(path), {"defaults", "environments"})
    defaults = _block(data.get("defaults"), f"{path}: defaults", _CONNECTION_KEYS | {"vars"})
    envs = _block(data.get("environments"), f"{path}: environments")
    if env not in envs:
        what = f"unknown environment {env!r}" if env else "no environment given (pass --env ENV)"
        raise InventoryError(f"{path}: {what}; valid environments: {', '.join(sorted(envs)) or 'none'}")
    where = f"{path}: environments.{env}"
    block = _block(envs[env], where, _CONNECTION_KEYS | {"vars", "hosts", "confirm"})
    confirm = _flag(block.get("confirm", False), f"{where}.confirm")
    hosts = _block(block.get("hosts"), f"{where}.hosts")
    if not hosts:
        raise InventoryError(f"{where}.hosts: the environment has no hosts; add at least one")
    layers = ((defaults, f"{path}: defaults"), (block, where))
    return Environment(env, path, _distinct(tuple(
        _host(name, spec, layers, f"{where}.hosts.{name}", path.parent)
        for name, spec in hosts.items()), f"{where}.hosts"), confirm)


def public_url(host: Host) -> str:
    """The URL users reach the proxy at, without a trailing slash; refused when not set."""
    url = host.vars["public_url"]
    if not url:
        raise InventoryError(f"host {host.name}: vars.public_url is not set; give the URL users reach "
                             "the proxy at, like http://binder.example.org")
    return url.rstrip("/")


def floating_ip(host: Host) -> str:
    """The IP proxy-public must hold, inside the MetalLB pool when one is given; refused when not set."""
    ip = host.vars["floating_ip"]
    if not ip:
        raise InventoryError(f"host {host.name}: vars.floating_ip is not set; give the IP proxy-public "
                             "must hold (the runbook's floating IP)")
    addresses = host.vars["metallb_addresses"]
    if addresses and not in_pool(addresses, ip):
        raise InventoryError(f"host {host.name}: floating_ip {ip} is outside metallb_addresses "
                             f"{list(addresses)}; add it to the pool or fix floating_ip")
    return ip


def in_pool(pool: Sequence[str], ip: str) -> bool:
    """Whether `ip` is in one of the pool's CIDRs or first-last ranges."""
    address = ipaddress.IPv4Address(ip)
    for entry in pool:
        if "-" in entry:
            first, last = (ipaddress.IPv4Address(v.strip()) for v in entry.split("-", 1))
            if first <= address <= last:
                return True
        elif address in ipaddress.IPv4Network(entry, strict=False):
            return True
    return False


def local_file(env: Environment, host: Host, var: str, fix: str) -> str:
    """The file a variable names on the operator's side, relative to the inventory; refused with
    `fix` when it does not exist."""
    path = (env.source.parent / host.vars[var]).resolve()
    if not path.is_file():
        raise InventoryError(f"host {host.name}: vars.{var}: {path} does not exist; {fix}")
    return str(path)


def metallb_manifest(env: Environment, host: Host) -> str:
    """The MetalLB manifest to apply: a URL, or a file (relative to the inventory) that must exist."""
    manifest = host.vars["metallb_manifest"]
    if re.match(r"https?://", manifest):
        return manifest
    return local_file(env, host, "metallb_manifest", "give a path relative to the inventory, or the manifest's URL")


def ca_bundle(env: Environment, host: Host) -> str | None:
    """The CA bundle (a file on the operator's side, relative to the inventory) that verifies
    public_url's certificate in place of the system's; None: the system's."""
    if host.vars["tls_ca_bundle"] is None:
        return None
    return local_file(env, host, "tls_ca_bundle", "give the CA certificate(s) in PEM, as a path relative to the "
                      "inventory")


def tls(host: Host) -> dict[str, str] | None:
    """The certificate and key (paths on the proxy) when public_url is https; refused when missing."""
    if not public_url(host).startswith("https:"):
        return None
    if not (host.vars["tls_certificate"] and host.vars["tls_certificate_key"]):
        raise InventoryError(f"host {host.name}: public_url is https: set vars.tls_certificate and "
                             "vars.tls_certificate_key (paths on the proxy host)")
    return {"certificate": host.vars["tls_certificate"], "key": host.vars["tls_certificate_key"]}


#: What a task may need of the inventory, and the role of the hosts that must have it.
NEEDS: Mapping[str, tuple[str, Callable[[Environment, Host], Any]]] = MappingProxyType({
    "public_url": ("control-plane", lambda env, host: public_url(host)),
    "proxy_url": ("proxy", lambda env, host: tls(host)),
    "floating_ip": ("control-plane", lambda env, host: floating_ip(host)),
    "metallb_manifest": ("control-plane", metallb_manifest),
})


def check_needs(env: Environment, needs: Sequence[str]) -> None:
    """Refuse, before any connection, an environment that lacks what a task `needs` (names of
    NEEDS) on the hosts it would use them on."""
    for need in needs:
        role, check = NEEDS[need]
        hosts = [h for h in env.hosts if role in h.roles]
        for host in hosts[:1] if role == "control-plane" else hosts:
            check(env, host)
