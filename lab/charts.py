"""The real BinderHub charts the lab's chart repository serves, and where they come from.

One setting: `$BHOPS_CHARTS`, a directory holding the packaged charts as `helm pull` names them
(`binderhub-VERSION.tgz`); CI and machines without internet point it at a copy of them. Unset,
each chart is fetched once with `helm pull` from the real repository and kept in the lab's state
directory (`charts/`), where `scripts/bootstrap` may also have put them.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

VARIABLE = "BHOPS_CHARTS"
REPOSITORY = "https://hub.jupyter.org/helm-chart/"  # `helm repo add jupyterhub ...`
VERSIONS = ("0.2.0-n600.h36369a7", "1.0.0-0.dev.git.2227.hb9fad995")  # the runbook's pin; the current chart


class ChartsError(Exception):
    """A chart cannot be found or fetched; the message says how to fix it."""


def archive_name(version: str) -> str:
    return f"binderhub-{version}.tgz"


def _pull_hint(version: str) -> str:
    return f"`helm pull jupyterhub/binderhub --version {version}` from {REPOSITORY}"


def configured() -> Path | None:
    """The chart directory `$BHOPS_CHARTS` names (absolute), or None when it is unset."""
    value = os.environ.get(VARIABLE)
    return Path(value).absolute() if value else None


def in_directory(directory: Path, versions: tuple[str, ...] = VERSIONS) -> list[Path]:
    """The archives of `versions` in `directory`; a missing one is an error naming both fixes."""
    if not directory.is_dir():
        raise ChartsError(f"{VARIABLE}={directory} is not a directory: point it at the directory holding "
                          f"{', '.join(archive_name(v) for v in versions)}, or unset it to fetch them with "
                          f"`helm pull` from {REPOSITORY}")
    for version in versions:
        if not (directory / archive_name(version)).is_file():
            raise ChartsError(f"{VARIABLE}={directory} has no {archive_name(version)}: put that packaged chart "
                              f"there, or unset {VARIABLE} so that the lab fetches it ({_pull_hint(version)})")
    return [directory / archive_name(v) for v in versions]


def pulled(cache: Path, helm: Path, versions: tuple[str, ...] = VERSIONS) -> list[Path]:
    """The archives of `versions` in `cache`, each fetched with `helm pull` the first time."""
    cache.mkdir(parents=True, exist_ok=True)
    for version in versions:
        if (cache / archive_name(version)).is_file():
            continue
        if not Path(helm).exists():
            raise ChartsError(f"{helm} is missing: run scripts/install-k8s-tools")
        argv = [str(helm), "pull", "binderhub", "--repo", REPOSITORY, "--version", version,
                "--destination", str(cache)]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode or not (cache / archive_name(version)).is_file():
            raise ChartsError(f"{_pull_hint(version)} failed: {result.stderr.strip() or 'no archive written'}; "
                              f"without internet access, set {VARIABLE} to a directory holding "
                              f"{archive_name(version)}")
    return [cache / archive_name(v) for v in versions]


def archives(cache: Path, helm: Path, directory: Path | None = None) -> list[Path]:
    """Every chart the lab serves: from `directory`, else `$BHOPS_CHARTS`, else `helm pull` into `cache`."""
    directory = directory or configured()
    return in_directory(directory) if directory else pulled(cache, helm)
