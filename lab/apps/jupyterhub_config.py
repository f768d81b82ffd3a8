"""JupyterHub's configuration in the lab: `jupyterhub --config` this file, with $LABAPPS_HUB_SETTINGS
naming the settings (lab.apps.hub.HubSettings) written by the runner.

As BinderHub's chart sets JupyterHub up: the base URL from `jupyterhub.hub.baseUrl`; the `binder`
service with the apiToken from the release's Secret, allowed to create users and start and stop
their servers. The proxy is configurable-http-proxy, started by the hub, public side on
proxy-public's address, its API authenticated with the release's proxy secretToken. The hub
stops the proxy and every server when it exits.

Authentication off (the default): no login (NullAuthenticator); users exist only because the
binder service creates them, and servers start with the token BinderHub passes in user_options.
With authentication (`custom.binderauth_enabled`), the chart's values apply as zero-to-jupyterhub
applies them: every `hub.config` section as traitlets config (e.g. GenericOAuthenticator),
`hub.services.binder`'s OAuth client settings, `hub.loadRoles`, `hub.redirectToServer`, and
`singleuser.cmd` (jupyterhub-singleuser, so that the user's own hub token opens the server).
"""
import os
from pathlib import Path

from lab.apps.hub import SETTINGS_ENV, HubSettings, singleuser_command

settings = HubSettings.load(os.environ[SETTINGS_ENV])
state = Path(settings.state_dir)
c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

c.JupyterHub.bind_url = settings.public_url  # also sets base_url (do not set both: the last wins)
c.JupyterHub.hub_bind_url = f"http://{settings.internal_address}:{settings.hub_port}"
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
# Answer a spawn request with 202 at once and report the rest on the progress stream, as a hub
# whose spawns take longer than slow_spawn_timeout (pods on a cluster) does; likewise a stop
# request (202, the server listed as pending stop until it is gone: LabBinderSpawner.stop_delay).
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0, "slow_stop_timeout": 0}

c.ConfigurableHTTPProxy.command = [settings.chp]
c.ConfigurableHTTPProxy.api_url = f"http://{settings.internal_address}:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.auth_token = settings.proxy_token
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")

values = settings.values
hub = values.get("hub") or {}
c.JupyterHub.authenticator_class = "jupyterhub.auth.NullAuthenticator"
binder = {k: v for k, v in ((hub.get("services") or {}).get("binder") or {}).items()
          if k in ("oauth_client_id", "oauth_redirect_uri", "oauth_no_confirm")}
c.JupyterHub.services = [{"name": "binder", "api_token": settings.binder_token, **binder}]
c.JupyterHub.load_roles = [{"name": "binder", "services": ["binder"], "scopes": ["admin:users", "servers"]},
                           *({"name": name, **role} for name, role in (hub.get("loadRoles") or {}).items())]
if "redirectToServer" in hub:
    c.JupyterHub.redirect_to_server = bool(hub["redirectToServer"])
for section, options in (hub.get("config") or {}).items():
    c[section].update(options)

c.JupyterHub.spawner_class = "lab.apps.spawner.LabBinderSpawner"
c.Spawner.ip = settings.internal_address
c.LabBinderSpawner.home_dir_template = str(state / "home" / "{username}")
c.LabBinderSpawner.faults_file = settings.faults_file
c.LabBinderSpawner.auth_enabled = bool((values.get("custom") or {}).get("binderauth_enabled"))
if (values.get("singleuser") or {}).get("cmd"):
    c.LabBinderSpawner.cmd = singleuser_command(values["singleuser"]["cmd"])
