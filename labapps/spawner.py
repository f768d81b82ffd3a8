"""BinderHub's spawner, on local processes instead of Kubernetes pods.

The BinderHub chart (0.2.0-n600, `jupyterhub.hub.extraConfig.00-binder`) subclasses KubeSpawner;
with authentication off it requires `token` and `image` in user_options and starts the image's
`jupyter-notebook` (`jupyterhub.singleuser.cmd`) with that token, so that `?token=` and
`Authorization: token` open the server, and passes the binder_* options on as environment
variables. Here the same happens with a local `jupyter server` process (no image is pulled: the
`image` option is only recorded), run by SimpleLocalProcessSpawner with a home directory per user.
"""
from __future__ import annotations

import sys

from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web
from traitlets import Unicode, default

from labapps import faults

_ENV_FROM_OPTIONS = {"repo_url": "BINDER_REPO_URL", "binder_ref_url": "BINDER_REF_URL",
                     "binder_launch_host": "BINDER_LAUNCH_HOST", "binder_request": "BINDER_REQUEST",
                     "binder_persistent_request": "BINDER_PERSISTENT_REQUEST"}


class LabBinderSpawner(SimpleLocalProcessSpawner):
    """BinderSpawner (authentication off) running `jupyter server` as a local process."""

    faults_file = Unicode(None, allow_none=True, config=True, help="see labapps.faults")

    @default("cmd")
    def _default_cmd(self):
        return [sys.executable, "-m", "jupyter_server"]

    def get_args(self) -> list[str]:
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
            if required not in self.user_options:
                raise web.HTTPError(400, f"{required} required")
        if faults.current(self.faults_file) == faults.SPAWN_FAILS:
            raise RuntimeError(f"image {self.user_options['image']} did not start "
                               f"(lab fault {faults.SPAWN_FAILS})")
        return await super().start()
