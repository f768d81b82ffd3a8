"""The real BinderHub as the lab runs it (lab.apps.labbinder, lab.apps.labbuild), on loopback, without the lab's hosts.

What runs: the lab's API emulator; a small real JupyterHub (BinderHub's own BinderSpawnerMixin on
SimpleLocalProcessSpawner, the binder service with the chart's scopes, configurable-http-proxy);
`python -m lab.apps.labbinder --config /etc/binderhub/config/binderhub_config.py` with each
chart's own binderhub_config.py and a values.yaml mounted at the paths the chart's pod mounts them
(/etc/binderhub/config, and /etc/binderhub/secret for the pinned chart): inside `unshare --mount`
over a private overlay of /etc, so the machine's /etc is never written; the lab's node agent
(lab.apps.nodeagent) as the node `lab-node-1`'s, with a private /run, which plays BinderHub's build
pods (lab.apps.labr2d); and a real dockerd in a network namespace of its own (no bridge, no
iptables), whose socket is the builds' `docker_host` and BinderHub's DOCKER_HOST. The current
chart's runs with the lab's `use_registry: false`: BinderHub then asks that dockerd for built
images. The pinned chart's runs with `use_registry: true` (the overlay's FakeRegistry).
Every process is stopped by PID at the end (conftest.no_process_left). BinderHub has no
listening-address setting: it listens on the test's free port on every address while it runs.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from lab import charts as labcharts
from tests.conftest import die_with_parent, no_process_left, stop

REPO = Path(__file__).resolve().parent.parent
CHP = REPO / ".tools" / "node_modules" / ".bin" / "configurable-http-proxy"
PINNED, CURRENT = labcharts.VERSIONS
SPEC = "gh/binderhub-ci-repos/requirements/HEAD"
# The BinderHubs run: name -> (chart version, config.BinderHub.use_registry). The lab's values say
# use_registry false; the pinned one has it true, where the overlay's FakeRegistry is the registry.
BINDERS = {"pinned": (PINNED, True), "current": (CURRENT, False)}
DOCKERD = "/usr/sbin/dockerd"
NODE = "lab-node-1"  # the emulator's one node, whose agent runs here

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts in a private mount namespace: root only"),
    pytest.mark.skipif(not shutil.which("unshare"), reason="unshare (util-linux) missing"),
    pytest.mark.skipif(not CHP.exists(), reason="configurable-http-proxy missing: run scripts/install-lab-apps"),
    pytest.mark.skipif(not (Path(DOCKERD).exists() and shutil.which("docker")), reason="docker.io missing"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return result


def status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=3).status_code
    except requests.ConnectionError:
        return None


def start(argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, preexec_fn=die_with_parent)


HUB_CONFIG = '''
import sys
from binderhub.binderspawner_mixin import BinderSpawnerMixin
from jupyterhub.spawner import SimpleLocalProcessSpawner


class BinderSpawner(BinderSpawnerMixin, SimpleLocalProcessSpawner):
    """The charts' BinderSpawner on a local process, listening on loopback only."""

    def get_args(self):
        return [a.replace("--ip=0.0.0.0", "--ip=127.0.0.1") for a in super().get_args()]


c = get_config()
c.JupyterHub.bind_url = "http://127.0.0.1:{public}/"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.services = [{{"name": "binder", "api_token": {binder_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "binder", "services": ["binder"], "scopes": ["servers", "admin:users"]}}]
c.JupyterHub.spawner_class = BinderSpawner
c.BinderSpawner.cmd = [sys.executable, "-m", "jupyter_server"]
c.BinderSpawner.args = ["--ServerApp.allow_root=True"]
c.BinderSpawner.home_dir_template = "{state}/home/{{username}}"
'''


def chart_file(charts: Path, version: str) -> str:
    with tarfile.open(charts / labcharts.archive_name(version)) as archive:
        return archive.extractfile("binderhub/files/binderhub_config.py").read().decode()


@dataclass
class Stack:
    api: str            # the emulator's URL
    kubeconfig: Path    # for it
    hub: str            # JupyterHub's public URL (hub_url)
    binders: dict       # name (BINDERS) -> BinderHub's URL
    docker_host: str    # the node's dockerd: unix://PATH
    pod_logs: Path      # where `kubectl logs` is read from (the emulator's --pod-logs)

    def configmap(self, name: str) -> dict | None:
        response = requests.get(f"{self.api}/api/v1/namespaces/kube-system/configmaps/{name}", timeout=5)
        return response.json().get("data") if response.status_code == 200 else None

    def set_configmap(self, name: str, data: dict) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        url = f"{self.api}/api/v1/namespaces/kube-system/configmaps"
        response = requests.put(f"{url}/{name}", json=body, timeout=5)
        if response.status_code == 404:
            response = requests.post(url, json=body, timeout=5)
        response.raise_for_status()


    def pods(self, selector: str) -> list[dict]:
        response = requests.get(f"{self.api}/api/v1/namespaces/binder/pods", params={"labelSelector": selector},
                                timeout=5)
        return response.json()["items"]

    def delete_pods(self, selector: str) -> None:
        for pod in self.pods(selector):
            requests.delete(f"{self.api}/api/v1/namespaces/binder/pods/{pod['metadata']['name']}", timeout=5)

    def image_exists(self, image: str) -> bool:
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                               env={**os.environ, "DOCKER_HOST": self.docker_host})
        return found.returncode == 0


def binder_argv(work: Path, port: int) -> list[str]:
    """BinderHub as the pod runs it, with work/config (and work/secret) mounted where the chart mounts them."""
    script = ("set -e; mount -t overlay overlay -o lowerdir=/etc,upperdir=$1/etc-upper,workdir=$1/etc-work /etc; "
              "for d in config secret; do if [ -d $1/$d ]; then mkdir -p /etc/binderhub/$d; "
              "mount --bind $1/$d /etc/binderhub/$d; fi; done; shift; exec \"$@\"")
    for directory in ("etc-upper", "etc-work"):
        (work / directory).mkdir()
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", str(work),
            sys.executable, "-m", "lab.apps.labbinder", "--config", "/etc/binderhub/config/binderhub_config.py",
            "--port", str(port)]


def binder_values(version: str, hub: str, use_registry: bool, docker_host: str) -> tuple[dict, dict | None]:
    """The values.yaml files the pod mounts: config/ (current: from Secret binder-secret; pinned: from
    ConfigMap binder-config) and, pinned only, secret/ (binder-secret: the secret values, here none)."""
    config = {"BinderHub": {"base_url": "/", "hub_url": hub, "use_registry": use_registry,
                            "image_prefix": "lab/binder-"},
              "KubernetesBuildExecutor": {"docker_host": docker_host},
              "RateLimiter": {"limit": 0}, "Launcher": {"retries": 2, "retry_delay": 1}}
    if version == PINNED:
        return {"config": config}, {"config": {}}
    config["BinderHub"]["build_node_selector"] = {}  # as the current chart's own values have it
    return {"config": config}, None


def dockerd_argv(work: Path) -> list[str]:
    """The node's dockerd: its files under `work`, in a network namespace of its own."""
    return ["unshare", "--net", "--mount", "--propagation", "private", "--", DOCKERD, f"--data-root={work}/root",
            f"--exec-root={work}/exec", f"--pidfile={work}/docker.pid", f"--host=unix://{work}/docker.sock",
            "--bridge=none", "--iptables=false", "--ip-masq=false"]


def agent_argv(work: Path, api: str, pod_logs: Path) -> list[str]:
    """The node's agent, with a /run of its own (what its pods' mounts make there stays there)."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount -t tmpfs tmpfs /run && exec "$@"', "sh", sys.executable, "-m", "lab.apps.nodeagent",
            "--api", api, "--node", NODE, "--state-dir", str(work), "--pod-logs", str(pod_logs), "--interval", "0.2"]


def create(api: str, path: str, body: dict) -> None:
    requests.post(f"{api}/{path}", json=body, timeout=30)  # a first request: slow on a busy machine.raise_for_status()


@contextlib.contextmanager
def processes():
    """A list to append started processes to; each is stopped by its PID at the end, last first."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            stop(proc, 20)


def write_pod_files(pod: Path, charts: Path, version: str, hub_url: str, use_registry: bool, docker_host: str) -> None:
    """What the chart's binder pod mounts: config/ (and, pinned, secret/) with the chart's files."""
    (pod / "config").mkdir(parents=True)
    (pod / "config" / "binderhub_config.py").write_text(chart_file(charts, version))
    values, secret_values = binder_values(version, hub_url, use_registry, docker_host)
    (pod / "config" / "values.yaml").write_text(yaml.safe_dump(values))
    if secret_values is not None:
        (pod / "secret").mkdir()
        (pod / "secret" / "values.yaml").write_text(yaml.safe_dump(secret_values))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, real_charts):
    """The emulator, JupyterHub, the node's dockerd and agent, and a BinderHub per chart era; all
    stopped by PID at the end."""
    work = tmp_path_factory.mktemp("labbinder")
    binder_token = secrets.token_hex(16)
    kubeconfig, pod_logs = work / "kubeconfig", work / "pod-logs"
    docker_host = f"unix://{work / 'docker' / 'docker.sock'}"
    with no_process_left(), processes() as procs:
        (work / "docker").mkdir()
        dockerd = start(dockerd_argv(work / "docker"), work / "dockerd.log")
        procs.append(dockerd)
        emulator = start([sys.executable, "-m", "lab.cluster", "serve", "--address", "127.0.0.1", "--port", "0",
                          "--kubeconfig", str(kubeconfig), "--ready-delay", "0.2", "--node", NODE,
                          "--pod-logs", str(pod_logs)], work / "emulator.log")
        procs.append(emulator)

        ports = {name: free_port() for name in ("public", "hub", "proxy_api")}
        hub_url = f"http://127.0.0.1:{ports['public']}/"
        (work / "hub").mkdir()
        (work / "hub" / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            chp=str(CHP), proxy_token=secrets.token_hex(16), binder_token=binder_token, state=work / "hub", **ports))
        hub = start([str(Path(sys.executable).parent / "jupyterhub"), "-f", "jupyterhub_config.py"],
                    work / "hub.log", cwd=work / "hub")
        procs.append(hub)

        wait_for("the emulator", kubeconfig.exists, emulator, work / "emulator.log")
        api = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"].rstrip("/")
        create(api, "api/v1/namespaces", {"metadata": {"name": "binder"}})
        # The chart's push secret (use_registry: true), which BinderHub's build pods mount.
        create(api, "api/v1/namespaces/binder/secrets", {"metadata": {"name": "binder-build-docker-config"},
                                                         "data": {"config.json": base64.b64encode(b"{}").decode()}})
        (work / "agent").mkdir()
        agent = start(agent_argv(work / "agent", api, pod_logs), work / "agent" / "out.log")
        procs.append(agent)
        wait_for("dockerd", (work / "docker" / "docker.sock").exists, dockerd, work / "dockerd.log")
        binders = {}
        for name, (version, use_registry) in BINDERS.items():
            pod, port = work / name, free_port()
            write_pod_files(pod, real_charts, version, hub_url, use_registry, docker_host)
            env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "KUBECONFIG": str(kubeconfig),
                   "JUPYTERHUB_API_TOKEN": binder_token, "BUILD_NAMESPACE": "binder",
                   "DOCKER_HOST": docker_host, "HOME": str(pod)}
            binders[name] = (f"http://127.0.0.1:{port}/", start(binder_argv(pod, port), pod / "binder.log", env))
            procs.append(binders[name][1])
        for name, (url, proc) in binders.items():
            wait_for(f"BinderHub ({name})", lambda url=url: status(url + "versions") == 200, proc,
                     work / name / "binder.log")
        wait_for("JupyterHub", lambda: status(hub_url + "hub/api/health") == 200, hub, work / "hub.log")
        yield Stack(api, kubeconfig, hub_url, {name: url for name, (url, _) in binders.items()}, docker_host,
                    pod_logs)


class Stream:
    """A /build event stream, read event by event (`:` comments skipped) with a per-read timeout."""

    def __init__(self, binder: str, spec: str, timeout: float = 30.0):
        host, port = binder.removeprefix("http://").rstrip("/").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.conn.request("GET", f"/build/{spec}", headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.events: list[dict] = []

    def next(self) -> dict:
        while True:
            line = self.response.fp.readline()
            if not line:
                raise EOFError("the stream ended")
            if line.startswith(b"data:"):
                self.events.append(json.loads(line[5:]))
                return self.events[-1]

    def until(self, *phases: str) -> dict:
        while (event := self.next())["phase"] not in phases:
            pass
        return event

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def build(binder: str, spec: str, timeout: float = 30.0):
    stream = Stream(binder, spec, timeout)
    try:
        yield stream
    finally:
        stream.close()


def test_versions_and_health_are_binderhubs_own(stack):
    for name, binder in stack.binders.items():
        versions = requests.get(binder + "versions", timeout=5).json()
        assert versions["binderhub"].startswith("1.0.0")
        assert versions["builder_info"] == {"build_image": "quay.io/jupyterhub/repo2docker:2024.07.0"}
        health = requests.get(binder + "health", timeout=10)
        checks = {check["service"] for check in health.json()["checks"]}
        assert health.status_code == 200 and health.json()["ok"], health.text
        assert checks == {"JupyterHub API", "Pod quota"} | ({"Docker registry"} if BINDERS[name][1] else set())


@pytest.mark.parametrize("binder", ["pinned", "current"])
def test_a_build_streams_to_ready_with_a_working_server_and_lists_its_image(stack, binder):
    spec = SPEC.replace("/HEAD", f"-{binder}/HEAD")  # each era's own image (both build into one dockerd)
    with build(stack.binders[binder], spec) as stream:
        ready = stream.until("ready", "failed")
    phases = [event["phase"] for event in stream.events]
    assert ready["phase"] == "ready", stream.events
    assert phases[0] == "waiting" and {"fetching", "building"} <= set(phases)
    assert ("pushing" in phases) == BINDERS[binder][1]  # repo2docker --push only with a registry
    built = next(event for event in stream.events if event["phase"] == "built")
    image = built["imageName"]
    assert image.startswith("lab/binder-binderhub-2dci-2drepos-2drequirements-") and ready["image"] == image
    assert ready["url"].startswith(stack.hub + "user/") and ready["binder_request"] == "v2/" + spec
    server = requests.get(ready["url"] + "api/status", headers={"Authorization": f"token {ready['token']}"},
                          timeout=10)
    assert server.status_code == 200, server.text
    assert image in stack.configmap("lab-images")["images"].splitlines()
    assert stack.image_exists(image)  # built through the node's socket
    assert any(event.get("message") == f"Successfully tagged {image}\n" for event in stream.events)
    assert not stack.pods("component=binderhub-build")  # BinderHub deleted the Succeeded pod


def test_with_use_registry_the_fake_registry_never_has_the_image(stack):
    for _ in range(2):  # the second build of the same spec builds again
        with build(stack.binders["pinned"], "gh/lab/registry/HEAD") as stream:
            built = stream.until("built", "failed")
        assert built["phase"] == "built" and built["message"] == "Built image, launching...\n", stream.events


def test_without_a_registry_the_nodes_docker_has_the_image_once_built(stack):
    for message in ("Built image, launching...\n", "Found built image, launching...\n"):
        with build(stack.binders["current"], "gh/lab/node-docker/HEAD") as stream:
            built = stream.until("built", "failed")
        assert built["phase"] == "built" and built["message"] == message, stream.events
        image, listed = built["imageName"], stack.configmap("lab-images")["images"].splitlines()
        assert image in listed, message  # built, or found (listed again)
        # as after a restart of the lab's cluster: its list is gone, the daemon keeps the image
        stack.set_configmap("lab-images", {"images": "".join(f"{i}\n" for i in listed if i != image)})


def test_a_spec_told_to_fail_ends_failed_as_a_failing_repo2docker(stack):
    stack.set_configmap("lab-build", {"fail": "gh/lab/fails/*\n", "stall": ""})
    try:
        with build(stack.binders["current"], "gh/lab/fails/HEAD") as stream:
            failed = stream.until("failed", "ready")
    finally:
        stack.set_configmap("lab-build", {})
    assert failed["phase"] == "failed" and "status_code" not in failed, stream.events
    assert "returned a non-zero code: 1" in failed["message"]
    assert "built" not in [event["phase"] for event in stream.events]


def test_a_stalled_build_sends_nothing_after_its_first_lines(stack):
    stack.set_configmap("lab-build", {"stall": "gh/lab/stalls/*"})
    try:
        with build(stack.binders["current"], "gh/lab/stalls/HEAD") as stream:
            for _ in range(7):  # waiting and the six lines a stalled build sends
                stream.next()
            stream.conn.sock.settimeout(3)  # a stream that is still open, silent
            with pytest.raises(TimeoutError):
                stream.next()
    finally:
        stack.set_configmap("lab-build", {})
        stack.delete_pods("component=binderhub-build")  # the build pod runs until deleted
    assert [event["phase"] for event in stream.events] == ["waiting"] + ["fetching"] * 3 + ["building"] * 3


def test_a_build_pod_without_its_socket_waits_with_the_kubelets_message(stack):
    """As BinderHub's builds on a node without the docker socket (binderhub issue 1343): the pod
    stays ContainerCreating with FailedMount events, and the build reports only `pending`."""
    from kubernetes.client import CoreV1Api
    from kubernetes.config import new_client_from_config

    from lab.apps.labbuild import LabBuild

    api = CoreV1Api(new_client_from_config(str(stack.kubeconfig)))
    statuses: list = []
    build = LabBuild(api=api, namespace="binder", name="build-lab-no-socket", repo_url="https://github.com/lab/x",
                     ref="0" * 40, image_name="lab/binder-no-socket:" + "0" * 40,
                     docker_host="unix:///run/lab-no-dind/docker.sock",
                     q=types.SimpleNamespace(put=lambda event: statuses.append(event.payload)))
    build.main_loop = types.SimpleNamespace(add_callback=lambda put, event: put(event))
    thread = threading.Thread(target=build.submit)
    thread.start()
    try:
        until = time.monotonic() + 15
        while not (message := failed_mount(stack, "build-lab-no-socket")):
            assert time.monotonic() < until, "no FailedMount event"
            time.sleep(0.2)
        assert message == ('MountVolume.SetUp failed for volume "docker-socket" : hostPath type check failed: '
                           "/run/lab-no-dind/docker.sock is not a socket file")
        (pod,) = stack.pods("name=build-lab-no-socket")
        assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
        assert {status.value for status in statuses} == {"pending"}
    finally:
        build.stop()
        stack.delete_pods("name=build-lab-no-socket")  # its watch then sees it deleted
        thread.join(35)
    assert not thread.is_alive()


def failed_mount(stack: Stack, pod: str) -> str | None:
    events = requests.get(f"{stack.api}/api/v1/namespaces/binder/events", timeout=5).json()["items"]
    return next((e["message"] for e in events if e["involvedObject"]["name"] == pod and e["reason"] == "FailedMount"),
                None)


def test_a_followed_log_streams_until_its_container_no_longer_runs(stack):
    """`kubectl logs -f` as the kubelet serves it (BinderHub's stream_logs relies on it)."""
    name = "lab-follow"
    create(stack.api, "api/v1/namespaces/binder/pods", {"metadata": {"name": name, "labels": {"lab": name}},
                                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    log = stack.pod_logs / "binder" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("first\n")
    try:
        until = time.monotonic() + 15
        while not [p for p in stack.pods(f"lab={name}") for s in p["status"].get("containerStatuses") or []
                   if "running" in s["state"]]:
            assert time.monotonic() < until, "the pod does not run"
            time.sleep(0.2)
        url = f"{stack.api}/api/v1/namespaces/binder/pods/{name}/log"
        with requests.get(url, params={"follow": "true"}, stream=True, timeout=10) as followed:
            lines = followed.iter_lines()
            assert next(lines) == b"first"
            with log.open("a") as out:
                out.write("second\n")
            assert next(lines) == b"second"
            with log.open("a") as out:
                out.write("last\n")
            requests.delete(f"{url.removesuffix('/log')}", timeout=5)
            assert list(lines) == [b"last"]  # its last words, then the end
    finally:
        requests.delete(f"{stack.api}/api/v1/namespaces/binder/pods/{name}", timeout=5)
        log.unlink()


def test_labr2d_without_a_docker_daemon_fails_as_repo2docker(tmp_path):
    argv = [sys.executable, "-m", "lab.apps.labr2d", "jupyter-repo2docker", "--ref=HEAD", "--image=lab/x:1",
            "--no-clean", "--no-run", "--json-logs", "--user-name=jovyan", "--user-id=1000", "https://github.com/lab/x"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/docker.sock"})
    assert done.returncode == 1, done.stderr
    (line,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert line["message"].startswith("\nContainer engine initialization error: ") and "phase" not in line
    assert f"unix://{tmp_path}/docker.sock" in line["message"]


def test_an_unresolvable_ref_fails_as_binderhub_does(stack):
    with build(stack.binders["current"], "gh/binderhub-ci-repos/requirements/does-not-exist") as stream:
        failed = stream.next()
    assert failed == {"phase": "failed", "message": (
        "Could not resolve ref for gh:binderhub-ci-repos/requirements/does-not-exist. "
        "Double check your URL and that your repo is public.\n")}


def test_refs_resolve_offline_by_the_documented_rule():
    from lab.apps.labbinder import offline_ref

    sha = "0123456789abcdef0123456789abcdef01234567"
    assert offline_ref("https://github.com/org/repo", sha) == sha
    assert offline_ref("https://github.com/org/repo", "does-not-exist") is None
    assert offline_ref("https://github.com/org/repo", "does-not-exist-either") is None
    made_up = offline_ref("https://github.com/org/repo", "HEAD")
    assert len(made_up) == 40 and made_up == offline_ref("https://github.com/org/repo", "HEAD")
    assert made_up != offline_ref("https://github.com/org/other", "HEAD")


def test_lab_build_outcome_is_the_first_matching_key():
    from lab.apps.labbuild import outcome

    switches = {"fail": "gh/lab/fails/*\n\n gl/x/* \n", "stall": "gh/lab/*"}
    assert outcome(switches, "gh/lab/fails/HEAD") == "fail"
    assert outcome(switches, "gl/x/main") == "fail"
    assert outcome(switches, "gh/lab/stalls/HEAD") == "stall"
    assert outcome(switches, "gh/other/repo/HEAD") == "succeed"
    assert outcome({}, "gh/lab/fails/HEAD") == "succeed"


def test_concurrent_builds_each_add_their_image_to_lab_images(stack):
    from kubernetes.client import CoreV1Api
    from kubernetes.config import new_client_from_config

    from lab.apps.labbuild import list_image

    api = CoreV1Api(new_client_from_config(str(stack.kubeconfig)))
    images = [f"lab/binder-concurrent-{i}:{i:040x}" for i in range(8)]
    threads = [threading.Thread(target=list_image, args=(api, image)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    listed = stack.configmap("lab-images")["images"].splitlines()
    assert set(images) <= set(listed) and len(listed) == len(set(listed))
