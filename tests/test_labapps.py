"""The lab's BinderHub workloads (lab.apps), used as a client of a deployed BinderHub would use them.

The API emulator holds a real BinderHub chart installed with the real helm, with the values the
project renders for it (fabfile.values.render, for the chart's era); proxy-public gets a
load-balancer IP as MetalLB would give it; the runner (`python -m lab.apps run`) then runs the
binder API and a real JupyterHub from what the chart created. This module runs the runbook's pinned
chart (tests/test_labapps_eras.py runs both charts with authentication). Everything listens on
loopback addresses picked per run (127.a.b.c where the ports are free, so that runs on one machine
do not meet): the binder on the node's address, the hub's public proxy on port 80 of the
"floating" IP (root needed). Every process a run starts is stopped by PID, pass or fail (see
conftest.no_process_left).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml

from fabfile import inventory
from fabfile import values as chart_values
from fabfile.secretfile import Secret
from lab import charts as labcharts
from tests.conftest import die_with_parent, no_process_left, stop

REPO = Path(__file__).resolve().parent.parent
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
HELM = REPO / ".tools" / "bin" / "helm"
CHP = REPO / ".tools" / "node_modules" / ".bin" / "configurable-http-proxy"
PINNED, CURRENT = labcharts.VERSIONS

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the hub's proxy binds port 80: root only"),
    pytest.mark.skipif(not (KUBECTL.exists() and HELM.exists()), reason="run scripts/install-k8s-tools"),
    pytest.mark.skipif(not CHP.exists(), reason="configurable-http-proxy missing: run scripts/install-lab-apps"),
]
pytest.importorskip("jupyterhub", reason="the lab extra (jupyterhub, jupyter_server) is not installed")

NODE_PORT = 32574
NODE_PORTS = (NODE_PORT, 8081, 8001)  # the binder, the hub API, the proxy API (the chart's ports)
IMAGE_PREFIX = "lab/binder-"
RATE_LIMIT = 30
HOLD_OPEN = 2.0
KEEPALIVE = 0.5
EVENT_STREAM = {"Accept": "text/event-stream"}
READY_KEYS = {"url", "token", "image", "repo_url", "binder_ref_url", "binder_launch_host", "binder_request",
              "binder_persistent_request", "binder_client_ip", "message"}
TEST_VALUES = {"config": {"Launcher": {"retries": 2, "retry_delay": 0.2}}}  # quicker failures than the defaults


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _can_bind(address: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def free_address(*ports: int) -> str:
    """A loopback address 127.a.b.c where `ports` are free (the hub's public proxy needs port 80)."""
    for _ in range(20):
        address = f"127.{random.randint(100, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if all(_can_bind(address, port) for port in ports):
            return address
    pytest.fail(f"no loopback address with ports {', '.join(map(str, ports))} free in 20 tries", pytrace=False)


def http_status(url: str, **kwargs) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        return requests.get(url, timeout=3, **kwargs).status_code
    except requests.ConnectionError:
        return None


@dataclasses.dataclass
class Release:
    """The running lab: the emulator, the runner, and the tools a deploy task would use."""

    env: dict[str, str]
    chart: Path
    values: list[Path]  # the -f files, in order
    state: Path
    binder_token: str
    node: str
    floating_ip: str
    oauth_client_secret: str  # what the hub's GenericOAuthenticator is given (with authentication)

    @property
    def binder(self) -> str:
        return f"http://{self.node}:{NODE_PORT}/binderhub/"

    @property
    def hub(self) -> str:
        return f"http://{self.floating_ip}/jupyterhub/"

    def tool(self, tool: Path, *args: str) -> str:
        proc = subprocess.run([str(tool), *args], capture_output=True, text=True, env=self.env, timeout=120)
        assert proc.returncode == 0, f"{tool.name} {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def helm_upgrade(self, *args: str) -> str:
        files = [arg for path in self.values for arg in ("-f", str(path))]
        return self.tool(HELM, "upgrade", "--install", "binder", str(self.chart), "-n", "binder", *files, *args)

    def give_proxy_public(self, ip: str) -> None:
        """What MetalLB does for a LoadBalancer Service: set its ingress IP in the status."""
        patch = json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
        self.tool(KUBECTL, "patch", "svc", "proxy-public", "-n", "binder", "--subresource=status",
                  "--type=merge", "-p", patch)

    def running(self) -> dict[str, dict]:
        return json.loads((self.state / "status.json").read_text())["running"]

    def fault(self, name: str) -> None:
        subprocess.run([sys.executable, "-m", "lab.apps", "fault", name, "--file", str(self.state / "faults.json")],
                       cwd=REPO, check=True, capture_output=True)


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)


def render_values(workdir: Path, version: str, floating_ip: str, secret_values: dict[str, str],
                  **variables) -> list[Path]:
    """The project's values files for chart `version` (fabfile.values.render from a one-host
    inventory), then TEST_VALUES; written to `workdir`."""
    lab = {"public_url": f"http://{floating_ip}", "floating_ip": floating_ip, "chart_version": version,
           "use_registry": False, "image_prefix": IMAGE_PREFIX, "rate_limit": RATE_LIMIT,
           "binder_node_port": NODE_PORT, "pod_disruption_budgets": False, **variables}
    hosts = workdir / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"environments": {"lab": {"vars": lab, "hosts": {
        "node": {"roles": ["node", "control-plane"]}}}}}))
    host = inventory.load("lab", hosts).with_role("control-plane")[0]
    rendered = chart_values.render(host, "lab", {k: Secret(v) for k, v in secret_values.items()})
    files = [workdir / "config.yaml", workdir / "secret.yaml", workdir / "test.yaml"]
    for path, text in zip(files, (rendered.config, rendered.secret, yaml.safe_dump(TEST_VALUES))):
        path.write_text(text)
        path.chmod(0o600)
    return files


@contextlib.contextmanager
def running_release(workdir: Path, charts: Path, version: str = PINNED, **variables):
    """Chart `version` installed with the project's values for it (inventory `variables` added),
    proxy-public given an IP, the runner running it all; every process stopped at the end, the
    runner's own checked to be gone."""
    node, floating_ip = free_address(*NODE_PORTS), free_address(80)
    kubeconfig = workdir / "kubeconfig"
    emulator = _start([sys.executable, "-m", "lab.cluster", "serve", "--address", "127.0.0.1", "--port", "0",
                       "--kubeconfig", str(kubeconfig), "--ready-delay", "0.2"], workdir / "labcluster.log")
    runner = None
    try:
        wait_for("the API emulator", lambda: kubeconfig.exists() or emulator.poll() is not None, timeout=15)
        assert emulator.poll() is None, (workdir / "labcluster.log").read_text()
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "KUBECONFIG": str(kubeconfig),
               **{f"HELM_{kind}_HOME": str(workdir / f"helm-{kind.lower()}") for kind in ("CACHE", "CONFIG", "DATA")}}
        tokens = {"binder_api_token": secrets.token_hex(32), "proxy_secret_token": secrets.token_hex(32),
                  "oauth_client_secret": secrets.token_urlsafe(24)}
        files = render_values(workdir, version, floating_ip, tokens, **variables)
        lab = Release(env, charts / labcharts.archive_name(version), files, workdir / "state",
                      tokens["binder_api_token"], node, floating_ip, tokens["oauth_client_secret"])
        lab.tool(KUBECTL, "create", "namespace", "binder")
        lab.helm_upgrade()
        api = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        runner = _start([sys.executable, "-m", "lab.apps", "run", "--api", api, "--namespace", "binder",
                         "--node-address", node, "--nodeport-address", node, "--state-dir", str(lab.state),
                         "--interval", "0.2", "--keepalive", str(KEEPALIVE), "--hold-open", str(HOLD_OPEN)],
                        workdir / "runner.out")
        wait_for("the binder API", lambda: http_status(lab.binder + "versions") == 200)
        started = time.monotonic()
        lab.give_proxy_public(floating_ip)
        wait_for("the hub", lambda: http_status(lab.hub + "hub/api/health") == 200)
        print(f"\nhub answered {time.monotonic() - started:.1f}s after proxy-public got its IP")
        yield lab
        pids = [app["pid"] for app in lab.running().values()]
        assert stop(runner, 20) == 0, (lab.state / "logs" / "runner.log").read_text()
        runner = None
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if runner:
            stop(runner, 20)
        stop(emulator, 20)


@pytest.fixture(scope="module")
def release(tmp_path_factory, real_charts):
    """A running release of the runbook's chart shared by the module's tests, which leave it as they found it."""
    with no_process_left(), running_release(tmp_path_factory.mktemp("labapps"), real_charts) as running:
        yield running


@dataclasses.dataclass
class Stream:
    """What a client read from a /build request: lines with the seconds they came at."""

    response: requests.Response
    lines: list[tuple[float, str]]
    closed_by_server: bool
    ended: float  # when the client stopped reading (at the server's close, if it closed)

    @property
    def events(self) -> list[dict]:
        return [json.loads(line[5:]) for _, line in self.lines if line.startswith("data:")]

    def phases(self) -> list[str]:
        return [event["phase"].lower() for event in self.events]

    def last(self) -> dict:
        return self.events[-1]

    def seconds_to(self, phase: str) -> float:
        return next(t for t, line in self.lines if line.startswith("data:") and json.loads(line[5:])["phase"] == phase)


def build(release: Release, path: str, headers: dict | None = None, *, until=("ready", "failed"),
          linger: float = 0.0, timeout: float = 60.0) -> Stream:
    """GET {binder}build/<path>; read until an event in `until` (then `linger` s more) or the end."""
    started = time.monotonic()
    response = requests.get(release.binder + "build/" + path, headers=EVENT_STREAM if headers is None else headers,
                            stream=True, timeout=(5, 3))
    lines, stop_at, closed = [], started + timeout, True
    try:
        for line in response.iter_lines(chunk_size=1, decode_unicode=True):
            now = time.monotonic()
            if line:
                lines.append((now - started, line))
            if line.startswith("data:") and stop_at > now + linger and json.loads(line[5:])["phase"] in until:
                stop_at = now + linger
            if now >= stop_at:
                closed = False
                break
    except requests.exceptions.ConnectionError:  # read timeout: the server sent nothing, but kept it open
        closed = False
    finally:
        response.close()
    return Stream(response, lines, closed, time.monotonic() - started)


@pytest.fixture
def fault(release):
    """Ask the lab for a fault for one test."""
    yield release.fault
    release.fault("clear")


def test_versions_and_health_answer_like_binderhub(release):
    versions = requests.get(release.binder + "versions", timeout=5).json()
    assert set(versions) == {"builder_info", "binderhub"} and "lab" in versions["binderhub"]
    health = requests.get(release.binder + "health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"ok": True, "checks": [{"service": "JupyterHub API", "ok": True}]}
    assert requests.get(release.hub + "hub/api/", timeout=5).json()["version"].startswith(("5.", "6."))


def test_a_build_streams_to_ready_and_the_server_it_launched_works(release):
    stream = build(release, "gh/binder-examples/requirements/HEAD", linger=HOLD_OPEN + 3)
    assert stream.response.status_code == 200
    assert stream.response.headers["Content-Type"] == "text/event-stream"
    phases = stream.phases()
    assert phases[0] == "waiting" and {"fetching", "building"} <= set(phases)
    assert phases.index("building") < phases.index("built") < phases.index("launching") < phases.index("ready")
    built = stream.events[phases.index("built")]
    assert built["message"] == "Built image, launching...\n" and built["imageName"].startswith(IMAGE_PREFIX)
    launching = [e["message"] for e in stream.events if e["phase"] == "launching"]
    assert launching[0] == "Launching server...\n" and any(m.startswith("Server ready at") for m in launching)
    ready = stream.events[phases.index("ready")]
    assert READY_KEYS <= set(ready)
    assert ready["url"].startswith(release.hub + "user/binder-examples-requirements-")
    assert ready["image"] == built["imageName"]
    assert ready["repo_url"] == "https://github.com/binder-examples/requirements"
    assert ready["binder_request"] == "v2/gh/binder-examples/requirements/HEAD"
    assert re.fullmatch(r"v2/gh/binder-examples/requirements/[0-9a-f]{40}", ready["binder_persistent_request"])
    assert ready["binder_launch_host"] == release.binder and ready["binder_client_ip"] == "127.0.0.1"
    print(f"\n/build to ready: {stream.seconds_to('ready'):.1f}s")

    # The server stays open after ready, with keepalives, then closes.
    after_ready = [line for t, line in stream.lines if t > stream.seconds_to("ready")]
    assert after_ready and set(after_ready) == {":keepalive"}
    assert stream.closed_by_server and HOLD_OPEN - 0.2 <= stream.ended - stream.seconds_to("ready") < HOLD_OPEN + 2

    server, auth = ready["url"], {"Authorization": f"token {ready['token']}"}
    answer = requests.get(server + "api", headers=auth, timeout=5)
    assert answer.status_code == 200 and "version" in answer.json()
    assert requests.get(server + "api/status", headers={"Authorization": "token wrong"}, timeout=5).status_code == 403
    kernel = requests.post(server + "api/kernels", headers=auth, json={"name": "python3"}, timeout=30)
    assert kernel.status_code == 201
    kernels = requests.get(server + "api/kernels", headers=auth, timeout=5).json()
    assert [k["id"] for k in kernels] == [kernel.json()["id"]]
    assert requests.delete(server + f"api/kernels/{kernel.json()['id']}", headers=auth, timeout=30).status_code == 204
    assert requests.post(server + "api/shutdown", headers=auth, timeout=5).status_code == 200
    wait_for("the server to be gone", lambda: http_status(server + "api", headers=auth) != 200, timeout=10)


def test_the_same_spec_again_finds_the_built_image_and_the_hub_can_stop_the_server(release):
    build(release, "gh/binder-examples/requirements/HEAD", until=("built",))  # built before, or now
    stream = build(release, "gh/binder-examples/requirements/HEAD")
    assert stream.phases()[0] == "built" and "waiting" not in stream.phases()
    assert stream.events[0]["message"] == "Found built image, launching...\n"
    ready = stream.last()
    assert ready["phase"] == "ready"
    name = ready["url"].rstrip("/").rsplit("/", 1)[1]
    hub_api, binder = release.hub + "hub/api/", {"Authorization": f"token {release.binder_token}"}
    assert requests.delete(hub_api + f"users/{name}/server", headers=binder, timeout=30).status_code in (202, 204)
    wait_for("the hub to forget the server",
              lambda: requests.get(hub_api + f"users/{name}", headers=binder, timeout=5).json()["servers"] == {})
    assert http_status(ready["url"] + "api", headers={"Authorization": f"token {ready['token']}"}) != 200


def test_the_git_provider_takes_an_escaped_url(release):
    url = "https://gitlab.example.org/group/project.git"
    stream = build(release, f"git/{quote(url, safe='')}/v1.0")
    ready = stream.last()
    assert ready["phase"] == "ready" and ready["repo_url"] == url
    assert ready["url"].startswith(release.hub + "user/group-project-")
    assert re.fullmatch(rf"v2/git/{re.escape(quote(url, safe=''))}/[0-9a-f]{{40}}", ready["binder_persistent_request"])
    auth = {"Authorization": f"token {ready['token']}"}
    assert requests.post(ready["url"] + "api/shutdown", headers=auth, timeout=5).status_code == 200


def test_without_the_accept_header_the_stream_is_one_failed_event_with_400(release):
    stream = build(release, "gh/binder-examples/requirements/HEAD", headers={}, linger=1)
    assert stream.response.status_code == 200 and stream.closed_by_server
    assert stream.events == [{"phase": "failed", "status_code": 400,
                              "message": "Missing Accept header: text/event-stream\n"}]


def test_an_unknown_provider_fails_without_a_status_code(release):
    stream = build(release, "zenodo/10.5281/zenodo.3242074")
    assert stream.events == [{"phase": "failed", "message": "No provider found for prefix zenodo\n"}]


def test_the_rate_limit_counts_builds_per_client_behind_a_proxy(release):
    client = {**EVENT_STREAM, "X-Forwarded-For": "192.0.2.9"}  # as nginx in front of the binder sends it
    for _ in range(RATE_LIMIT):
        assert build(release, "nope/x/y", headers=client).last()["phase"] == "failed"
    refused = build(release, "gh/binder-examples/requirements/HEAD", headers=client)
    assert refused.events == [{"phase": "failed", "status_code": 429,
                               "message": "Rate limit exceeded. Try again in 3600 seconds.\n"}]
    assert build(release, "nope/x/y").last().get("status_code") is None  # another client is not limited


def test_fault_build_fails_ends_in_failed_and_the_stream_stays_open(release, fault):
    fault("build-fails")
    stream = build(release, "gh/org/fails/HEAD", linger=1.5)
    assert stream.phases()[-2:] == ["building", "failed"] and "status_code" not in stream.last()
    assert not stream.closed_by_server
    assert stream.lines[-1][1] == ":keepalive"


def test_fault_stream_stalls_sends_nothing_more_but_keeps_the_stream_open(release, fault):
    fault("stream-stalls")
    stream = build(release, "gh/org/stalls/HEAD", until=("building",), linger=2.0)
    assert stream.phases()[-1] == "building" and "ready" not in stream.phases() and "failed" not in stream.phases()
    assert not stream.closed_by_server
    stalled_at = stream.seconds_to("building")
    assert [line for t, line in stream.lines if t > stalled_at] and all(
        line == ":keepalive" for t, line in stream.lines if t > stalled_at)


def test_fault_hub_unreachable_fails_health_and_launches_with_500(release, fault):
    fault("hub-unreachable")
    health = requests.get(release.binder + "health", timeout=10)
    assert health.status_code == 503 and health.json()["checks"] == [{"service": "JupyterHub API", "ok": False}]
    stream = build(release, "gh/org/unreachable/HEAD", linger=1)
    assert {"phase": "launching", "message": "Launch attempt 1 failed, retrying...\n"} in stream.events
    assert stream.last() == {"phase": "failed", "status_code": 500, "message": "Internal Server Error\n"}
    assert stream.closed_by_server


def test_fault_hub_refuses_token_keeps_health_ok_and_fails_creating_the_user(release, fault):
    fault("hub-refuses-token")
    assert requests.get(release.binder + "health", timeout=10).status_code == 200
    stream = build(release, "gh/org/refused/HEAD")
    image = next(e["imageName"] for e in stream.events if e["phase"] == "built")
    assert stream.last() == {"phase": "failed", "status_code": 500,
                             "message": f"Failed to create temporary user for {image}\n"}


def test_fault_spawn_fails_relays_the_hubs_failure(release, fault):
    fault("spawn-fails")
    stream = build(release, "gh/org/nospawn/HEAD")
    failed = stream.last()
    assert failed["phase"] == "failed" and failed["status_code"] == 500
    assert failed["message"].startswith("Spawn failed: ")


def test_fault_rate_limited_refuses_at_once(release, fault):
    fault("rate-limited")
    stream = build(release, "gh/org/limited/HEAD")
    assert stream.events == [{"phase": "failed", "status_code": 429,
                              "message": "Rate limit exceeded. Try again in 3600 seconds.\n"}]


def test_the_runner_follows_upgrades_a_new_ip_and_uninstall(tmp_path, real_charts):
    """On a release of its own: it ends with the release uninstalled."""
    with no_process_left(), running_release(tmp_path, real_charts) as release:
        binder_pid = release.running()["binder"]["pid"]
        release.helm_upgrade("--set", "config.BinderHub.base_url=/changed/")
        moved = f"http://{release.node}:{NODE_PORT}/changed/"
        wait_for("the binder under its new base_url", lambda: http_status(moved + "versions") == 200)
        assert http_status(release.binder + "versions") == 404 and release.running()["binder"]["pid"] != binder_pid

        new_ip = free_address(80)
        release.give_proxy_public(new_ip)
        wait_for("the hub on the new IP", lambda: http_status(f"http://{new_ip}/jupyterhub/hub/api/health") == 200)
        assert http_status(release.hub + "hub/api/health") is None

        pids = [app["pid"] for app in release.running().values()]
        release.tool(HELM, "uninstall", "binder", "-n", "binder")
        wait_for("the runner to stop everything", lambda: release.running() == {})
        assert http_status(moved + "versions") is None and http_status(f"http://{new_ip}/jupyterhub/hub/api/") is None
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
