"""smoke against HTTP servers on loopback (no lab) that replay streams recorded from the real
BinderHub (tests/data/binderhub-streams/) or send BinderHub's messages: input checks, progress
lines, reports on every exit path, hints, and where the tokens may go. Each server records every
request it gets."""
from __future__ import annotations

import importlib.util
import json
import re
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from fabfile import smoke

STREAMS = Path(__file__).resolve().parent / "data" / "binderhub-streams"
MARKER = "smoke-test-user-token-0123456789"


def body(name: str) -> bytes:
    """The body of a recorded HTTP response (after the blank line that ends the headers)."""
    raw = (STREAMS / name).read_bytes()
    return raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[1]


def event(**data) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


CUT = object()


class Fake:
    """An HTTP server on a free loopback port: a GET gets `script` (bytes are sent, numbers are
    seconds of silence, CUT closes the connection in the middle of a chunk) unless `answers` has
    its (method, path): (status, headers, body), or a
    function of the requests so far giving one; every request is recorded as (method, path, headers)."""

    def __init__(self, script=(), answers=None):
        self.script, self.answers, self.requests = list(script), dict(answers or {}), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked, as BinderHub (tornado) sends its stream

            def _answer(self):
                fake.requests.append((self.command, self.path, dict(self.headers)))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = fake.answers.get((self.command, self.path))
                if answer is None and self.command != "GET":
                    answer = (404, {}, b"")
                if answer is None:
                    return False
                status, headers, data = answer(fake.requests) if callable(answer) else answer
                self.send_response(status)
                for name, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                return True

            def do_GET(self):
                if self._answer():
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                for step in fake.script:
                    if step is CUT:
                        self.wfile.write(b"100\r\ndata: {")
                        return
                    if isinstance(step, bytes):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(step), step))
                        self.wfile.flush()
                    else:
                        time.sleep(step)
                self.wfile.write(b"0\r\n\r\n")

            do_POST = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def no_token(monkeypatch):
    monkeypatch.delenv(smoke.TOKEN_ENV, raising=False)


@pytest.mark.parametrize("url", ["notaurl", "ftp://x", "http://h:99999", "http://h:port/", "http://"])
def test_a_bad_binder_url_is_one_line_and_nothing_is_sent(cli, url):
    code, out = cli("smoke", "--binder-url", url)
    assert code == 1
    assert out.count("\n") <= 1 and out.startswith(f"--binder-url {url!r}") and "Traceback" not in out


@pytest.mark.parametrize("flag, value", [("--timeout", "abc"), ("--timeout", "1.5x"), ("--silence", "0"),
                                         ("--silence", "nan")])
def test_a_bad_number_of_seconds_is_one_line(cli, flag, value):
    code, out = cli("smoke", "--binder-url", "http://127.0.0.1:9/", f"{flag}={value}")
    assert code == 1 and out == f"{flag} {value!r}: give a number of seconds above 0\n"


@pytest.mark.parametrize("repo", ["gh/x", "gh/org/repo", "x", "nope/a/b/c", "gh/org//HEAD", "gh/org/re po/HEAD"])
def test_a_repo_that_is_not_provider_spec_is_refused_before_the_request(cli, no_token, repo):
    with Fake([event(phase="failed", message="x")]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url, "--repo", repo)
    assert code == 1 and out.startswith(f"--repo {repo!r}") and "e.g. gh/binder-examples/requirements/HEAD" in out
    assert out.count("\n") <= 1 and binder.requests == []


def test_every_provider_form_of_binderhub_api_is_taken():
    for repo in ("gh/binder-examples/requirements/HEAD", "gh/org/repo/feature/branch",
                 "gl/group%2Fproject/main", "git/https%3A%2F%2Fexample.org%2Fr.git/HEAD",
                 "zenodo/10.5281/zenodo.3242074"):
        assert smoke.check_repo(repo) == repo


def test_progress_lines_come_while_the_stream_is_silent(cli, no_token, monkeypatch):
    monkeypatch.setattr(smoke, "PROGRESS_EVERY", 0.2)
    with Fake([event(phase="waiting", message="Waiting...\n"), 1.3,
               event(phase="failed", status_code=500, message="Internal Server Error\n")]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1
    progress = [line for line in out.splitlines() if line.startswith("smoke | still waiting: ")]
    assert len(progress) >= 3, out
    assert "failed in phase waiting (500): Internal Server Error; hint: BinderHub cannot reach JupyterHub" in out


def test_the_junit_failure_sits_on_the_phase_that_failed(cli, no_token, tmp_path):
    with Fake([body("hub-unreachable.txt")]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url, "--report", str(tmp_path / "r.json"),
                        "--junit", str(tmp_path / "r.xml"))
    assert code == 1 and "failed in phase launching (500): Internal Server Error" in out
    xml = (tmp_path / "r.xml").read_text()
    assert '<testcase classname="build" name="launching"' in xml
    launching = xml.split('name="launching"', 1)[1].split("</testcase>", 1)[0]
    assert "<failure" in launching and xml.count("<failure") == 1
    assert 'name="failed"' not in xml and "-0.0" not in xml
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failed_phase"] == "launching" and all(p["duration"] >= 0 for p in report["phases"])
    assert "-0.0" not in (tmp_path / "r.json").read_text()
    for name in ("r.json", "r.xml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_durations_are_never_negative_zero():
    assert json.dumps(smoke.seconds(-0.0004)) == "0.0" and smoke.seconds(1.23456) == 1.235


@pytest.mark.parametrize("how", ["--auth", "empty $BHOPS_HUB_TOKEN"])
def test_auth_without_a_token_fails_at_once_and_still_writes_the_reports(cli, no_token, monkeypatch, tmp_path, how):
    args = ["--auth"] if how == "--auth" else []
    if how != "--auth":
        monkeypatch.setenv(smoke.TOKEN_ENV, "")
    with Fake([event(phase="failed", message="x")]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url, *args, "--report", str(tmp_path / "out" / "r.json"),
                        "--junit", str(tmp_path / "out" / "r.xml"))
    assert code == 1 and "smoke | smoke | failed | authentication is on: set $BHOPS_HUB_TOKEN" in out
    assert binder.requests == []
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["verdict"] == "failed" and "authentication is on" in report["message"]
    assert '<failure message="no token: authentication is on' in (tmp_path / "out" / "r.xml").read_text()
    for name in ("r.json", "r.xml"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600


def test_a_ready_url_on_another_host_gets_no_token(cli, monkeypatch):
    monkeypatch.setenv(smoke.TOKEN_ENV, MARKER)
    with Fake() as elsewhere:
        ready = event(phase="ready", url=f"{elsewhere.url}user/x/", token="ready-token-abcdefghijklmnop")
        with Fake([event(phase="built", imageName="i"), ready]) as binder:
            binder.url = binder.url.replace("127.0.0.1", "localhost")  # the same server, another host name
            code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1
    assert f"smoke | smoke.server-url | failed | ready.url {elsewhere.url}user/x/ is not under {binder.url}" in out
    assert "refused to send the token there" in out and MARKER not in out
    assert elsewhere.requests == []
    assert [h.get("Authorization") for _, _, h in binder.requests] == [f"token {MARKER}"]


def test_a_binder_url_run_never_writes_an_environments_verdict(cli, no_token, monkeypatch, tmp_path):
    logs = tmp_path / "logs"
    monkeypatch.setenv("BHOPS_LOGS_DIR", str(logs))
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(tmp_path / "secrets"))
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump({"environments": {"site": {
        "vars": {"public_url": "http://192.0.2.1"},
        "hosts": {"head": {"hostname": "192.0.2.1", "roles": ["node", "control-plane", "proxy"]}}}}}))
    with Fake([event(phase="failed", status_code=429, message="Rate limit exceeded.\n")]) as binder:
        for args in ([], ["--env", "site", "--inventory", str(inventory)]):
            code, out = cli("smoke", "--binder-url", binder.url, *args)
            assert code == 1 and "failed in phase request (429): Rate limit exceeded." in out
    assert len(binder.requests) == 2 and not logs.exists()


# -- against BinderHub's real answers ---------------------------------------------------------------
# Streams recorded from BinderHub b9fad995 and JupyterHub 6.1.1 on loopback (tests/data/binderhub-streams/
# README.md); the messages they carry come from binderhub/builder.py, launcher.py and base.py.

def server_answers(prefix: str, version: str = "2.21.1") -> dict:
    """A Jupyter server under `prefix` as the smoke checks meet it: /api answers its version
    until POST api/shutdown (jupyter_server services/shutdown.py), kernels cannot start."""
    def api(requests):
        down = any(m == "POST" and p == f"{prefix}api/shutdown" for m, p, _ in requests)
        return (503, {}, b"") if down else (200, {"Content-Type": "application/json"},
                                             json.dumps({"version": version}).encode())
    return {("GET", f"{prefix}api"): api, ("POST", f"{prefix}api/kernels"): (500, {}, b""),
            ("POST", f"{prefix}api/shutdown"): (200, {}, b"")}


def ready_stream(name: str, server_url: str) -> bytes:
    """A recorded stream that ends `ready`, its server moved to `server_url`."""
    text = body(name).decode()
    recorded = json.loads(next(line for line in text.splitlines() if '"phase": "ready"' in line)[5:])["url"]
    return text.replace(recorded, server_url).encode()


def test_authentication_off_sends_no_token_and_opens_the_server_with_the_ready_token(cli, no_token, monkeypatch):
    """BinderSpawnerMixin starts the server with --NotebookApp.token=ready.token when authentication
    is off (binderspawner_mixin.py get_args); a hub token held in the secrets file is not sent."""
    with Fake() as server:
        server.answers = server_answers("/user/fake-repo-k7xsdh0d/")
        with Fake([ready_stream("launch-ready.txt", f"{server.url}user/fake-repo-k7xsdh0d/")]) as binder:
            code, out = cli("smoke", "--binder-url", binder.url)  # the hub on a host of its own, as on mybinder.org
    assert [h.get("Authorization") for _, _, h in binder.requests] == [None]
    ready_token = "ky9sQNwZTy6qPnJEhmGIJw"
    assert {h.get("Authorization") for _, _, h in server.requests} == {f"token {ready_token}"}
    assert [(m, p) for m, p, _ in server.requests][:3] == [
        ("GET", "/user/fake-repo-k7xsdh0d/api"), ("POST", "/user/fake-repo-k7xsdh0d/api/kernels"),
        ("POST", "/user/fake-repo-k7xsdh0d/api/shutdown")]
    assert "smoke | smoke.server-api | ok | HTTP 200, version 2.21.1" in out
    assert re.search(r"^smoke \| smoke.server-stop \| ok \| server: HTTP 200, stopped after", out, re.M)
    assert ready_token not in out and code == 1  # the kernel could not start


def test_authentication_on_opens_the_users_own_server_with_the_users_token(cli, monkeypatch):
    monkeypatch.setenv(smoke.TOKEN_ENV, MARKER)
    with Fake() as binder:
        binder.answers = server_answers("/user/alice/")
        binder.script = [ready_stream("launch-ready.txt", f"{binder.url}user/alice/")]
        code, out = cli("smoke", "--binder-url", binder.url)
    assert {h.get("Authorization") for _, _, h in binder.requests} == {f"token {MARKER}"}
    assert ("POST", "/user/alice/api/shutdown") in [(m, p) for m, p, _ in binder.requests]
    assert MARKER not in out


def test_a_login_redirect_of_the_2021_binderhub_is_an_authentication_failure(cli, monkeypatch):
    """BinderHub of the pinned chart (36369a7, 2021) kept tornado's @authenticated redirect to the
    hub's OAuth page; from 8c1bae0e (2024-05) it answers 403 instead."""
    monkeypatch.setenv(smoke.TOKEN_ENV, MARKER)
    login = "http://hub.example.org/hub/api/oauth2/authorize?client_id=service-binder&state=x"
    with Fake(answers={("GET", "/build/gh/binder-examples/requirements/HEAD"): (302, {"Location": login}, b"")}) \
            as binder:
        code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1
    assert ("failed in phase request (302): redirected to http://hub.example.org/hub/api/oauth2/authorize to log in: "
            "no token, or one the hub does not know; hint: authentication is on: set $BHOPS_HUB_TOKEN") in out
    assert "state=x" not in out


def test_a_proxy_answer_in_front_of_binderhub_gets_its_hint(cli, no_token):
    with Fake(answers={("GET", "/build/gh/binder-examples/requirements/HEAD"): (502, {}, b"Bad Gateway")}) as binder:
        code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1 and "failed in phase request (502): HTTP 502; hint: the proxy in front of BinderHub" in out


def test_a_stream_cut_off_midway_is_a_failure_with_a_hint_not_a_traceback(cli, no_token):
    with Fake([event(phase="waiting", message="Waiting for build to start...\n"), CUT]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1 and "Traceback" not in out
    assert "failed in phase waiting: the stream was cut off before ready or failed" in out


def test_launch_retries_are_said_and_counted_in_the_verdict(cli, no_token):
    """builder.py BuildHandler.launch: Launcher.retries (4) attempts, "Launch attempt N failed,
    retrying..." between them; the last error ends the stream."""
    with Fake([body("hub-unreachable.txt")]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1
    for n in (1, 2, 3):
        assert re.search(rf"^smoke \| launching: Launch attempt {n} failed, retrying\.\.\. \(\d+\.\d s\)$", out, re.M)
    assert ("failed in phase launching (500): Internal Server Error (after 4 launch attempts); hint: BinderHub "
            "cannot reach JupyterHub") in out


@pytest.mark.parametrize("name, line", [
    # authentication on: HTTP 200 and one `failed` event, never a redirect (builder.py BuildHandler.redirect)
    ("auth-no-token.txt", "failed in phase request (403): Forbidden; hint: no token, or one the hub does not know: "
                          "authentication is on: set"),
    ("auth-no-binder-scope.txt", "failed in phase request (403): user bob is not allowed.; hint: this token's user "
                                 "may not use BinderHub (it lacks access:services!service=binder): authentication is "
                                 "on: set"),
    ("auth-binder-service-token.txt", "failed in phase request (403): service binder is not allowed.; hint: this "
                                      "token's user may not use BinderHub"),
    # launches that fail
    ("spawn-fails.txt", "failed in phase launching (500): Spawn failed: h3 loopback: this spawn is refused (after 4 "
                        "launch attempts); hint: JupyterHub could not start the server"),
    ("auth-user-has-server.txt", "failed in phase launching (409): User alice already has a running server. (after 4 "
                                 "launch attempts); hint: this token's user already has a server"),
])
def test_the_real_binderhubs_refusals_and_launch_failures(cli, monkeypatch, name, line):
    monkeypatch.setenv(smoke.TOKEN_ENV, MARKER)
    with Fake([body(name)]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url)
    assert code == 1 and f"smoke | smoke | failed | {line}" in out


def test_unknown_events_stay_in_the_phase_they_come_in(cli, no_token, tmp_path):
    """build.py stream_logs gives build log lines that are not JSON the phase `unknown`."""
    with Fake([event(phase="waiting"), event(phase="building", message="Step 1/3"),
               event(phase="unknown", message="not json"), event(phase="building", message="Step 2/3"),
               event(phase="failed", message="The command returned a non-zero code: 1\n")]) as binder:
        cli("smoke", "--binder-url", binder.url, "--report", str(tmp_path / "r.json"))
    phases = json.loads((tmp_path / "r.json").read_text())["phases"]
    assert [(p["name"], p["messages"]) for p in phases] == [("waiting", 1), ("building", 3), ("failed", 1)]


def test_silence_longer_than_binderhubs_keepalive_says_so(cli, no_token, monkeypatch):
    monkeypatch.setattr(smoke, "KEEPALIVE", 0.2)  # builder.py KEEPALIVE_INTERVAL is 25 s
    with Fake([event(phase="waiting"), 2]) as binder:
        code, out = cli("smoke", "--binder-url", binder.url, "--silence", "0.5")
    assert code == 1
    assert "failed in phase waiting: the stream went silent for 0.5 s (not even BinderHub's keepalive" in out


class HubApi:
    """JupyterHub's answers to the binder service (apihandlers/users.py, JupyterHub 6.1.1, seen on
    loopback): DELETE a server 204, then the user without it, DELETE the user 204."""

    def __init__(self):
        self.calls = []

    def __call__(self, conn, address, method, path, token):
        self.calls.append((method, path))
        return (200, b'{"name": "x", "servers": {}}') if method == "GET" else (204, b"")


@pytest.mark.parametrize("temporary", [True, False])
def test_the_hub_stop_deletes_binderhubs_temporary_user_only(monkeypatch, temporary):
    """Authentication off: BinderHub made the user for this launch (launcher.py create_user); on:
    the user is a person, kept."""
    api = HubApi()
    monkeypatch.setattr(smoke, "hub_call", api)
    monkeypatch.setattr(smoke, "hub_address", lambda conn, host: ("10.0.0.1", 8081))
    host = type("H", (), {"vars": {"hub_base_url": "/jupyterhub/"}, "name": "cp"})()
    check = smoke.stop_through_hub(smoke.Hub(lambda: None, host, "t"), "http://h/jupyterhub/user/fake-repo-k7/",
                                   temporary)
    user = "/jupyterhub/hub/api/users/fake-repo-k7"
    assert api.calls == [("DELETE", f"{user}/server"), ("GET", user)] + ([("DELETE", user)] if temporary else [])
    assert check.ok and check.detail.endswith("temporary user fake-repo-k7 deleted: HTTP 204") == temporary


# -- bench/smoke.py's own parts, offline --------------------------------------------------------------

@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_smoke", Path(__file__).resolve().parent.parent / "bench"
                                                  / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_curl_floor_reads_the_real_stream_to_ready_and_stops_there(bench):
    with Fake([body("launch-ready.txt"), 10]) as binder:  # BinderHub holds the stream open after ready
        t0 = time.perf_counter()
        seconds, ready = bench.curl(f"{binder.url}build/gh/x/y/HEAD")
        assert time.perf_counter() - t0 < 5  # curl was stopped at ready
    assert ready.phase == "ready" and ready.data["url"].endswith("/user/fake-repo-k7xsdh0d/") and 0 < seconds < 5
    assert binder.requests[0][2].get("Accept") == "text/event-stream"


def test_the_bench_curl_floor_stops_on_a_failed_stream(bench):
    with Fake([body("auth-no-token.txt")]) as binder:
        with pytest.raises(RuntimeError, match=r"curl's stream failed \(403\): Forbidden"):
            bench.curl(f"{binder.url}build/gh/x/y/HEAD")


def test_the_bench_overhead_is_smokes_wall_beyond_its_stream_and_the_server_checks(bench):
    rounds = [bench.Round(curl_ready=5.0, smoke_ready=5.1, smoke_wall=8.5, smoke_checks=3.0),
              bench.Round(curl_ready=5.2, smoke_ready=5.3, smoke_wall=8.9, smoke_checks=3.1)]
    assert [round(r.overhead, 2) for r in rounds] == [0.4, 0.5]
    text = bench.summary(rounds)
    assert "time to ready, curl -N (the floor): median 5.10 s (min 5.00, max 5.20)" in text
    assert "time to ready, smoke:               median 5.20 s (min 5.10, max 5.30); smoke - curl: +0.10 s" in text
    assert "client overhead (smoke wall - its time to ready - server checks and stop): median 0.45 s" in text
    assert "target < 0.5 s: met" in text


def test_a_missing_ca_bundle_is_one_line_and_nothing_is_sent(cli, tmp_path):
    code, out = cli("smoke", "--binder-url", "https://127.0.0.1:9/", "--ca-bundle", str(tmp_path / "ca.pem"))
    assert code == 1 and out == f"--ca-bundle {tmp_path / 'ca.pem'}: no such file; give the CA certificate(s) in PEM\n"
