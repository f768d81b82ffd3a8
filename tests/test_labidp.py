"""The lab's identity provider (`python -m lab.apps idp`), used over loopback as a browser and a client would."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import die_with_parent, stop

REPO = Path(__file__).resolve().parent.parent
CLIENT, SECRET = "jupyterhub", "client-secret-marker-5e1f"
CALLBACK = "http://127.0.0.1:9/hub/oauth_callback"
USER, PASSWORD = "alice", "password-marker-77c3"
CONFIG = {"clients": {CLIENT: {"secret": SECRET, "redirect_uris": [CALLBACK, "http://127.0.0.1:9/cb?tenant=lab"]}},
          "users": {USER: PASSWORD}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_config(path: Path, mode: int) -> Path:
    path.write_text(json.dumps(CONFIG))
    path.chmod(mode)
    return path


def _idp_argv(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "lab.apps", "idp", "--config", str(config), "--address", "127.0.0.1",
            "--port", str(port)]


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    """(base URL, log file) of an IdP running as its own process, stopped by its PID afterwards."""
    tmp = tmp_path_factory.mktemp("idp")
    config, log, port = _write_config(tmp / "idp.json", 0o600), tmp / "idp.log", _free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(_idp_argv(config, port), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"the IdP exited: {log.read_text()}"
            assert time.monotonic() < deadline, "the IdP did not answer within 20s"
            try:
                requests.get(f"{base}/.well-known/openid-configuration", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield base, log
    finally:
        stop(proc)


def _login(base: str, redirect_uri: str = CALLBACK, password: str = PASSWORD) -> requests.Response:
    form = {"username": USER, "password": password, "client_id": CLIENT, "redirect_uri": redirect_uri,
            "state": "st-123", "scope": "openid profile"}
    return requests.post(f"{base}/authorize", data=form, allow_redirects=False, timeout=5)


def _code(base: str, redirect_uri: str = CALLBACK) -> str:
    return parse_qs(urlsplit(_login(base, redirect_uri).headers["Location"]).query)["code"][0]


def _exchange(base: str, code: str, redirect_uri: str = CALLBACK, secret: str = SECRET) -> requests.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return requests.post(f"{base}/token", data=form, auth=(CLIENT, secret), timeout=5)


def test_code_flow_logs_the_user_in(idp):
    base, log = idp
    discovery = requests.get(f"{base}/.well-known/openid-configuration", timeout=5).json()
    assert discovery["token_endpoint"] == f"{base}/token"
    assert discovery["userinfo_endpoint"] == f"{base}/userinfo"

    params = {"response_type": "code", "client_id": CLIENT, "redirect_uri": CALLBACK, "state": "st-123",
              "scope": "openid profile"}
    page = requests.get(discovery["authorization_endpoint"], params=params, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'method="post"' in page.text and 'name="password"' in page.text and 'value="st-123"' in page.text

    login = _login(base)
    assert login.status_code == 302
    location = urlsplit(login.headers["Location"])
    assert location._replace(query="").geturl() == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]

    token = _exchange(base, query["code"][0])
    assert token.status_code == 200 and token.headers["Cache-Control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "openid profile"

    form_auth = {"grant_type": "authorization_code", "code": _code(base), "redirect_uri": CALLBACK,
                 "client_id": CLIENT, "client_secret": SECRET}
    other = requests.post(f"{base}/token", data=form_auth, timeout=5)
    assert other.status_code == 200 and other.json()["access_token"] != body["access_token"]

    user = requests.get(f"{base}/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=5)
    assert user.status_code == 200 and user.json()["preferred_username"] == USER

    logged = log.read_text()
    assert USER in logged
    for secret in (SECRET, PASSWORD, query["code"][0], body["access_token"]):
        assert secret not in logged


def test_redirect_uri_with_a_query_gets_the_code_appended(idp):
    location = _login(idp[0], "http://127.0.0.1:9/cb?tenant=lab").headers["Location"]
    assert location.startswith("http://127.0.0.1:9/cb?tenant=lab&code=")


def test_wrong_password_shows_the_form_again(idp):
    response = _login(idp[0], password="not-it")
    assert response.status_code == 401 and "Location" not in response.headers
    assert "Invalid username or password" in response.text and 'name="password"' in response.text


@pytest.mark.parametrize("method", ["get", "post"])
def test_unregistered_redirect_uri_is_refused_without_redirect(idp, method):
    params = {"response_type": "code", "client_id": CLIENT, "redirect_uri": "http://127.0.0.1:9/evil",
              "username": USER, "password": PASSWORD}
    send = {"get": {"params": params}, "post": {"data": params}}[method]
    response = requests.request(method, f"{idp[0]}/authorize", allow_redirects=False, timeout=5, **send)
    assert response.status_code == 400 and "Location" not in response.headers


def test_unsupported_response_type_goes_back_to_the_client(idp):
    params = {"response_type": "token", "client_id": CLIENT, "redirect_uri": CALLBACK, "state": "s1"}
    response = requests.get(f"{idp[0]}/authorize", params=params, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query) == {"error": ["unsupported_response_type"],
                                                                      "state": ["s1"]}


def test_wrong_client_secret_is_invalid_client(idp):
    response = _exchange(idp[0], _code(idp[0]), secret="wrong")
    assert response.status_code == 401 and response.json() == {"error": "invalid_client"}


def test_code_is_single_use(idp):
    code = _code(idp[0])
    assert _exchange(idp[0], code).status_code == 200
    again = _exchange(idp[0], code)
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}


def test_code_with_another_redirect_uri_is_invalid_grant(idp):
    response = _exchange(idp[0], _code(idp[0]), redirect_uri="http://127.0.0.1:9/cb?tenant=lab")
    assert response.status_code == 400 and response.json() == {"error": "invalid_grant"}


def test_userinfo_refuses_a_bad_token(idp):
    response = requests.get(f"{idp[0]}/userinfo", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert response.status_code == 401 and response.json() == {"error": "invalid_token"}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_group_readable_config_is_refused(tmp_path):
    config = _write_config(tmp_path / "idp.json", 0o640)
    proc = subprocess.run(_idp_argv(config, _free_port()), cwd=REPO, capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode != 0
    assert str(config) in proc.stderr and "chmod 600" in proc.stderr
