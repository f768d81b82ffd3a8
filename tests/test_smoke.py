"""smoke against BinderHub stand-ins on loopback (no lab): input checks, progress lines, reports on
every exit path, and where the tokens may go. Each stand-in records every request it gets."""
from __future__ import annotations

import json
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
    raw = (STREAMS / name).read_bytes()
    return raw.split(b"\n\n", 1)[1]


def event(**data) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


class Fake:
    """An HTTP server on a free loopback port: every GET gets `script` (bytes are sent, numbers
    are seconds of silence), every request is recorded as (method, path, headers)."""

    def __init__(self, script=()):
        self.script, self.requests = list(script), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                fake.requests.append((self.command, self.path, dict(self.headers)))

            protocol_version = "HTTP/1.1"  # chunked, as BinderHub (tornado) sends its stream

            def do_GET(self):
                self._record()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                for step in fake.script:
                    if isinstance(step, bytes):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(step), step))
                        self.wfile.flush()
                    else:
                        time.sleep(step)
                self.wfile.write(b"0\r\n\r\n")

            def do_POST(self):
                self._record()
                self.send_error(404)
                self.close_connection = True

            do_DELETE = do_POST

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
