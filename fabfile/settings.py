"""Settings and paths, from one place: Invoke's configuration, and the `BHOPS_*` variables.

Precedence: flag > environment > config file > default. `bhops` reads `bhops.yaml` (in the
current directory, `~/.bhops.yaml`, `/etc/bhops.yaml` or `-f FILE`); `invoke` in a checkout
reads `invoke.yaml` beside tasks.py (and Invoke's other files). The `BHOPS_*` variables are read
here under either program. Relative defaults sit beside the inventory file. The secrets'
variables (SECRET_ENV) are no settings: they are read from the environment only.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

#: Config keys and their defaults (`ns.configure`); None means "derived", see `resolve`.
DEFAULTS = {"inventory": None, "secrets_dir": None, "logs_dir": None, "diagnostics_dir": None}
#: The environment variable of each setting.
ENV = {key: f"BHOPS_{key.upper()}" for key in DEFAULTS}
#: The secrets an operator gives through the environment only, never a config file: their variables.
SECRET_ENV = {"registry_password": "BHOPS_REGISTRY_PASSWORD", "oauth_client_secret": "BHOPS_OAUTH_CLIENT_SECRET",
              "hub_token": "BHOPS_HUB_TOKEN"}


@dataclass(frozen=True)
class Settings:
    """Where a run finds its inventory and keeps its secrets, logs and diagnostics bundles."""

    inventory: Path
    secrets_dir: Path
    logs_dir: Path
    diagnostics_dir: Path


def _project_dir(config: Any) -> Path:
    """Where Invoke found tasks.py (a checkout under `invoke`), else the current directory."""
    prefix = getattr(config, "_project_prefix", None) if config is not None else None
    return Path(prefix) if prefix else Path.cwd()


def resolve(config: Mapping[str, Any] | None = None, inventory: str | None = None) -> Settings:
    """The settings of a run: `inventory` is the --inventory flag, `config` Invoke's config
    (files and defaults); the environment wins over it."""
    def pick(key: str, flag: str | None = None) -> Path | None:
        value = flag or os.environ.get(ENV[key]) or (config.get(key) if config is not None else None)
        return Path(value).expanduser() if value else None

    hosts = pick("inventory", inventory) or _project_dir(config) / "hosts.yaml"
    return Settings(inventory=hosts,
                    secrets_dir=pick("secrets_dir") or hosts.parent / "secrets",
                    logs_dir=pick("logs_dir") or hosts.parent / "logs",
                    diagnostics_dir=pick("diagnostics_dir") or hosts.parent / "diagnostics")


def command() -> str:
    """The program the operator runs the tasks with (`bhops`, or `invoke` in a checkout), for hints."""
    return "bhops" if Path(sys.argv[0]).name == "bhops" else "invoke"
