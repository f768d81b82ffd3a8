"""The build half of `/build`: image names, the images "built" so far, and the build log.

No image is built in the lab: repo2docker does not run and nothing is pushed. The build is a
short log in repo2docker's phases (`fetching`, `building`) that says so, and the image name is
only recorded, so that a second build of the same spec finds it ("Found built image,
launching...") as BinderHub finds a pushed image in its registry.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import string
from collections.abc import AsyncIterator
from pathlib import Path

from lab.apps import faults
from lab.apps.providers import Repo

_SAFE_CHARS = frozenset(string.ascii_letters + string.digits)


def _escape(text: str) -> str:
    """escapism.escape(text, safe=letters+digits, escape_char="-"), as BinderHub uses it."""
    return "".join(c if c in _SAFE_CHARS else "".join(f"-{b:X}" for b in c.encode()) for c in text)


def _safe_build_slug(build_slug: str, limit: int, hash_length: int = 6) -> str:
    digest = hashlib.sha256(build_slug.encode()).hexdigest()
    return f"{_escape(build_slug)[:limit - hash_length - 1]}-{digest[:hash_length]}".lower()


def image_name(image_prefix: str, repo: Repo) -> str:
    """BinderHub's image name: `<image_prefix><safe build slug>:<resolved ref>`."""
    slug = _safe_build_slug(repo.build_slug, limit=255 - len(image_prefix))
    return f"{image_prefix}{slug}:{repo.ref}".replace("_", "-").lower()


class BuiltImages:
    """The image names built so far (the registry's catalogue), kept in a JSON file if given."""

    def __init__(self, path: Path | None):
        self.path = path
        self._names: set[str] = set(json.loads(path.read_text())) if path and path.exists() else set()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def add(self, name: str) -> None:
        self._names.add(name)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(sorted(self._names), indent=1) + "\n")


_PIP_INSTALL = '${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "requirements.txt"'


def _log(repo: Repo) -> list[tuple[str, str]]:
    return [
        ("fetching", "Picked Git content provider.\n"),
        ("fetching", f"Cloning into '/tmp/repo2docker{secrets.token_hex(4)}'...\n"),
        ("fetching", f"HEAD is now at {repo.ref[:7]}\n"),
        ("building", "Lab build: repo2docker does not run in the binderhub-ops lab and no image is "
                     "built; the launch starts a local Jupyter server.\n"),
        ("building", "Using PythonBuildPack builder\n"),
        ("building", "Step 1/3 : FROM buildpack-deps:jammy\n"),
        ("building", "Step 2/3 : COPY --chown=1000:1000 src/ ${REPO_DIR}/\n"),
        ("building", f"Step 3/3 : RUN {_PIP_INSTALL}\n"),
    ]


async def build_log(repo: Repo, image: str, step_delay: float, fault: str | None = None) -> AsyncIterator[dict]:
    """The build's events after `waiting`, `step_delay` seconds apart. With the fault
    `build-fails` they end in `failed` as a failing repo2docker does; with `stream-stalls` they
    stop after a few lines and the generator never ends (the stream stays open)."""
    for phase, message in _log(repo):
        await asyncio.sleep(step_delay)
        yield {"phase": phase, "message": message}
        if fault == faults.STREAM_STALLS and phase == "building":
            await asyncio.Event().wait()
    await asyncio.sleep(step_delay)
    if fault == faults.BUILD_FAILS:
        yield {"phase": "building", "message": "ERROR: Could not find a version that satisfies the "
                                               "requirement lab-fault-build-fails\n"}
        yield {"phase": "failed", "message": f"The command '/bin/sh -c {_PIP_INSTALL}' returned a non-zero code: 1\n"}
    else:
        yield {"phase": "building", "message": f"Successfully tagged {image}\n"}
