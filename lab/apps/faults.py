"""Failures the lab can be asked to produce, so that clients can be tested against them.

The choice lives in a JSON file, `{"fault": NAME}` (no file, `{}` or `{"fault": null}`: none),
whose path both the binder API and JupyterHub's spawner get in $LABAPPS_FAULTS (the runner uses
`<state-dir>/faults.json`). It is read on every `/build` request and every spawn, so it can be
changed while the apps run: `python -m lab.apps fault NAME --file F` (or `clear`).

Each fault makes the real component fail, where it can, rather than printing a canned answer:
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

FAULTS_ENV = "LABAPPS_FAULTS"

BUILD_FAILS = "build-fails"
STREAM_STALLS = "stream-stalls"
HUB_UNREACHABLE = "hub-unreachable"
HUB_REFUSES_TOKEN = "hub-refuses-token"
SPAWN_FAILS = "spawn-fails"
RATE_LIMITED = "rate-limited"

FAULTS = {
    BUILD_FAILS: "the build log ends in a `failed` event (no status_code), as a failing repo2docker does",
    STREAM_STALLS: "the build stops sending events after a few log lines; the stream stays open "
                   "(keepalive comments only) until the client closes it",
    HUB_UNREACHABLE: "the binder talks to a hub address that refuses connections: health turns 503 "
                     "and launches end in `failed` 500 \"Internal Server Error\" after the retries",
    HUB_REFUSES_TOKEN: "the binder presents a wrong API token: the real hub answers 403 and launches "
                       "end in `failed` 500 \"Failed to create temporary user for <image>\"",
    SPAWN_FAILS: "JupyterHub's spawner raises: the hub's progress stream reports the failure and "
                 "launches end in `failed` 500 \"Spawn failed: ...\"",
    RATE_LIMITED: "every `/build` answers `failed` 429 \"Rate limit exceeded. Try again in 3600 seconds.\"",
}
__doc__ += "".join(f"\n- `{name}`: {what}." for name, what in FAULTS.items())

log = logging.getLogger(__name__)


def current(path: str | os.PathLike | None) -> str | None:
    """The fault asked for in `path` now, or None (no path, no file, or an unknown name, logged)."""
    if not path:
        return None
    try:
        fault = json.loads(Path(path).read_text() or "{}").get("fault")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        log.error("ignoring the faults file %s: %s", path, exc)
        return None
    if fault is not None and fault not in FAULTS:
        log.error("ignoring unknown fault %r in %s (known: %s)", fault, path, ", ".join(FAULTS))
        return None
    return fault


def choose(path: str | os.PathLike, fault: str | None) -> None:
    """Ask for `fault` (None: no fault) from now on; written atomically."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"fault": fault}) + "\n")
    os.replace(temporary, path)
