"""The chart's values files, `config.yaml` and `secret.yaml`, rendered from templates/ for the chart's era."""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Mapping

import yaml

from . import eras, inventory
from .buildpath import Builder
from .inventory import Host, InventoryError
from .secretfile import MASK, Secret


@dataclass(frozen=True)
class Values:
    """The two values files; `secret` reaches a host only on helm's stdin, never in a file."""

    config: str
    secret: str

    def __repr__(self) -> str:
        return f"Values(config={len(self.config)} chars, secret={MASK!r})"

    def merged(self) -> dict:
        """Both files merged as helm merges its -f files, later ones winning."""
        return deep_merge(yaml.safe_load(self.config) or {}, yaml.safe_load(self.secret) or {})


def binder_url(host: Host) -> str:
    """BinderHub's public URL, including its base URL."""
    return inventory.public_url(host) + host.vars["binder_base_url"]


def hub_url(host: Host) -> str:
    """BinderHub's `hub_url`: JupyterHub's public URL including its base URL."""
    return inventory.public_url(host) + host.vars["hub_base_url"]


def needed_secrets(host: Host) -> list[str]:
    """The operator-provided secrets this host's values use."""
    return ((["registry_password"] if host.vars["use_registry"] else [])
            + (["oauth_client_secret"] if host.vars["auth"] else []))


def render(host: Host, env: str, secrets: Mapping[str, Secret], builder: Builder) -> Values:
    """Render both files for the control-plane `host` of environment `env`, as its `chart_version`
    reads them, with the image `builder` (buildpath.for_run)."""
    from .rendering import render as render_template  # jinja2: imported only by the tasks that render

    missing = [n for n in ("binder_api_token", "proxy_secret_token", *needed_secrets(host)) if n not in secrets]
    if missing:
        raise InventoryError(f"the secrets file of {env} lacks {', '.join(missing)}; "
                             f"run `invoke secrets.init --env {env}`")
    era = eras.era_of(host.vars["chart_version"], f"host {host.name}: vars.chart_version")
    context = {"env": env, "v": host.vars, "era": era.name, "hub_url": hub_url(host),
               "public_url": inventory.public_url(host) + "/", "floating_ip": host.vars["floating_ip"],
               "builder": builder}
    revealed = {k: v.reveal() for k, v in secrets.items()}
    return Values(render_template("config.yaml.j2", **context),
                  render_template("secret.yaml.j2", **context, s=revealed))


def deep_merge(base: dict, over: dict) -> dict:
    """`over` merged into `base`: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: Where the values hold each secret; `masked` blanks these in anything shown.
SECRET_PATHS = {
    "binder_api_token": ("jupyterhub", "hub", "services", "binder", "apiToken"),
    "proxy_secret_token": ("jupyterhub", "proxy", "secretToken"),
    "oauth_client_secret": ("jupyterhub", "hub", "config", "GenericOAuthenticator", "client_secret"),
    "registry_password": ("registry", "password"),
}


def _get(data: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def masked(data: dict, against: dict | None = None) -> dict:
    """A copy with every secret masked; one that differs from `against` reads as changed."""
    out = copy.deepcopy(data)
    for path in SECRET_PATHS.values():
        value = _get(out, path)
        if value is not None:
            changed = against is not None and _get(against, path) != value
            _get(out, path[:-1])[path[-1]] = MASK + (" (changed)" if changed else "")
    return out


def secrets_in(data: dict) -> dict[str, str]:
    """The secrets a release's values hold, by name (to recover a lost secrets file)."""
    found = {name: _get(data, path) for name, path in SECRET_PATHS.items()}
    return {name: value for name, value in found.items() if isinstance(value, str) and value}


def diff(deployed: dict, wanted: dict) -> str:
    """A unified diff from the deployed values to the rendered ones, secrets masked."""
    dump = lambda d: yaml.safe_dump(d, sort_keys=True, default_flow_style=False).splitlines(keepends=True)  # noqa: E731
    return "".join(difflib.unified_diff(dump(masked(deployed)), dump(masked(wanted, deployed)),
                                        fromfile="deployed (helm get values)", tofile="rendered"))
