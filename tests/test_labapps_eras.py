"""Both real BinderHub charts with authentication on, each with the values the project renders for
its era: the lab's workloads start from what each chart created and reach its settings where that
chart keeps them (see lab.apps.runner). A user logs in to the hub through GenericOAuthenticator at
the lab's IdP, makes a token, and BinderHub launches a server for that user, which only the user's
own token opens (the spawner with authentication on: jupyterhub-singleuser). Then the other era's
switch alone leaves the hub side off (the server opens with the token BinderHub passed, not with the
user's), as each chart ignores that switch. On loopback, as tests/test_labapps.py.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from tests.conftest import die_with_parent, no_process_left, stop
from tests.test_labapps import (
    CURRENT,
    EVENT_STREAM,
    PINNED,
    REPO,
    Release,
    build,
    http_status,
    pytestmark,  # noqa: F401 (the same skips)
    running_release,
    wait_for,
)

USER, PASSWORD = "alice", secrets.token_urlsafe(12)
CLIENT_ID = "jupyterhub"
SPEC = "gh/binder-examples/requirements/HEAD"
# Each chart's hub-side switch, and the other era's, which that chart ignores.
SWITCHES = {PINNED: ("jupyterhub.custom.binderauth_enabled", "jupyterhub.hub.config.BinderSpawner.auth_enabled"),
            CURRENT: ("jupyterhub.hub.config.BinderSpawner.auth_enabled", "jupyterhub.custom.binderauth_enabled")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def identity_provider(workdir: Path, port: int, release: Release):
    """The lab's IdP (`python -m lab.apps idp`) with the hub as its client and USER, stopped by PID."""
    config = workdir / "idp.json"
    config.touch(0o600)
    config.write_text(json.dumps({
        "clients": {CLIENT_ID: {"secret": release.oauth_client_secret,
                                "redirect_uris": [release.hub + "hub/oauth_callback"]}},
        "users": {USER: PASSWORD}}))
    with (workdir / "idp.log").open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "lab.apps", "idp", "--config", str(config),
                                    "--address", "127.0.0.1", "--port", str(port)], cwd=REPO, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        wait_for("the IdP", lambda: http_status(f"http://127.0.0.1:{port}/.well-known/openid-configuration") == 200)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def user_token(release: Release, idp: str) -> str:
    """What a user does: log in to the hub through the IdP's form, then make a token for BinderHub."""
    browser = requests.Session()
    authorize = browser.get(release.hub + "hub/oauth_login", allow_redirects=False, timeout=10).headers["Location"]
    query = parse_qsl(urlsplit(authorize).query)
    assert authorize.startswith(f"{idp}/authorize?") and ("client_id", CLIENT_ID) in query
    form = dict(query, username=USER, password=PASSWORD)
    landed = browser.post(f"{idp}/authorize", data=form, timeout=30)  # → the hub's callback → the hub
    assert landed.ok and landed.url.startswith(release.hub), landed.url
    browser.get(release.hub + "hub/token", timeout=10)  # sets the _xsrf cookie
    made = browser.post(release.hub + f"hub/api/users/{USER}/tokens",
                        json={"scopes": ["access:services!service=binder", f"access:servers!user={USER}"]},
                        headers={"X-XSRFToken": browser.cookies.get("_xsrf", path="/jupyterhub/hub/")}, timeout=10)
    assert made.status_code == 201, made.text
    return made.json()["token"]


def stop_server(release: Release) -> None:
    admin = {"Authorization": f"token {release.binder_token}"}
    requests.delete(release.hub + f"hub/api/users/{USER}/server", headers=admin, timeout=30)
    wait_for("the server to stop", lambda: requests.get(release.hub + f"hub/api/users/{USER}", headers=admin,
                                                         timeout=5).json()["servers"] == {}, timeout=30)


@pytest.mark.parametrize("version", [PINNED, CURRENT], ids=["pinned", "current"])
def test_with_authentication_each_chart_reaches_the_binder_and_the_hub_where_it_keeps_them(tmp_path, real_charts,
                                                                                           version):
    port = _free_port()
    idp = f"http://127.0.0.1:{port}"
    auth = {"client_id": CLIENT_ID, "login_service": "Lab IAM", "authorize_url": f"{idp}/authorize",
            "token_url": f"{idp}/token", "userdata_url": f"{idp}/userinfo", "allow_all": True}
    with no_process_left(), running_release(tmp_path, real_charts, version, auth=auth) as release, \
            identity_provider(tmp_path, port, release):
        # The binder's config (BinderHub.auth_enabled) came from where this chart keeps it.
        assert build(release, SPEC).events == [{"phase": "failed", "status_code": 403, "message": "Forbidden\n"}]

        token = user_token(release, idp)  # the hub's GenericOAuthenticator came from the chart's hub.config
        with_token = {**EVENT_STREAM, "Authorization": f"token {token}"}
        ready = build(release, SPEC, with_token).last()
        assert ready["phase"] == "ready" and ready["url"] == release.hub + f"user/{USER}/", ready
        # The hub's spawner has authentication on: jupyterhub-singleuser, opened by the user's hub token only.
        assert requests.get(ready["url"] + "api/status", headers={"Authorization": f"token {token}"},
                            timeout=10).status_code == 200
        assert http_status(ready["url"] + "api/status", headers={"Authorization": f"token {ready['token']}"},
                       allow_redirects=False) != 200
        stop_server(release)

        # Only the other era's switch on: this chart's hub side is off, the server is started with the
        # token BinderHub passes (as without authentication), and the user's own hub token does not open it.
        own, other = SWITCHES[version]
        hub_pid = release.running()["hub"]["pid"]
        release.helm_upgrade("--set", f"{own}=false", "--set", f"{other}=true")
        wait_for("the hub restarted", lambda: release.running().get("hub", {}).get("pid") not in (None, hub_pid)
                 and http_status(release.hub + "hub/api/health") == 200)
        ready = build(release, SPEC, with_token).last()
        assert ready["phase"] == "ready", ready
        assert http_status(ready["url"] + "api/status", headers={"Authorization": f"token {ready['token']}"}) == 200
        assert http_status(ready["url"] + "api/status", headers={"Authorization": f"token {token}"},
                           allow_redirects=False) != 200
        stop_server(release)
