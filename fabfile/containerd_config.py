"""containerd's registry settings: `hosts.toml` for docker.io (the mirrors) and `config_path` in
`config.toml`'s CRI registry section, edited with tomlkit so that the rest of each file is kept."""
from __future__ import annotations

import re

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

from .remote import file_diff

UPSTREAM = "https://registry-1.docker.io"
CAPABILITIES = ["pull", "resolve"]

#: Where `config_path` goes, by config.toml's `version`: 2 for containerd 1.6/1.7, 3 for 2.x.
REGISTRY_SECTIONS = {
    2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
    3: ("plugins", "io.containerd.cri.v1.images", "registry"),
}


class TomlError(ValueError):
    """A file that must not be overwritten: not TOML, or holding settings that cannot go with ours."""


def hosts_path(hosts_dir: str) -> str:
    """Where containerd reads docker.io's hosts.toml."""
    return f"{hosts_dir.rstrip('/')}/docker.io/hosts.toml"


def _parse(text: str, path: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise TomlError(f"{path} is not valid TOML ({exc}); left untouched: fix it by hand, then re-run") from None


def hosts_toml(text: str | None, mirrors: tuple[str, ...] | list[str], path: str) -> str:
    """hosts.toml with Docker Hub as `server` and one `[host."MIRROR"]` per mirror, in order, each
    with pull and resolve; the file's other settings and comments, and a kept mirror's own keys
    (ca, skip_verify, header...), stay. Hosts no longer wanted are dropped."""
    doc = _parse(text or "", path)
    doc["server"] = UPSTREAM
    old = doc.get("host")
    if old is not None and not isinstance(old, Table):
        raise TomlError(f"{path}: `host` is not a table of hosts; left untouched: fix it by hand, then re-run")
    hosts = tomlkit.table(is_super_table=True)
    for mirror in mirrors:
        table = old.get(mirror) if old is not None else None
        table = table if isinstance(table, Table) else tomlkit.table()
        table["capabilities"] = list(CAPABILITIES)
        hosts.append(mirror, table)
    if old is not None:
        del doc["host"]
    elif doc.body and not doc.as_string().endswith("\n\n"):
        doc.add(tomlkit.nl())
    doc.append("host", hosts)
    return doc.as_string()


def hosts_match(text: str | None, mirrors: tuple[str, ...] | list[str]) -> bool:
    """Whether hosts.toml already says what `hosts_toml` would (layout aside)."""
    try:
        data = tomlkit.parse(text).unwrap() if text is not None else None
    except TOMLKitError:
        return False
    if not data or data.get("server") != UPSTREAM or not isinstance(data.get("host"), dict):
        return False
    hosts = data["host"]
    return list(hosts) == list(mirrors) and all(
        isinstance(h, dict) and h.get("capabilities") == CAPABILITIES for h in hosts.values())


def major_version(version_line: str) -> int | None:
    """containerd's major version from `containerd --version` (None when unknown)."""
    found = re.search(r"\sv?(\d+)\.\d+", version_line)
    return int(found.group(1)) if found else None


def _blank(doc: tomlkit.TOMLDocument) -> bool:
    return not doc.unwrap()


def config_version(doc: tomlkit.TOMLDocument, containerd_major: int | None, path: str) -> int:
    """The config's version; an empty or absent file (containerd on its defaults) takes the
    version of the installed containerd. Version 1 and unknown versions are refused."""
    if _blank(doc):
        return 3 if (containerd_major or 1) >= 2 else 2
    version = doc.get("version")
    if version not in REGISTRY_SECTIONS:
        what = "has no `version` (a version 1 config)" if version is None else f"has version {version!r}"
        raise TomlError(f"{path} {what}; only version 2 (containerd 1.6/1.7) and 3 (containerd 2.x) are "
                        "supported; left untouched: migrate it (`containerd config migrate` on containerd 2.x), "
                        "then re-run")
    if version == 3 and containerd_major is not None and containerd_major < 2:
        raise TomlError(f"{path} has version 3, which only containerd 2.x reads, but containerd "
                        f"{containerd_major}.x is installed; left untouched: fix it by hand, then re-run")
    return int(version)


def _section(doc, keys: tuple[str, ...]):
    """The table at `keys`, or None where a level is missing."""
    node = doc
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _check_registry(registry, dotted: str, hosts_dir: str, path: str) -> None:
    """Refuse what containerd does not accept beside config_path: `mirrors`, `configs.*.tls`."""
    if not isinstance(registry, dict):
        raise TomlError(f"{path}: [{dotted}] is not a table; left untouched: fix it by hand, then re-run")
    fix = (f"move those settings into hosts.toml files under {hosts_dir} (containerd refuses them together "
           f"with config_path) and remove them, then re-run; {path} left untouched")
    if registry.get("mirrors"):
        raise TomlError(f"{path} sets the deprecated [{dotted}.mirrors]: {fix}")
    configs = registry.get("configs") or {}
    if any(isinstance(c, dict) and c.get("tls") for c in configs.values()):
        raise TomlError(f"{path} sets the deprecated [{dotted}.configs.\"...\".tls]: {fix}")


def _dotted(keys: tuple[str, ...]) -> str:
    return ".".join(k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else f'"{k}"' for k in keys)


def config_toml(text: str | None, hosts_dir: str, containerd_major: int | None, path: str) -> str:
    """config.toml with `config_path = hosts_dir` in the CRI registry section of its version,
    every other byte kept: an existing section is edited in place; a missing one is appended
    at the end. An absent or empty file becomes `version = N` and that section (containerd
    fills in its defaults for the rest, as before)."""
    text = text or ""
    doc = _parse(text, path)
    version = config_version(doc, containerd_major, path)
    keys = REGISTRY_SECTIONS[version]
    registry = _section(doc, keys)
    if registry is not None:
        _check_registry(registry, _dotted(keys), hosts_dir, path)
        if registry.get("config_path") == hosts_dir:
            return text
        registry["config_path"] = hosts_dir
        new = doc.as_string()
    else:
        head = text if text.strip() else ""
        if _blank(doc):
            head += f"version = {version}\n"
        head += "\n" if not head or head.endswith("\n") else "\n\n"
        new = f"{head}[{_dotted(keys)}]\n  config_path = {tomlkit.string(hosts_dir).as_string()}\n"
    try:
        got = tomlkit.parse(new).unwrap()
    except TOMLKitError:
        got = None
    if got is None or (_section(got, keys) or {}).get("config_path") != hosts_dir or \
            (registry is not None and got != doc.unwrap()):
        raise TomlError(f"{path}: cannot set config_path in [{_dotted(keys)}] without rewriting other parts of "
                        f"the file; set `config_path = \"{hosts_dir}\"` there by hand, then re-run")
    return new


def diff(old_text: str | None, new_text: str, path: str) -> str:
    """A unified diff of one of the files, for dry runs and change reports."""
    return file_diff(old_text, new_text, path)
