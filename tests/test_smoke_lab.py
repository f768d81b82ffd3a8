"""smoke against the deployed lab, through the proxy host: the real BinderHub, the chart's own
JupyterHub with KubeSpawner, a real Jupyter server in a user pod, and each failure mode made by its
real cause (a build that fails or stalls, a tight rate limit, a binder whose hub token is wrong, a
user pod that cannot start, the hub scaled to nothing)."""
from __future__ import annotations

import json
import re
import shlex
import tarfile
import time
from contextlib import contextmanager
from typing import Iterator

import pytest
import requests

from fabfile import secretfile
from tests.conftest import lab_ca, lab_inventory, run_task, runner_status, ssh

pytestmark = pytest.mark.lab

HUB = "https://10.77.0.5/jupyterhub/"
BINDER = "https://10.77.0.5/binderhub/"
CP = "lab-node1"


def kubectl(args: str) -> str:
    return ssh(CP, f"kubectl {args}")


@contextmanager
def lab_build(**patterns: str) -> Iterator[None]:
    """Tell the lab's build (lab.apps.labbuild) to `fail` or `stall` for the specs matching; the
    build pods are deleted at the end."""
    literals = " ".join(shlex.quote(f"--from-literal={key}={value}") for key, value in patterns.items())
    kubectl(f"create configmap lab-build -n kube-system {literals} >/dev/null")
    try:
        yield
    finally:
        kubectl("delete configmap lab-build -n kube-system --ignore-not-found >/dev/null")
        # A stalled build's pod runs on its node until deleted (BinderHub's cleaner: after 4 hours).
        kubectl("delete pods -n binder -l component=binderhub-build --ignore-not-found >/dev/null")


def rolled_out(deployment: str) -> None:
    """The Deployment rolled out, and the lab's kubelet runs its current pods only (an old pod's
    process still serving would cut the next stream off when it stops)."""
    kubectl(f"rollout status deployment/{deployment} -n binder --timeout=120s >/dev/null")
    deadline = time.monotonic() + 60
    while True:
        listed = kubectl(f"get pods -n binder -l component={deployment} -o name").split()
        pods = {name.removeprefix("pod/") for name in listed}
        running = {key.partition("/")[0] for key in runner_status()["running"]
                   if key.startswith(f"{deployment}-")}
        if pods and running == pods:
            return
        assert time.monotonic() < deadline, f"the lab's kubelet runs {running}, the API has {pods}"
        time.sleep(0.5)


@contextmanager
def redeployed(tmp_path, **variables) -> Iterator[None]:
    """The lab deployed with other variables (the next `deployed` puts the lab's own back)."""
    code, out = run_task("deploy", "--env", "lab", "--inventory", str(lab_inventory(tmp_path, **variables)),
                         "--skip-smoke", "--break-lock")
    assert code == 0, out
    yield


@contextmanager
def build_fails(tmp_path) -> Iterator[None]:
    with lab_build(fail="gh/lab-tests/build-fails/*"):
        yield


@contextmanager
def rate_limited(tmp_path) -> Iterator[None]:
    """A limit of one build request an hour, which this client has used already (on a ref that
    resolves to nothing, so that no server is launched)."""
    with redeployed(tmp_path, rate_limit=1):
        with requests.get(f"{BINDER}build/gh/lab-tests/rate/does-not-exist", stream=True, timeout=30, verify=lab_ca(),
                          headers={"Accept": "text/event-stream"}) as first:
            event = next(line for line in first.iter_lines(decode_unicode=True) if line.startswith("data:"))
        assert '"phase": "failed"' in event
        yield


@contextmanager
def hub_refuses_token(tmp_path) -> Iterator[None]:
    """The binder restarted with a hub API token the hub does not know."""
    kubectl("set env deployment/binder -n binder JUPYTERHUB_API_TOKEN=not-the-token-the-hub-knows >/dev/null")
    try:
        rolled_out("binder")
        yield
    finally:
        kubectl("rollout undo deployment/binder -n binder >/dev/null")
        rolled_out("binder")


@contextmanager
def spawn_fails(tmp_path) -> Iterator[None]:
    """Users' storage of a storage class the cluster does not have: the claim stays Pending, so
    the user's pod never runs and KubeSpawner gives up after spawn_timeout."""
    try:
        with redeployed(tmp_path, storage={"per_user": {"capacity": "1Gi", "storage_class": "lab-no-such-class"}},
                        spawn_timeout=5, launch_retries=1):
            yield
    finally:
        kubectl("delete pvc -n binder -l component=singleuser-storage --ignore-not-found --wait=false >/dev/null")


@contextmanager
def hub_unreachable(tmp_path) -> Iterator[None]:
    """The hub Deployment scaled to nothing: the hub Service has no endpoint."""
    kubectl("scale deployment/hub -n binder --replicas=0 >/dev/null")
    try:
        deadline = time.monotonic() + 60
        while kubectl("get pods -n binder -l component=hub -o name"):
            assert time.monotonic() < deadline, "the hub pod is still there"
            time.sleep(1)
        yield
    finally:
        kubectl("scale deployment/hub -n binder --replicas=1 >/dev/null")
        rolled_out("hub")
        deadline = time.monotonic() + 60  # the new hub has given the proxy its routes again
        while requests.get(f"{HUB}hub/health", timeout=10, verify=lab_ca()).status_code != 200:
            assert time.monotonic() < deadline, "the hub is not back behind the proxy"
            time.sleep(0.5)


@pytest.fixture
def smoke(deployed, cli):
    """Run smoke on the deployed lab."""
    return lambda *args: cli("smoke", "--env", "lab", *args)


def running_servers(secrets) -> list[str]:
    """Users with a server the hub sees as ready, asked as the binder service."""
    token = secretfile.load(secrets / "lab.yaml")["binder_api_token"].reveal()
    users = requests.get(f"{HUB}hub/api/users", headers={"Authorization": f"token {token}"}, timeout=10,
                         verify=lab_ca()).json()
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
    assert sent and all(r.split()[1].startswith("https://10.77.0.5/") for r in sent)
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


@pytest.mark.parametrize("cause, phase, status, message, hint", [
    (build_fails, "building", None, "returned a non-zero code", ""),
    (rate_limited, "request", 429, "Rate limit exceeded", "raise config.RateLimiter.limit"),
    (hub_refuses_token, "launching", 500, "Failed to create temporary user", "the binder's hub token must match"),
    (spawn_fails, "launching", 500, "Spawn failed", "JupyterHub could not start the server"),
    (hub_unreachable, "launching", 500, "", "the hub pod"),
], ids=lambda value: value.__name__ if callable(value) else None)
def test_each_failure_mode_names_the_phase_message_and_hint(smoke, deployed, tmp_path, cause, phase, status,
                                                             message, hint):
    name = cause.__name__.replace("_", "-")
    with cause(tmp_path):
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
    assert "BinderHub" in files["logs-binder.txt"]  # the pods' real logs
    if cause is not hub_unreachable:
        assert "JupyterHub" in files["logs-hub.txt"]
    for secret in secretfile.load(deployed / "lab.yaml").values():
        assert secret.reveal() not in text
    assert running_servers(deployed) == []


def test_a_stream_that_goes_silent_times_out(smoke):
    with lab_build(stall="gh/lab-tests/stalls/*"):
        code, out = smoke("--silence", "3", "--repo", "gh/lab-tests/stalls/HEAD")
    assert code == 1
    assert "failed in phase building: the stream went silent for 3 s" in out


def test_binder_url_alone_needs_no_inventory_and_keeps_no_verdict(smoke, deployed, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_LOGS_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("BHOPS_INVENTORY", str(tmp_path / "no-such-inventory.yaml"))
    monkeypatch.delenv("BHOPS_HUB_TOKEN", raising=False)
    before = running_servers(deployed)
    code, out = cli("smoke", "--binder-url", "https://10.77.0.5/binderhub/", "--ca-bundle", lab_ca(),
                    "--repo", "gh/lab-tests/alone/HEAD")
    assert code == 0, out
    assert re.search(r"^smoke \| smoke.server-stop \| ok \| server: HTTP 200, stopped after", out, re.M)
    assert "RECAP smoke (https://10.77.0.5/binderhub/)" in out
    assert not (tmp_path / "logs").exists()
    # Stopped through its own API, the server leaves the hub's list when the hub next polls it.
    deadline = time.monotonic() + 60
    while running_servers(deployed) != before:
        assert time.monotonic() < deadline, f"the hub still lists {running_servers(deployed)}"
        time.sleep(1)
