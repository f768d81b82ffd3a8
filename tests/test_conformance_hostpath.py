"""Conformance: a hostPath volume that fails the kubelet's type check shows in kubectl as on Kubernetes
(pod ContainerCreating, Warning FailedMount `MountVolume.SetUp failed for volume "V" : hostPath type
check failed: PATH is not a socket file`, pkg/volume/hostpath/host_path.go checkType), given the
node agent's ConfigMap (lab.apps.nodeagent) that the emulator's kubelet reads; and the agent's
check itself, on real files."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from lab.apps import nodeagent
from lab.cluster import kubelet
from tests.test_labcluster import HELM, KUBECTL, Lab, _emulator

NODES = ("lab-a", "lab-b")
SOCKET_VOLUME = {"name": "dockersocket-host", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}}
MESSAGE = ('MountVolume.SetUp failed for volume "dockersocket-host" : hostPath type check failed: '
           '/var/run/docker.sock is not a socket file')
needs_tools = pytest.mark.skipif(not (KUBECTL.exists() and HELM.exists()), reason="pinned kubectl/helm missing")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The emulator with two nodes; lab-a has a node agent's ConfigMap, lab-b none."""
    workdir = tmp_path_factory.mktemp("conformance-hostpath")
    with _emulator(workdir, *(f"--node={name}" for name in NODES)) as running:
        running.kubectl("create", "namespace", "pods")
        _agent_says(running, {})
        yield running


def _agent_says(lab: Lab, mounts: dict[str, str], images: str = "") -> None:
    """Write lab-a's node agent ConfigMap as the agent does."""
    data = {"images": images, "mounts": json.dumps(mounts)}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
                "metadata": {"name": f"{nodeagent.CONFIGMAP_PREFIX}lab-a", "namespace": "kube-system"}}
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


def _pod(lab: Lab, name: str, node: str, image: str = "nginx:1", volumes: list | None = None) -> str:
    """A bare pod on `node`; its uid."""
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "pods"},
                "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "volumes": volumes or [],
                         "containers": [{"name": "main", "image": image}]}}
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return _until(lab, name, lambda p: p["spec"].get("nodeName"))["metadata"]["uid"]


def _until(lab: Lab, name: str, holds, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        pod = lab.json("get", "pod", name, "-n", "pods")
        if holds(pod):
            return pod
        assert time.monotonic() < deadline, pod
        time.sleep(0.2)


def _waiting(pod: dict) -> str:
    return (((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state") or {}).get(
        "waiting", {}).get("reason", "")


def _ready(pod: dict) -> bool:
    return kubelet.ready(pod)


def _events(lab: Lab, name: str) -> list[tuple[str, str, str]]:
    items = lab.json("get", "events", "-n", "pods", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


@needs_tools
def test_a_socket_that_is_not_there_keeps_the_pod_container_creating_with_the_kubelets_event(lab):
    uid = _pod(lab, "cleaner", "lab-a", volumes=[SOCKET_VOLUME])
    pod = _until(lab, "cleaner", lambda p: _waiting(p) == "ContainerCreating")  # not yet checked: no event
    assert not [e for e in _events(lab, "cleaner") if e[1] == "FailedMount"]
    _agent_says(lab, {uid: MESSAGE})
    pod = _until(lab, "cleaner", lambda p: ("Warning", "FailedMount", MESSAGE) in _events(lab, "cleaner"))
    assert _waiting(pod) == "ContainerCreating" and pod["status"]["phase"] == "Pending"
    row = lab.kubectl("get", "pod", "cleaner", "-n", "pods", "--no-headers").stdout.split()
    assert row[1:3] == ["0/1", "ContainerCreating"], row
    described = lab.kubectl("describe", "pod", "cleaner", "-n", "pods").stdout
    assert "Warning  FailedMount" in described and MESSAGE in " ".join(described.split()), described
    assert "Reason:       ContainerCreating" in described
    # The kubelet retries the mount: once the socket is there, the pod starts.
    _agent_says(lab, {uid: ""})
    assert _until(lab, "cleaner", _ready)["status"]["phase"] == "Running"


@needs_tools
def test_a_node_without_an_agent_does_not_check_host_paths(lab):
    _pod(lab, "elsewhere", "lab-b", volumes=[SOCKET_VOLUME])
    _until(lab, "elsewhere", _ready)
    assert not [e for e in _events(lab, "elsewhere") if e[1] == "FailedMount"]


@needs_tools
def test_a_pod_the_agent_plays_waits_for_its_report_only_on_the_agents_node(lab):
    _agent_says(lab, {}, "".join(f"{p}\n" for p in nodeagent.PLAYED))
    uid = _pod(lab, "dind", "lab-a", image="docker:28.3.3-dind")
    _agent_says(lab, {uid: ""}, "".join(f"{p}\n" for p in nodeagent.PLAYED))
    time.sleep(1.5)  # a resync or two
    pod = _until(lab, "dind", lambda p: _waiting(p) == "ContainerCreating")
    assert pod["status"]["phase"] == "Pending"
    _pod(lab, "dind-b", "lab-b", image="docker:28.3.3-dind")  # lab-b: the emulator's own status
    _until(lab, "dind-b", _ready)


def test_the_type_check_follows_the_kubelet(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "real.sock"))
    try:
        (tmp_path / "dir.sock").mkdir()
        (tmp_path / "file").write_text("")
        assert nodeagent.check_type(str(tmp_path / "real.sock"), "Socket") == ""
        assert nodeagent.check_type(str(tmp_path / "dir.sock"), "Socket") == \
            f"hostPath type check failed: {tmp_path}/dir.sock is not a socket file"
        assert nodeagent.check_type(str(tmp_path / "none.sock"), "Socket").endswith("none.sock is not a socket file")
        assert nodeagent.check_type(str(tmp_path / "file"), "Directory").endswith("file is not a directory")
        assert nodeagent.check_type(str(tmp_path / "dir.sock"), "File").endswith("dir.sock is not a file")
        assert nodeagent.check_type(str(tmp_path / "file"), "CharDevice").endswith("is not a character device")
        assert nodeagent.check_type("/dev/null", "CharDevice") == ""
        assert nodeagent.check_type(str(tmp_path / "file"), "BlockDevice").endswith("is not a block device")
        assert nodeagent.check_type(str(tmp_path / "file"), "Pipe") == "Pipe is an invalid volume type"
        assert nodeagent.check_type(str(tmp_path / "new/dir"), "DirectoryOrCreate") == ""
        assert (tmp_path / "new/dir").is_dir() and (tmp_path / "new/dir").stat().st_mode & 0o777 == 0o755 & ~_umask()
        assert nodeagent.check_type(str(tmp_path / "new/file"), "FileOrCreate") == ""
        assert (tmp_path / "new/file").is_file() and (tmp_path / "new/file").read_text() == ""
        assert nodeagent.check_type(str(tmp_path / "file"), "DirectoryOrCreate").endswith("file is not a directory")
        assert nodeagent.check_type(str(tmp_path / "nothing"), "") == "" and not (tmp_path / "nothing").exists()
    finally:
        sock.close()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_a_missing_untyped_path_becomes_a_directory_only_when_the_typed_ones_pass(tmp_path):
    def pod(*volumes):
        return {"spec": {"volumes": [{"name": f"v{i}", "hostPath": v} for i, v in enumerate(volumes)]}}

    untyped = {"path": str(tmp_path / "docker.sock")}
    failing = {"path": str(tmp_path / "absent.sock"), "type": "Socket"}
    assert nodeagent.check_host_paths(pod(untyped, failing)) == (
        f'MountVolume.SetUp failed for volume "v1" : hostPath type check failed: {tmp_path}/absent.sock '
        "is not a socket file")
    assert not (tmp_path / "docker.sock").exists()
    assert nodeagent.check_host_paths(pod(untyped)) == ""
    assert (tmp_path / "docker.sock").is_dir()  # as containerd and docker bind-mount a missing source
    assert nodeagent.check_host_paths(pod({"path": str(tmp_path / "docker.sock"), "type": "Socket"})).endswith(
        "docker.sock is not a socket file")


def test_the_agent_plays_the_builders_images_by_their_normalised_reference():
    def pod(*images):
        return {"spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}}

    assert nodeagent.plays(pod("docker:19.03.5-dind"))  # the pinned chart's dind, docker.io/library/ implied
    assert nodeagent.plays(pod("docker.io/library/docker:28.3.3-dind", "quay.io/jupyterhub/repo2docker:2024.07.0"))
    assert not nodeagent.plays(pod("docker:19.03.5-dind", "nginx:1"))
    assert nodeagent.plays(pod("quay.io/podman/stable:v5.8.1"))  # podman's API: the node's dockerd stands in
    assert "quay.io/jupyterhub/repo2docker:2024.07.0" in kubelet.NODE_IMAGES


def test_dockerd_gets_what_its_container_would_have_had(tmp_path):
    argv = nodeagent.dockerd_argv(["dockerd", "--storage-driver=overlay2", "-H unix:///var/run/dind/docker.sock"],
                                  tmp_path)
    assert argv[:3] == ["/usr/sbin/dockerd", "--storage-driver=overlay2", "-H unix:///var/run/dind/docker.sock"]
    assert f"--exec-root={tmp_path}/exec" in argv and f"--pidfile={tmp_path}/docker.pid" in argv
    assert f"--config-file={tmp_path}/daemon.json" in argv and (tmp_path / "daemon.json").read_text() == "{}\n"
    assert {"--bridge=none", "--iptables=false"} <= set(argv)
    assert nodeagent.dockerd_argv(["--debug"], tmp_path)[:2] == ["/usr/sbin/dockerd", "--debug"]
