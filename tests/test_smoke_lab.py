"""smoke against the deployed lab, through the proxy host: a real build stream, a real
JupyterHub and Jupyter server, and each failure mode the lab can produce."""
from __future__ import annotations

import json
import re
import tarfile
import time
from contextlib import contextmanager
from typing import Iterator

import pytest
import requests

from fabfile import secretfile
from lab import hosts as labhosts
from tests.conftest import ssh

pytestmark = pytest.mark.lab

HUB = "http://10.77.0.5/jupyterhub/"


def fault(name: str) -> None:
    """Ask the lab's workloads for a failure mode (or `clear`)."""
    ssh("lab-node1", f"sudo env PYTHONPATH={labhosts.REPO} {labhosts.REPO}/.venv/bin/python -m lab.apps "
                     f"fault {name} --file /var/lib/labapps/faults.json")


@pytest.fixture
def smoke(deployed, cli):
    """Run smoke on the deployed lab (faults cleared before and after)."""
    fault("clear")
    yield lambda *args: cli("smoke", "--env", "lab", *args)
    fault("clear")


def running_servers(secrets) -> list[str]:
    """Users with a server the hub sees as ready, asked as the binder service."""
    token = secretfile.load(secrets / "lab.yaml")["binder_api_token"].reveal()
    users = requests.get(f"{HUB}hub/api/users", headers={"Authorization": f"token {token}"}, timeout=10).json()
    return [u["name"] for u in users for s in (u.get("servers") or {}).values() if s.get("ready")]


@contextmanager
def recording() -> Iterator[list[str]]:
    """Every HTTP request made with requests meanwhile, as text: method, URL, headers and body."""
    sent: list[str] = []
    real = requests.Session.send

    def send(self, request, **kwargs):
        sent.append(f"{request.method} {request.url} {dict(request.headers)} {request.body!r}")
        return real(self, request, **kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "send", send)
        yield sent


def test_a_full_smoke_passes_and_the_server_is_gone_afterwards(smoke, deployed, tmp_path):
    with recording() as sent:
        code, out = smoke("--report", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"))
    assert code == 0, out
    # The binder service's token stopped the server through the hub Service, over SSH: never on
    # the public URL (nor anywhere requests went).
    binder_token = secretfile.load(deployed / "lab.yaml")["binder_api_token"].reveal()
    assert sent and all(r.split()[1].startswith("http://10.77.0.5/") for r in sent)
    assert not [r for r in sent if binder_token in r]
    assert re.search(r"^smoke \| smoke.server-stop \| ok \| hub: HTTP 20[24], gone from the hub after", out, re.M)
    assert running_servers(deployed) == []
    for phase in ("launching", "ready"):
        assert re.search(rf"^smoke \| {phase} \(\d+\.\d s\)$", out, re.M)
    assert "smoke | smoke.kernel-idle | ok | kernel_info answered, execution_state idle" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "passed" and [p["name"] for p in report["phases"]][-1] == "ready"
    assert all(c["ok"] for c in report["checks"])
    xml = (tmp_path / "r.xml").read_text()
    assert '<testcase classname="build" name="ready"' in xml and "<failure" not in xml
    url = re.search(r'"url": "([^"]+)"', json.dumps(report))  # the report does not carry the token either
    assert url is None
    tokens = re.findall(r"token[\"']?: ?[\"']?([A-Za-z0-9_-]{16,})", out + (tmp_path / "r.json").read_text())
    assert not tokens


@pytest.mark.parametrize("name, phase, status, message, hint", [
    ("build-fails", "building", None, "", ""),
    ("rate-limited", "request", 429, "Rate limit exceeded", "raise config.RateLimiter.limit"),
    ("hub-refuses-token", "launching", 500, "Failed to create temporary user", "the binder's hub token does not match"),
    ("spawn-fails", "launching", 500, "Spawn failed", "JupyterHub could not start the server"),
    ("hub-unreachable", "launching", 500, "Internal Server Error", "BinderHub cannot reach JupyterHub"),
])
def test_each_failure_mode_names_the_phase_message_and_hint(smoke, deployed, tmp_path, name, phase, status,
                                                             message, hint):
    fault(name)
    code, out = smoke("--repo", f"gh/lab-tests/{name}/HEAD",  # a repository not built yet
                      "--report", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"))
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("smoke | smoke | failed"))
    assert f"failed in phase {phase}" in line
    if status:
        assert f"({status})" in line
    assert message in line and hint in line
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "failed" and report["status_code"] == status
    assert "<failure" in (tmp_path / "r.xml").read_text()
    bundle = re.search(r"diagnostics: (\S+\.tar\.gz)", out).group(1)
    with tarfile.open(bundle) as tar:
        names = {n.rsplit("/", 1)[-1] for n in tar.getnames()}
        assert {"binder-health.txt", "kubectl-get.txt", "helm-status.txt", "nginx-binderhub-error.log"} <= names
        files = {m.name.rsplit("/", 1)[-1]: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
        text = "".join(files.values())
    assert "JupyterHub" in files["logs-hub.txt"] and files["logs-binder.txt"].strip()  # the pods' real logs
    for secret in secretfile.load(deployed / "lab.yaml").values():
        assert secret.reveal() not in text
    assert running_servers(deployed) == []


def test_a_stream_that_goes_silent_times_out(smoke):
    fault("stream-stalls")
    code, out = smoke("--silence", "3", "--repo", "gh/lab-tests/stalls/HEAD")
    assert code == 1
    assert "failed in phase building: the stream went silent for 3 s" in out


def test_binder_url_alone_needs_no_inventory_and_keeps_no_verdict(smoke, deployed, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_LOGS_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("BHOPS_INVENTORY", str(tmp_path / "no-such-inventory.yaml"))
    monkeypatch.delenv("BHOPS_HUB_TOKEN", raising=False)
    before = running_servers(deployed)
    code, out = cli("smoke", "--binder-url", "http://10.77.0.5/binderhub/", "--repo", "gh/lab-tests/alone/HEAD")
    assert code == 0, out
    assert re.search(r"^smoke \| smoke.server-stop \| ok \| server: HTTP 200, stopped after", out, re.M)
    assert "RECAP smoke (http://10.77.0.5/binderhub/)" in out
    assert not (tmp_path / "logs").exists()
    # Stopped through its own API, the server leaves the hub's list when the hub next polls it.
    deadline = time.monotonic() + 60
    while running_servers(deployed) != before:
        assert time.monotonic() < deadline, f"the hub still lists {running_servers(deployed)}"
        time.sleep(1)
