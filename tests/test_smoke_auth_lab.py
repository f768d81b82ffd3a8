"""smoke with authentication on, on the lab: the release's GenericOAuthenticator logs users in
against the lab's identity provider (`python -m lab.apps idp`, playing the site's IAM), a user
makes a JupyterHub API token as an operator would, and smoke builds and checks the server with it."""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from fabfile import secretfile
from lab import hosts as labhosts
from tests.conftest import forget_hub_database, lab_ca, lab_inventory, run_task, stop

pytestmark = pytest.mark.lab

HUB = "https://10.77.0.5/jupyterhub/"
IDP = "http://10.77.0.1:8880"  # the lab bridge's address: every lab host reaches it
CLIENT_ID = "binderhub-lab"
USERS = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}
BINDER_SCOPE = "access:services!service=binder"
CURRENT = "1.0.0-0.dev.git.2227.hb9fad995"
PROFILES = [{"display_name": "Lab default", "default": True},
            {"display_name": "Lab data science", "description": "Pandas and friends",
             "image": "quay.io/jupyterhub/k8s-singleuser-sample:4.2.0"}]


@pytest.fixture(scope="module")
def auth_inventory(lab, lab_secrets, tmp_path_factory):
    """The lab deployed with the current chart and authentication on (going back to the lab's own
    chart without authentication at the end), and the identity provider the hub logs users in
    with. The current chart: the lab's only BinderHub is today's, which lets a user in by the
    JupyterHub 2+ scope access:services!service=binder; the pinned chart's JupyterHub 1.3 has no
    scopes, which today's BinderHub asks of a user (jupyterhub/services/auth.py check_scopes)."""
    tmp = tmp_path_factory.mktemp("auth")
    path = lab_inventory(tmp, chart_version=CURRENT, auth={
        "login_service": "Lab IdP", "client_id": CLIENT_ID, "authorize_url": f"{IDP}/authorize",
        "token_url": f"{IDP}/token", "userdata_url": f"{IDP}/userinfo", "allowed_users": sorted(USERS)},
        profiles=PROFILES)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
        env.setenv("BHOPS_OAUTH_CLIENT_SECRET", secrets.token_urlsafe(24))
        code, out = run_task("deploy", "--env", "lab", "--inventory", str(path), "--skip-smoke", "--break-lock")
    assert code == 0, out
    # The IdP knows the hub by the client secret the deployment holds (recovered from the release
    # when an earlier run deployed one, not rotated).
    client_secret = secretfile.load(lab_secrets / "lab.yaml")["oauth_client_secret"].reveal()
    config = tmp / "idp.json"
    config.touch(mode=0o600)
    config.write_text(json.dumps({
        "clients": {CLIENT_ID: {"secret": client_secret, "redirect_uris": [f"{HUB}hub/oauth_callback"]}},
        "users": USERS}))
    process = subprocess.Popen([sys.executable, "-m", "lab.apps", "idp", "--config", str(config), "--address",
                                urlsplit(IDP).hostname, "--port", str(urlsplit(IDP).port)],
                               env={**os.environ, "PYTHONPATH": str(labhosts.REPO)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        # The lab's Deployments are ready at once, but its runner restarts the hub a few seconds
        # later: wait until a user can log in.
        wait_for(lambda: log_in("alice") is not None, "a login at the hub through the IdP")
        yield path
    finally:
        stop(process)
        # Back to the lab's own (pinned) chart, whose JupyterHub 1.3 cannot read JupyterHub 6's
        # database: the next hub pod starts with none.
        forget_hub_database(restart=False)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
            code, out = run_task("deploy", "--env", "lab", "--skip-smoke", "--break-lock")
        assert code == 0, out


def wait_for(ready, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def log_in(user: str) -> requests.Session | None:
    """A browser logged in to the hub through the IdP's form (None if the hub did not take it)."""
    browser = requests.Session()
    browser.verify = lab_ca()
    browser.trust_env = False  # else $REQUESTS_CA_BUNDLE wins over `verify` (psf/requests#3829)
    authorize = browser.get(f"{HUB}hub/oauth_login", allow_redirects=False, timeout=10).headers.get("Location")
    if not authorize:  # the hub is (re)starting: the proxy host answers 502
        return None
    assert browser.get(authorize, timeout=10).status_code == 200  # the IdP's login form
    form = dict(parse_qsl(urlsplit(authorize).query), username=user, password=USERS[user])
    landed = browser.post(f"{IDP}/authorize", data=form, timeout=30)  # → the hub's callback → the hub
    return browser if landed.ok and landed.url.startswith(HUB) else None


def hub_token(user: str, scopes: list[str]) -> str:
    """What an operator does: log in to the hub, then make a token on its token page."""
    browser = log_in(user)
    assert browser, f"{user} could not log in"
    browser.get(f"{HUB}hub/token", timeout=10)  # the token page sets the _xsrf cookie
    made = browser.post(f"{HUB}hub/api/users/{user}/tokens", json={"scopes": scopes, "note": "smoke test"},
                        headers={"X-XSRFToken": browser.cookies.get("_xsrf", path="/jupyterhub/hub/")}, timeout=10)
    assert made.status_code == 201, made.text
    return made.json()["token"]


def hub_users(lab_secrets) -> dict[str, dict]:
    """The hub's users and their servers, asked as the binder service."""
    token = secretfile.load(lab_secrets / "lab.yaml")["binder_api_token"].reveal()
    users = requests.get(f"{HUB}hub/api/users", headers={"Authorization": f"token {token}"}, timeout=10,
                         verify=lab_ca())
    return {u["name"]: u.get("servers") or {} for u in users.json()}


def test_smoke_passes_with_a_users_token_and_launches_as_that_user(auth_inventory, lab_secrets, cli, monkeypatch,
                                                                     tmp_path):
    token = hub_token("alice", [BINDER_SCOPE, "access:servers!user=alice"])
    before = hub_users(lab_secrets)
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
    monkeypatch.setenv("BHOPS_HUB_TOKEN", token)
    code, out = cli("smoke", "--env", "lab", "--inventory", str(auth_inventory), "--repo", "gh/lab-tests/auth/HEAD",
                    "--report", str(tmp_path / "r.json"))
    assert code == 0, out
    # The ready event's token opens no server here: only alice's hub token (jupyterhub-singleuser) did.
    assert "smoke | smoke.kernel-idle | ok | kernel_info answered, execution_state idle" in out
    assert "smoke | smoke.server-stop | ok" in out
    users = hub_users(lab_secrets)
    assert users.keys() == before.keys()  # launched as alice: no temporary user was made
    assert users["alice"] == {}           # and stopped afterwards
    assert token not in out and token not in (tmp_path / "r.json").read_text()


def test_deploys_smoke_stage_takes_the_token_from_the_secrets_file(auth_inventory, lab_secrets, cli, monkeypatch):
    token = hub_token("alice", [BINDER_SCOPE, "access:servers!user=alice"])
    path = lab_secrets / "lab.yaml"
    kept = secretfile.load(path)
    secretfile.save(path, {**kept, "smoke_hub_token": secretfile.Secret(token)})
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
    monkeypatch.delenv("BHOPS_HUB_TOKEN", raising=False)
    try:
        code, out = cli("deploy", "--env", "lab", "--inventory", str(auth_inventory), "--only", "smoke", "--break-lock")
    finally:
        secretfile.save(path, kept)
    assert code == 0, out
    assert "smoke | smoke | ok" in out and token not in out


def test_without_a_token_smoke_says_which_token_to_make(auth_inventory, lab_secrets, cli, monkeypatch):
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
    monkeypatch.delenv("BHOPS_HUB_TOKEN", raising=False)
    code, out = cli("smoke", "--env", "lab", "--inventory", str(auth_inventory))
    assert code == 1
    assert "smoke | smoke | failed | authentication is on: set $BHOPS_HUB_TOKEN" in out
    assert "access:services!service=binder" in out
    code, out = cli("deploy", "--env", "lab", "--inventory", str(auth_inventory), "--only", "smoke", "--break-lock")
    assert code == 1 and "; or deploy with --skip-smoke" in out


def test_binderhub_answers_a_request_without_token_with_403_forbidden(auth_inventory, cli, monkeypatch, tmp_path):
    monkeypatch.setenv("BHOPS_INVENTORY", str(tmp_path / "none.yaml"))  # --binder-url needs no inventory
    monkeypatch.delenv("BHOPS_HUB_TOKEN", raising=False)
    code, out = cli("smoke", "--binder-url", "https://10.77.0.5/binderhub/", "--ca-bundle", lab_ca())
    assert code == 1
    assert "smoke | smoke | failed | failed in phase request (403): Forbidden; hint: no token, or one the hub " \
           "does not know: authentication is on: set $BHOPS_HUB_TOKEN" in out
    code, out = cli("smoke", "--binder-url", "https://10.77.0.5/binderhub/", "--ca-bundle", lab_ca(),
                    "--auth")  # nothing sent
    assert code == 1 and "smoke | smoke | failed | authentication is on" in out and "(403)" not in out


def test_two_runs_back_to_back_both_pass_and_the_hub_forgets_the_server(auth_inventory, lab_secrets, cli,
                                                                         monkeypatch):
    token = hub_token("alice", [BINDER_SCOPE, "access:servers!user=alice"])
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
    monkeypatch.setenv("BHOPS_HUB_TOKEN", token)
    for run in (1, 2):
        started = time.monotonic()
        code, out = cli("smoke", "--env", "lab", "--inventory", str(auth_inventory), "--repo", "gh/lab-tests/auth/HEAD")
        assert code == 0, f"run {run}: {out}"
        assert "409" not in out and "already has a running server" not in out
        assert re.search(r"smoke.server-stop \| ok \| hub: HTTP 20[24], gone from the hub after", out), out
        assert hub_users(lab_secrets)["alice"] == {}, f"the hub still lists alice's server after run {run}"
        assert time.monotonic() - started < 40, f"run {run} took {time.monotonic() - started:.0f} s"


def test_a_token_without_access_to_binderhub_is_refused(auth_inventory, lab_secrets, cli, monkeypatch):
    token = hub_token("bob", ["access:servers!user=bob"])
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
    monkeypatch.setenv("BHOPS_HUB_TOKEN", token)
    code, out = cli("smoke", "--env", "lab", "--inventory", str(auth_inventory))
    assert code == 1
    assert "failed in phase request (403): user bob is not allowed." in out
    assert "hint: this token's user may not use BinderHub" in out
    assert token not in out
    assert hub_users(lab_secrets)["bob"] == {}  # nothing was launched for bob


def test_the_profile_list_reaches_the_hubs_spawner(auth_inventory):
    """`profiles` become the chart's singleuser.profileList, which z2jh hands to KubeSpawner: its
    options form, on the hub's spawn page, offers each one."""
    browser = log_in("bob")
    assert browser, "bob could not log in"
    page = browser.get(f"{HUB}hub/spawn", timeout=10)
    assert page.status_code == 200, page.text
    for profile in PROFILES:
        assert profile["display_name"] in page.text
    assert "Pandas and friends" in page.text
