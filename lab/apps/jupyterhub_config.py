"""JupyterHub's configuration in the lab: `jupyterhub --config` this file, with $LABAPPS_HUB_SETTINGS
naming the settings (lab.apps.hub.HubSettings) written by the runner.

As BinderHub's chart sets JupyterHub up: the base URL from `jupyterhub.hub.baseUrl`; the `binder`
service with the apiToken from the release's Secret, allowed to create users and start and stop
their servers. The proxy is configurable-http-proxy, started by the hub, public side on
proxy-public's address, its API authenticated with the release's proxy secretToken. The hub
stops the proxy and every server when it exits.

Authentication off (the default): no login (NullAuthenticator); users exist only because the
binder service creates them, and servers start with the token BinderHub passes in user_options.
The chart's values apply as its zero-to-jupyterhub applies them: every `hub.config` section as
traitlets config (e.g. GenericOAuthenticator), `hub.services.binder`'s OAuth client settings,
`hub.redirectToServer`, with authentication `singleuser.cmd` (jupyterhub-singleuser, so that the
user's own hub token opens the server; without it the lab's server is always jupyter_server, as
the image's own command would be), the cookie secret where the chart seeds one. What differs by era, read from
`HubSettings.chart`:
- z2jh 0.x (the pinned chart, JupyterHub 1.3, oauthenticator 0.12): authentication is on when
  `custom.binderauth_enabled` is (the chart's `00-binder` reads it; its BinderSpawner has no
  traits, so `hub.config.BinderSpawner` changes nothing); there are no roles or scopes
  (`hub.loadRoles` is not read): the binder service is an admin (`admin: true`) and every user may
  use every service, which this hub (JupyterHub 5+) grants as roles; GenericOAuthenticator lets in
  whoever logs in unless `allowed_users` is set (`allow_all` means nothing to 0.12).
- z2jh 1+ (the current chart): authentication is on when `hub.config.BinderSpawner.auth_enabled`
  is (`custom.binderauth_enabled` is ignored); roles are `hub.loadRoles`, where the chart gives the
  binder service its scopes.
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
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")  # unless the chart seeds one
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
config = hub.get("config") or {}
pinned_era = settings.chart.startswith("jupyterhub-0.")  # z2jh 0.x: JupyterHub 1.3 (see above)
if settings.cookie_secret:
    c.JupyterHub.cookie_secret = bytes.fromhex(settings.cookie_secret)
binder = {k: v for k, v in ((hub.get("services") or {}).get("binder") or {}).items()
          if k in ("oauth_client_id", "oauth_redirect_uri", "oauth_no_confirm", "display")}
c.JupyterHub.services = [{"name": "binder", "api_token": settings.binder_token, **binder}]
if pinned_era:
    c.JupyterHub.load_roles = [{"name": "binder", "services": ["binder"], "scopes": ["admin:users", "servers"]},
                               {"name": "user", "scopes": ["self", "access:services"]}]
else:
    c.JupyterHub.load_roles = [{"name": name, **role} for name, role in (hub.get("loadRoles") or {}).items()]
if "redirectToServer" in hub:
    c.JupyterHub.redirect_to_server = bool(hub["redirectToServer"])
c.JupyterHub.authenticator_class = "null"
for section, options in config.items():
    c[section].update(options)
if c.JupyterHub.get("authenticator_class") in ("null", "nullauthenticator.NullAuthenticator"):
    c.JupyterHub.authenticator_class = "jupyterhub.auth.NullAuthenticator"  # built into JupyterHub 2+
if pinned_era and "GenericOAuthenticator" in config:
    c.GenericOAuthenticator.allow_all = not config["GenericOAuthenticator"].get("allowed_users")

c.JupyterHub.spawner_class = "lab.apps.spawner.LabBinderSpawner"
c.Spawner.ip = settings.internal_address
c.LabBinderSpawner.home_dir_template = str(state / "home" / "{username}")
c.LabBinderSpawner.faults_file = settings.faults_file
c.LabBinderSpawner.auth_enabled = auth_enabled = bool(
    (values.get("custom") or {}).get("binderauth_enabled") if pinned_era
    else (config.get("BinderSpawner") or {}).get("auth_enabled"))
if auth_enabled and (values.get("singleuser") or {}).get("cmd"):
    c.LabBinderSpawner.cmd = singleuser_command(values["singleuser"]["cmd"])
