"""The build path on the lab's nodes: `status` checks every node's builder socket and DaemonSet pods, and
`nodes.fix-build-socket` repairs a socket path that became a directory (dry run first), for the host
builder (the docker lab's default) and for dind (a temporary inventory; the lab's node agent runs its
dockerd and checks hostPath types as a kubelet does); the diagnostics bundle holds the same lines. Each test
leaves the lab as it found it."""
from __future__ import annotations

import json
import re
import tarfile

import pytest

from tests.conftest import registry_inventory, ssh, until

pytestmark = pytest.mark.lab

CP, NODE = "lab-node1", "lab-node2"
NODES = ("lab-node1", "lab-node2", "lab-node3")
HOST_SOCKET, DIND_SOCKET = "/var/run/docker.sock", "/var/run/dind/docker.sock"


def lines(out: str, step: str, node: str) -> list[str]:
    return re.findall(rf"^{node} \| {re.escape(step)} \| (.*)$", out, re.M)


def is_kind(node: str, test: str, path: str) -> bool:
    return ssh(node, f"test {test} {path} && echo yes", check=False).strip() == "yes"


def pods_on(daemonset: str, node: str) -> list[dict]:
    got = json.loads(ssh(CP, f"kubectl get pods -n binder -l name={daemonset} -o json"))["items"]
    return [p for p in got if p["spec"].get("nodeName") == node]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def test_a_host_socket_made_a_directory_is_found_and_repaired(deployed, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_DIAGNOSTICS_DIR", str(tmp_path / "diagnostics"))
    out = cli("status", "--env", "lab")[1]
    for node in NODES:
        assert lines(out, "status.build", node) == [
            f"ok | host builder: {HOST_SOCKET} is a socket; binder-image-cleaner ready"], out
    ssh(NODE, f"sudo sh -c 'rm -f {HOST_SOCKET} && mkdir {HOST_SOCKET}'")  # docker runs on, unreachable
    try:
        out = cli("status", "--env", "lab")[1]
        assert lines(out, "status.build", NODE) == [
            f"failed | host builder: {HOST_SOCKET} is an empty directory: run nodes.fix-build-socket; "
            "binder-image-cleaner ready"], out
        out = cli("diagnose", "--env", "lab")[1]
        with tarfile.open(re.search(r"bundle written: (\S+)", out).group(1)) as bundle:
            [member] = [m for m in bundle.getmembers() if m.name.endswith("/build-path.txt")]
            text = bundle.extractfile(member).read().decode()
        assert f"{NODE}: failed: host builder: {HOST_SOCKET} is an empty directory" in text, text
        code, out = cli("nodes.fix-build-socket", "--env", "lab", "--dry-run")
        assert code == 0, out
        assert lines(out, "nodes.fix-build-socket", NODE) == [
            f"would change | remove directory {HOST_SOCKET} on {NODE} and restart docker"], out
        assert is_kind(NODE, "-d", HOST_SOCKET)
        code, out = cli("nodes.fix-build-socket", "--env", "lab")
        assert code == 0, out
        assert lines(out, "nodes.fix-build-socket", NODE) == [
            f"changed | removed empty directory {HOST_SOCKET}, docker restarted: {HOST_SOCKET} is a socket"], out
        assert lines(out, "nodes.fix-build-socket", "lab-node1") == [f"ok | {HOST_SOCKET} is a socket: nothing to do"]
        assert is_kind(NODE, "-S", HOST_SOCKET)
        assert "| changed |" not in cli("nodes.fix-build-socket", "--env", "lab")[1]
    finally:
        ssh(NODE, f"if [ -d {HOST_SOCKET} ]; then sudo rmdir {HOST_SOCKET} && sudo service docker restart; fi")


@pytest.fixture
def dind(deployed, cli, tmp_path, monkeypatch):
    """The release on the dind builder (a temporary inventory) with binder-dind ready on every node;
    the lab's own inventory (the host builder) again after."""
    inventory = str(registry_inventory(tmp_path, cli, monkeypatch, image_builder="dind"))
    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", inventory)
    assert code == 0, out
    try:
        until("binder-dind ready on every node with its socket", lambda: all(
            any(ready(p) for p in pods_on("binder-dind", n)) and is_kind(n, "-S", DIND_SOCKET) for n in NODES),
            timeout=60)
        yield inventory
    finally:
        ssh(NODE, f"if [ -d {DIND_SOCKET} ]; then sudo rmdir {DIND_SOCKET}; fi", check=False)
        code, out = cli("helm.upgrade", "--env", "lab")
        assert code == 0, out
        until("the image cleaner ready on every node again",
              lambda: all(any(ready(p) for p in pods_on("binder-image-cleaner", n)) for n in NODES), timeout=60)
        until("dind's dockerds stopped (each node runs its own only)", lambda: all(
            ssh(n, "pgrep -c -x dockerd", check=False).strip() == "1" for n in NODES), timeout=30)
        for node in NODES:  # what dind left on the node: its socket directory, its data
            ssh(node, "sudo sh -c 'rm -rf /var/run/dind /var/lib/dind/*'")


def test_a_dind_socket_made_a_directory_is_found_and_repaired(dind, cli):
    old = pods_on("binder-dind", NODE)[0]["metadata"]["name"]
    cleaner = pods_on("binder-image-cleaner", NODE)[0]["metadata"]["name"]
    # as after a node's reboot with the binder pod's untyped mount first: dind's new pod crash-loops on
    # the directory, the image cleaner's new pod cannot mount its socket
    ssh(NODE, f"sudo sh -c 'rm -f {DIND_SOCKET} && mkdir {DIND_SOCKET}'")
    ssh(CP, f"kubectl delete pod -n binder {old} {cleaner} --wait=false")

    def failing_mount() -> bool:
        new = [p["metadata"]["name"] for p in pods_on("binder-image-cleaner", NODE) if p["metadata"]["name"] != cleaner]
        return bool(new) and "is not a socket file" in ssh(
            CP, f"kubectl get events -n binder --field-selector reason=FailedMount,involvedObject.name={new[0]}")
    until("the image cleaner's new pod failing its mount", failing_mount)
    out = cli("status", "--env", "lab", "--inventory", dind)[1]
    [line] = lines(out, "status.build", NODE)
    # dind's pod is ready for the moment each restart runs (the chart has no readiness probe), else
    # CrashLoopBackOff: the directory and the image cleaner's mount are what stay
    assert line.startswith(f"failed | dind builder: {DIND_SOCKET} is an empty directory: run nodes.fix-build-socket; "
                           "pod binder-"), out
    assert (f'FailedMount: MountVolume.SetUp failed for volume "dockersocket-dind" : hostPath type check failed: '
            f"{DIND_SOCKET} is not a socket file") in line, out
    assert lines(out, "status.build", "lab-node3")[0].startswith("ok | dind builder"), out

    code, out = cli("nodes.fix-build-socket", "--env", "lab", "--inventory", dind, "--dry-run")
    assert code == 0, out
    [line] = lines(out, "nodes.fix-build-socket", NODE)
    assert re.fullmatch(rf"would change \| remove directory {DIND_SOCKET} on {NODE} and restart pod binder-dind-\w+",
                        line), out
    assert is_kind(NODE, "-d", DIND_SOCKET)

    code, out = cli("nodes.fix-build-socket", "--env", "lab", "--inventory", dind)
    assert code == 0, out
    [line] = lines(out, "nodes.fix-build-socket", NODE)
    assert re.fullmatch(rf"changed \| removed empty directory {DIND_SOCKET} and deleted pod binder-dind-\w+: new pod "
                        rf"binder-dind-\w+ ready, {DIND_SOCKET} is a socket", line), out
    assert is_kind(NODE, "-S", DIND_SOCKET)
    assert "| changed |" not in cli("nodes.fix-build-socket", "--env", "lab", "--inventory", dind)[1]
    until("status ok on lab-node2 (the image cleaner mounts its socket again)", lambda: lines(
        cli("status", "--env", "lab", "--inventory", dind)[1], "status.build", NODE)[0].startswith("ok"), timeout=30)
