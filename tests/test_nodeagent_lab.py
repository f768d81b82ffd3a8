"""The lab's node agent (lab.apps.nodeagent) on the running lab: hostPath type checks against each
node's own files, and the builders' pods played for real on their node (a real dockerd for dind,
the lab's repo2docker for a build pod), on docker and containerd nodes."""
from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from lab import hosts as labhosts
from tests.conftest import ssh, until

NAMESPACE = "nodeagent"
DIND_IMAGE = "docker.io/library/docker:28.3.3-dind"


def _kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["ssh", "-F", str(labhosts.state_dir() / "ssh_config"), "lab-node1",
                           shlex.join(["kubectl", *args])], input=stdin, capture_output=True, text=True, timeout=60)
    if check and proc.returncode:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc.stdout


def _apply(*objects: dict) -> None:
    _kubectl("apply", "-f", "-", stdin="\n".join(json.dumps(o) for o in objects))


@pytest.fixture(scope="module")
def space(lab):
    """A namespace of its own, deleted (with its pods: the agents stop what they ran) at the end."""
    _kubectl("create", "namespace", NAMESPACE)
    until("its default ServiceAccount", lambda: "default" in _kubectl("get", "sa", "-n", NAMESPACE, check=False))
    yield
    _kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _pod_manifest(name: str, node: str, volumes: list[dict], image: str = "nginx:1") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "volumes": volumes,
                     "containers": [{"name": "main", "image": image}]}}


def _pod(name: str) -> dict:
    return json.loads(_kubectl("get", "pod", name, "-n", NAMESPACE, "-o", "json", check=False) or "{}")


def _phase(name: str) -> str:
    return (_pod(name).get("status") or {}).get("phase", "")


def _events(name: str) -> str:
    return _kubectl("get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}",
                    "-o", "jsonpath={range .items[*]}{.reason} {.message}{\"\\n\"}{end}")


def _dind(name: str, node: str, pinned: bool = False) -> dict:
    """A DaemonSet as the current chart renders its dind (init container `filesystem`), or the
    pinned chart's (no init container, image docker:19.03.5-dind), on one node."""
    socket = "/var/run/dind/docker.sock"
    image = "docker:19.03.5-dind" if pinned else DIND_IMAGE
    mounts = [{"name": "run-dind", "mountPath": "/var/run/dind"}]
    spec = {
        "nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 30,
        "containers": [{"name": "dind", "image": image, "securityContext": {"privileged": True},
                        "args": ["dockerd", "--storage-driver=overlay2", f"-H unix://{socket}"],
                        "volumeMounts": [{"name": "dockerlib-dind", "mountPath": "/var/lib/docker"}, *mounts]}],
        "volumes": [{"name": "dockerlib-dind", "hostPath": {"path": "/var/lib/dind", "type": "DirectoryOrCreate"}},
                    {"name": "run-dind", "hostPath": {"path": "/var/run/dind", "type": "DirectoryOrCreate"}}]}
    if not pinned:
        spec["initContainers"] = [{
            "name": "filesystem", "image": image, "securityContext": {"privileged": True}, "volumeMounts": mounts,
            "command": ["sh", "-c", f'if [ -d "{socket}" ]; then echo "Removing incorrect socket directory '
                                    f'{socket}"; rmdir "{socket}"; fi\n']}]
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": {"matchLabels": {"name": name}},
                     "template": {"metadata": {"labels": {"name": name}}, "spec": spec}}}


def _dind_pod(name: str) -> dict:
    return until(f"{name}'s pod", lambda: next(iter(json.loads(_kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", f"name={name}", "-o", "json"))["items"]), None))


def _dind_answers(node: str) -> bool:
    return ssh(f"root@{node}", "docker -H unix:///var/run/dind/docker.sock version --format "
                               "'{{.Server.Version}}' 2>/dev/null", check=False).strip() != ""


def _dockerds(node: str) -> int:
    return int(ssh(f"root@{node}", "pgrep -c -x dockerd || true").strip() or 0)


def _removed(daemonset: str, node: str, dockerds: int, paths: str = "/var/run/dind /var/lib/dind/*") -> None:
    """Delete the builder's DaemonSet, wait until the node runs `dockerds` dockerds again (its own)
    and remove what the builder left on the node (its socket directory, its data)."""
    _kubectl("delete", "daemonset", daemonset, "-n", NAMESPACE)
    until(f"{daemonset}'s dockerd stopped", lambda: _dockerds(node) == dockerds, 15)
    ssh(f"root@{node}", f"rm -rf {paths}")


def test_a_missing_socket_holds_the_pod_until_a_socket_is_there(space):
    volume = {"name": "sock", "hostPath": {"path": "/var/run/nothing.sock", "type": "Socket"}}
    _apply(_pod_manifest("needs-socket", "lab-node2", [volume]))
    message = ('FailedMount MountVolume.SetUp failed for volume "sock" : hostPath type check failed: '
               "/var/run/nothing.sock is not a socket file")
    try:
        until("the kubelet's event", lambda: message in _events("needs-socket"), 15)
        assert _kubectl("get", "pod", "needs-socket", "-n", NAMESPACE, "--no-headers").split()[2] == \
            "ContainerCreating"
        bind = "import socket; socket.socket(socket.AF_UNIX).bind('/var/run/nothing.sock')"
        ssh("root@lab-node2", shlex.join(["python3", "-c", bind]))
        until("the pod running", lambda: _phase("needs-socket") == "Running", 15)
    finally:
        ssh("root@lab-node2", "rm -f /var/run/nothing.sock")
        _kubectl("delete", "pod", "needs-socket", "-n", NAMESPACE, "--wait=false")


def test_directory_or_create_makes_the_directory_on_its_node_only(space):
    path = "/var/lib/nodeagent-test"
    _apply(_pod_manifest("makes-dir", "lab-node2", [{"name": "d", "hostPath": {"path": path,
                                                                              "type": "DirectoryOrCreate"}}]))
    try:
        until("the pod running", lambda: _phase("makes-dir") == "Running", 15)
        assert ssh("root@lab-node2", f"stat -c %F:%a {path}").strip() == "directory:755"
        assert ssh("root@lab-node3", f"test -e {path} && echo there || echo absent").strip() == "absent"
    finally:
        _kubectl("delete", "pod", "makes-dir", "-n", NAMESPACE, "--wait=false")
        ssh("root@lab-node2", f"rmdir {path}", check=False)


def test_dind_runs_a_real_dockerd_on_its_node_and_a_build_pod_builds_through_it(space):
    before = _dockerds("lab-node3")
    _apply(_dind("dind", "lab-node3"))
    try:
        until("dind's dockerd answering on lab-node3", lambda: _dind_answers("lab-node3"), 20)
        assert not _dind_answers("lab-node2")
        assert _dind_pod("dind")["status"]["phase"] == "Running"
        build = _pod_manifest("build-1", "lab-node3", [{"name": "docker-socket", "hostPath": {
            "path": "/var/run/dind/docker.sock", "type": "Socket"}}], "quay.io/jupyterhub/repo2docker:2024.07.0")
        build["spec"].update(restartPolicy="Never")
        build["spec"]["containers"][0].update(
            args=["jupyter-repo2docker", "--ref=0123456789abcdef", "--image=lab/built:1", "--no-clean", "--no-run",
                  "--json-logs", "--user-name=jovyan", "--user-id=1000", "https://example.org/lab/repo"],
            volumeMounts=[{"name": "docker-socket", "mountPath": "/var/run/docker.sock"}])
        _apply(build)
        phase = until("the build pod done", lambda: _phase("build-1") in ("Succeeded", "Failed") and _phase("build-1"),
                      30)
        logs = _kubectl("logs", "build-1", "-n", NAMESPACE)
        assert phase == "Succeeded", logs
        assert ssh("root@lab-node3", "docker -H unix:///var/run/dind/docker.sock images -q lab/built:1").strip()
    finally:
        _kubectl("delete", "pod", "build-1", "-n", NAMESPACE, "--wait=false", check=False)
        _removed("dind", "lab-node3", before)


def test_a_socket_path_made_a_directory_crashes_the_pinned_charts_dind_on_that_node(space):
    before = _dockerds("lab-node2")
    ssh("root@lab-node2", "mkdir -p /var/run/dind/docker.sock")
    _apply(_dind("dind-pinned", "lab-node2", pinned=True))
    try:
        name = _dind_pod("dind-pinned")["metadata"]["name"]
        until("CrashLoopBackOff", lambda: "CrashLoopBackOff" in _kubectl("get", "pod", name, "-n", NAMESPACE), 20)
        assert "can't create unix socket /var/run/dind/docker.sock: is a directory" in \
            _kubectl("logs", name, "-n", NAMESPACE)
    finally:
        _removed("dind-pinned", "lab-node2", before)


def test_pink_serves_the_docker_api_on_its_socket(space):
    socket = "/var/run/pink/podman.sock"
    mounts = [{"name": "run-pink", "mountPath": "/var/run/pink"}]
    image = "quay.io/podman/stable:v5.8.1"
    spec = {"nodeSelector": {"kubernetes.io/hostname": "lab-node2"},
            "initContainers": [{"name": "filesystem", "image": image, "volumeMounts": mounts, "command": [
                "sh", "-c", f'if [ -d "{socket}" ]; then rmdir "{socket}"; fi\n']}],
            "containers": [{"name": "pink", "image": image,
                            "args": ["podman", "system", "service", "--time=0", f"unix://{socket}"],
                            "volumeMounts": [{"name": "podman-containers",
                                              "mountPath": "/var/lib/containers/storage"}, *mounts]}],
            "volumes": [{"name": "podman-containers", "hostPath": {"path": "/var/lib/pink/storage",
                                                                   "type": "DirectoryOrCreate"}},
                        {"name": "run-pink", "hostPath": {"path": "/var/run/pink", "type": "DirectoryOrCreate"}}]}
    before = _dockerds("lab-node2")
    ssh("root@lab-node2", f"mkdir -p {socket}")  # made a directory: the init container removes it
    _apply({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "pink", "namespace": NAMESPACE},
            "spec": {"selector": {"matchLabels": {"name": "pink"}},
                     "template": {"metadata": {"labels": {"name": "pink"}}, "spec": spec}}})
    try:
        until("the pink socket answering", lambda: ssh("root@lab-node2", f"docker -H unix://{socket} version "
                                                       "--format '{{.Server.Version}}' 2>/dev/null", check=False), 20)
    finally:
        _removed("pink", "lab-node2", before, "/var/run/pink /var/lib/pink/*")


@pytest.fixture
def containerd_node(space, real_charts):
    """lab-node2 on containerd (the lab's mixed runtime) for the test, docker again after."""
    labhosts.up(nodes=3, charts_dir=real_charts, runtime="mixed")
    yield "lab-node2"
    labhosts.up(nodes=3, charts_dir=real_charts, runtime=labhosts.DEFAULT_RUNTIME)


def test_dind_runs_on_a_containerd_node_with_its_own_containerd(containerd_node):
    assert ssh(f"root@{containerd_node}", "test -S /run/containerd/containerd.sock && echo yes").strip() == "yes"
    _apply(_dind("dind-containerd", containerd_node))
    try:
        until("dind's dockerd answering", lambda: _dind_answers(containerd_node), 20)
        # its own containerd (under its exec root), as in its image, not the node's
        assert "containerd --config /run/labnode/pods/" in ssh(f"root@{containerd_node}", "pgrep -af containerd")
    finally:
        _removed("dind-containerd", containerd_node, 0)
