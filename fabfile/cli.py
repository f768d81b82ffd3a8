"""The `bhops` command: the runbook's namespace as its own program, the way Invoke ships a CLI."""
from __future__ import annotations

import os
from importlib import metadata

import invoke

from . import ns


class Config(invoke.Config):
    """Invoke's configuration with bhops' names: `bhops.yaml` files (in the current directory,
    `~/.bhops.yaml`, `/etc/bhops.yaml`, or `-f FILE`) and `BHOPS_*` environment variables."""

    prefix = "bhops"

    def load_base_conf_files(self) -> None:
        """The system and user files, then the project's: `bhops.yaml` in the current directory."""
        super().load_base_conf_files()
        self.set_project_location(os.getcwd())
        self.load_project(merge=False)


program = invoke.Program(namespace=ns, name="binderhub-ops", binary="bhops",
                         version=metadata.version("binderhub-ops"), config_class=Config)
