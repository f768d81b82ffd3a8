"""A release's objects as helm renders them (`helm template`, `helm get manifest`), and what
installing one over the other would change, object by object: what the helm-diff plugin shows,
with no plugin."""
from __future__ import annotations

import copy
import difflib

import yaml

from .results import MASK

Key = tuple[str, str, str]  # kind, namespace, name


def parse(text: str) -> list[dict]:
    """The objects of a multi-document manifest (empty documents dropped)."""
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]


def key(obj: dict, namespace: str) -> Key:
    meta = obj.get("metadata") or {}
    return obj["kind"], meta.get("namespace") or namespace, meta.get("name", "")


def _masked(obj: dict, against: dict | None) -> dict:
    """A Secret with each value masked (marked when it differs from `against`'s); others as they are."""
    if obj.get("kind") != "Secret":
        return obj
    out = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        old = (against or {}).get(field) or {}
        for name, value in (out.get(field) or {}).items():
            out[field][name] = MASK + (" (changed)" if against is not None and old.get(name) != value else "")
    return out


def diff(deployed: list[dict], wanted: list[dict], namespace: str) -> str:
    """Object by object, what installing `wanted` over `deployed` changes: a unified diff for each
    object added, removed or changed, Secrets' values masked."""
    old = {key(o, namespace): o for o in deployed}
    new = {key(o, namespace): o for o in wanted}
    dump = lambda o: yaml.safe_dump(o, sort_keys=True).splitlines(keepends=True)  # noqa: E731
    out = []
    for k in sorted(old.keys() | new.keys()):
        before, after = old.get(k), new.get(k)
        if before == after:
            continue
        label = f"{k[0]} {k[1]}/{k[2]}"
        out += difflib.unified_diff(dump(_masked(before, None)) if before else [],
                                    dump(_masked(after, before)) if after else [],
                                    fromfile=f"{label} (deployed)" if before else "/dev/null",
                                    tofile=f"{label} (rendered)" if after else "/dev/null")
    return "".join(out)
