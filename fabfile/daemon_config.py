"""`/etc/docker/daemon.json`: parse it, merge the mirrors in, and tell reload from restart."""
from __future__ import annotations

import json

from .remote import file_diff

PATH = "/etc/docker/daemon.json"
MIRRORS_KEY = "registry-mirrors"

#: Keys dockerd re-reads on SIGHUP (`systemctl reload docker`); any other change needs a restart.
#: From moby's daemon/reload.go and the dockerd reference, "Configuration reload behavior".
RELOADABLE = frozenset({
    "debug", "labels", "live-restore", "max-concurrent-downloads", "max-concurrent-uploads",
    "max-download-attempts", "default-runtime", "runtimes", "authorization-plugins",
    "insecure-registries", "registry-mirrors", "shutdown-timeout", "features", "builder",
})


class DaemonJsonError(ValueError):
    """The file on the host is not a JSON object; it must not be overwritten."""


def parse(text: str | None) -> dict:
    """The settings in the file's text; an absent or empty file holds none."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DaemonJsonError(
            f"{PATH} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "left untouched: fix it by hand, then re-run") from None
    if not isinstance(data, dict):
        raise DaemonJsonError(f"{PATH} holds a JSON {type(data).__name__}, not an object; "
                              "left untouched: fix it by hand, then re-run")
    return data


def merge(settings: dict, mirrors: tuple[str, ...] | list[str]) -> dict:
    """`settings` with the mirror list set, every other key kept in its place."""
    return {**settings, MIRRORS_KEY: list(mirrors)}


def render(settings: dict) -> str:
    """The file's text for `settings`."""
    return json.dumps(settings, indent=2) + "\n"


def changed_keys(old: dict, new: dict) -> set[str]:
    """The keys whose values differ between two settings."""
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def needs_restart(old: dict, new: dict) -> bool:
    """Whether going from `old` to `new` changes a key that a reload does not apply."""
    return bool(changed_keys(old, new) - RELOADABLE)


def same_mirrors(reported: list[str] | None, wanted: tuple[str, ...] | list[str]) -> bool:
    """Whether docker's reported mirrors are the wanted ones (docker adds a trailing slash)."""
    norm = lambda urls: [u.rstrip("/") + "/" for u in urls]  # noqa: E731
    return reported is not None and norm(reported) == norm(wanted)


def diff(old_text: str | None, new_text: str) -> str:
    """A unified diff of the file, for dry runs and change reports."""
    return file_diff(old_text, new_text, PATH)
