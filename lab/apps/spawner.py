"""BinderHub's spawner, on local processes instead of Kubernetes pods.

Both BinderHub charts define a `BinderSpawner` on KubeSpawner in `jupyterhub.hub.extraConfig`
(pinned: `00-binder`; current: `0-binderspawnermixin` + `00-binder`). With authentication off it
requires `token` and `image` in user_options and starts the image's notebook server with that
token, so that `?token=` and `Authorization: token` open the server. With authentication on
(`auth_enabled`, from the switch each chart reads: see lab.apps.jupyterhub_config) it starts
`singleuser.cmd` (jupyterhub-singleuser) as JupyterHub does, and only the hub's own tokens open
the server. Either way it passes the binder_* options on as environment variables. Here the same
happens with a local process (no image is pulled: the `image` option is only recorded), run by
SimpleLocalProcessSpawner with a home directory per user. A stop takes `stop_delay` seconds more,
as a pod's termination does on a cluster: the hub lists the server (pending stop) until then.
"""
from __future__ import annotations

import asyncio
import sys

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web
from traitlets import Bool, Float, Unicode, default

from lab.apps import faults

_ENV_FROM_OPTIONS = {"repo_url": "BINDER_REPO_URL", "binder_ref_url": "BINDER_REF_URL",
                     "binder_launch_host": "BINDER_LAUNCH_HOST", "binder_request": "BINDER_REQUEST",
                     "binder_persistent_request": "BINDER_PERSISTENT_REQUEST"}


class LabBinderSpawner(SimpleLocalProcessSpawner):
    """BinderSpawner running `jupyter server` (or `singleuser.cmd`, with authentication) as a local process."""

    faults_file = Unicode(None, allow_none=True, config=True, help="see lab.apps.faults")
    auth_enabled = Bool(False, config=True, help="BinderHub's authentication is on")
    stop_delay = Float(3, config=True, help="seconds a stop takes after the process ended (a pod's termination)")

    @default("cmd")
    def _default_cmd(self):
        return [sys.executable, "-m", "jupyter_server"]

    def get_args(self) -> list[str]:
        if self.auth_enabled:
            return [*super().get_args(), "--ServerApp.allow_root=True"]
        return [f"--ip={self.ip or '127.0.0.1'}", f"--port={self.port}",
                f"--ServerApp.base_url={self.server.base_url}",
                f"--IdentityProvider.token={self.user_options['token']}",
                "--ServerApp.trust_xheaders=True",
                "--ServerApp.allow_root=True",  # the lab runs everything as root
                *self.args]

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        for option, variable in _ENV_FROM_OPTIONS.items():
            if option in self.user_options:
                env[variable] = self.user_options[option]
        return env

    async def start(self):
        for required in ("token", "image"):
            if required not in self.user_options and not self.auth_enabled:
                raise web.HTTPError(400, f"{required} required")
        if faults.current(self.faults_file) == faults.SPAWN_FAILS:
            raise RuntimeError(f"image {self.user_options.get('image')} did not start "
                               f"(lab fault {faults.SPAWN_FAILS})")
        return await super().start()

    async def stop(self, now=False):
        await super().stop(now=now)
        await asyncio.sleep(self.stop_delay)
