"""The `bhops` command: the runbook's namespace as its own program, the way Invoke ships a CLI."""
from __future__ import annotations

import os

import invoke

from . import collection


class Config(invoke.Config):
    """Invoke's configuration with bhops' names: `bhops.yaml` files (in the current directory,
    `~/.bhops.yaml`, `/etc/bhops.yaml`, or `-f FILE`) and `BHOPS_*` environment variables."""

    prefix = "bhops"

    def load_base_conf_files(self) -> None:
        """The system and user files, then the project's: `bhops.yaml` in the current directory."""
        super().load_base_conf_files()
        self.set_project_location(os.getcwd())
        self.load_project(merge=False)


class Program(invoke.Program):
    """Invoke's Program loading only the task modules the command line names (all of them for
    --list, --help or a name it does not know), and reading its version only when asked."""

    def parse_collection(self) -> None:
        self.namespace = collection(self.core.unparsed if self.core else None)
        super().parse_collection()

    def print_version(self) -> None:
        from importlib import metadata  # slow to import: only for --version

        self.version = metadata.version("binderhub-ops")
        super().print_version()


program = Program(name="binderhub-ops", binary="bhops", config_class=Config)
