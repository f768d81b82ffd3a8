"""JupyterHub as the release's `hub` and `proxy` Deployments run it: its settings and command.

One `jupyterhub` process plays both Deployments: the hub, which starts configurable-http-proxy
as its own child (the public side on proxy-public's address, the API on the node's address) and
spawns the users' servers. `jupyterhub_config.py` reads these settings from `HubSettings.file`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
SETTINGS_ENV = "LABAPPS_HUB_SETTINGS"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHP = REPO / ".tools" / "node_modules" / ".bin" / "configurable-http-proxy"


@dataclasses.dataclass(frozen=True)
class HubSettings:
    """What the release decides about JupyterHub, and where the lab runs it."""

    base_url: str            # jupyterhub.hub.baseUrl, e.g. /jupyterhub/
    public_address: str      # proxy-public's load-balancer IP (before it has one: the node's address)
    public_port: int         # proxy-public's port (80)
    internal_address: str    # the node's address: hub API, proxy API and users' servers
    proxy_token: str = dataclasses.field(repr=False)  # the hub's $CONFIGPROXY_AUTH_TOKEN (proxy.secretToken)
    binder_token: str = dataclasses.field(repr=False)  # the binder service's apiToken, as the hub gets it
    state_dir: str           # database, cookie secret, proxy pid file, users' home directories
    values: dict = dataclasses.field(default_factory=dict, repr=False)  # the jupyterhub chart's values, as its
    #                          z2jh.py reads them (hub, singleuser, custom: authentication, roles, ...)
    chart: str = ""          # the jupyterhub chart, e.g. jupyterhub-0.11.1 (its era decides what it reads)
    cookie_secret: str | None = dataclasses.field(default=None, repr=False)  # hex; None: made in state_dir
    chp: str = str(DEFAULT_CHP)
    faults_file: str | None = None
    hub_port: int = 8081     # the chart's `hub` Service port
    proxy_api_port: int = 8001  # the chart's `proxy-api` Service port

    @property
    def public_url(self) -> str:
        return f"http://{self.public_address}:{self.public_port}{self.base_url}"

    @property
    def file(self) -> Path:
        """Where the settings are written for JupyterHub to read."""
        return Path(self.state_dir) / "settings.json"

    @classmethod
    def load(cls, path: str | os.PathLike) -> HubSettings:
        return cls(**json.loads(Path(path).read_text()))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"


def command(settings: HubSettings) -> tuple[list[str], dict[str, str]]:
    """The argv, and the environment variables to add, that run JupyterHub (in `state_dir`) once
    `settings.to_json()` is in `settings.file` (it holds the tokens: mode 0600)."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return ([sys.executable, "-m", "jupyterhub", "--config", str(CONFIG_FILE)],
            {SETTINGS_ENV: str(settings.file), "PYTHONPATH": python_path})


def singleuser_command(cmd: str | list[str]) -> list[str]:
    """`singleuser.cmd` as the lab runs it: the command's name is looked up beside this Python
    (the lab venv's bin, where jupyterhub-singleuser is), then on PATH."""
    name, *args = [cmd] if isinstance(cmd, str) else cmd
    beside = Path(sys.executable).parent / name
    return [str(beside) if beside.exists() else shutil.which(name) or name, *args]
