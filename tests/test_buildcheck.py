"""The build path check without a host: the socket probe's output, and each node's verdict from the
pods, DaemonSets and events as kubectl prints them (shapes from a real kubelet: a dind pod crash-looping
on a socket path that is a directory, an image cleaner stuck in ContainerCreating on its socket)."""
from __future__ import annotations

import copy
import socket
import subprocess

import pytest

from fabfile import buildcheck, probes, remote
from fabfile.buildcheck import Cluster
from fabfile.buildpath import Builder
from fabfile.probes import BuilderPods, SocketPath

NODE = "lab-node2"
DIND = Builder("dind", "vars.image_builder")
HOST = Builder("host", "every node runs dockerd")
NOT_A_SOCKET = ('MountVolume.SetUp failed for volume "dockersocket-dind" : hostPath type check failed: '
                "/var/run/dind/docker.sock is not a socket file")


def daemonset(name: str, node_selector: dict | None = None) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": "binder"},
            "spec": {"selector": {"matchLabels": {"name": name}},
                     "template": {"metadata": {"labels": {"name": name}},
                                  "spec": {"nodeSelector": node_selector} if node_selector else {"containers": []}}},
            "status": {"desiredNumberScheduled": 3, "numberReady": 2}}


def pod(name: str, owner: str, node: str = NODE, ready: bool = True, waiting: dict | None = None,
        created: str = "2026-12-01T03:00:00Z", uid: str | None = None) -> dict:
    container = {"name": owner.split("-", 1)[1], "image": "docker.io/library/docker:19.03.5-dind", "ready": ready,
                 "restartCount": 0 if ready or not waiting or waiting["reason"] != "CrashLoopBackOff" else 4,
                 "started": ready, "state": {"running": {"startedAt": created}} if ready else {"waiting": waiting}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "binder", "uid": uid or f"uid-{name}", "creationTimestamp": created,
                         "labels": {"name": owner},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": owner,
                                              "controller": True, "uid": f"uid-{owner}"}]},
            "spec": {"nodeName": node, "containers": [{"name": container["name"]}]},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"},
                                      {"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [container]}}


def event(of: dict, reason: str, message: str, when: str, kind: str = "Warning") -> dict:
    meta = of["metadata"]
    return {"apiVersion": "v1", "kind": "Event", "type": kind, "reason": reason, "message": message, "count": 3,
            "metadata": {"name": f"{meta['name']}.1", "namespace": "binder", "creationTimestamp": when},
            "involvedObject": {"kind": "Pod", "name": meta["name"], "namespace": "binder", "uid": meta["uid"]},
            "source": {"component": "kubelet", "host": NODE}, "firstTimestamp": when, "lastTimestamp": when}


def cluster(pods: list[dict], events: list[dict] = (), installed: bool = True, logs: dict | None = None,
            daemonsets: tuple[str, ...] = ("binder-dind", "binder-image-cleaner"),
            labels: dict | None = None) -> Cluster:
    return Cluster(BuilderPods(installed, {d: daemonset(d) for d in daemonsets},
                               {d: [p for p in pods if p["metadata"]["labels"]["name"] == d] for d in daemonsets},
                               {NODE: labels or {"kubernetes.io/hostname": NODE}}, list(events)), logs or {})


SOCKET = SocketPath("/var/run/dind/docker.sock", "socket")
READY = [pod("binder-dind-4xk2p", "binder-dind"), pod("binder-image-cleaner-9sd8f", "binder-image-cleaner")]


# -- the probe's output ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("out, kind, entries", [
    ("manager=systemd\nkind=socket\n", "socket", 0),
    ("manager=systemd\nkind=directory\nentries=0\n", "directory", 0),
    ("manager=sysvinit\nkind=directory\nentries=2\n", "directory", 2),
    ("manager=systemd\nkind=missing\n", "missing", 0),
    ("manager=systemd\nkind=other\n", "other", 0),
])
def test_the_socket_probe_output_is_parsed(out, kind, entries):
    got = probes.parse_socket_path("/var/run/docker.sock", out)
    assert (got.kind, got.entries, got.path) == (kind, entries, "/var/run/docker.sock")


def test_the_inventory_service_manager_wins_over_the_probed_one():
    assert probes.parse_socket_path("/x", "manager=sysvinit\nkind=socket\n").manager == "sysvinit"
    assert probes.parse_socket_path("/x", "manager=sysvinit\nkind=socket\n", "systemd").manager == "systemd"


def test_the_probe_script_tells_each_kind_apart(tmp_path):
    """The script itself, run here by sh on real paths (the path an argument, never in the script)."""
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "docker.sock"))
    (tmp_path / "empty dir").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").touch()
    (tmp_path / "file").touch()
    try:
        for name, kind, entries in (("docker.sock", "socket", 0), ("empty dir", "directory", 0),
                                    ("full", "directory", 1), ("file", "other", 0), ("none; rm -rf x", "missing", 0)):
            out = subprocess.run(remote.script(probes.SOCKET_PROBE, str(tmp_path / name)), capture_output=True,
                                 text=True, check=True).stdout
            got = probes.parse_socket_path(str(tmp_path / name), out)
            assert (got.kind, got.entries) == (kind, entries), name
    finally:
        listening.close()


# -- the verdicts ----------------------------------------------------------------------------------------------

def verdict(socket=SOCKET, view=None, builder=DIND):
    return buildcheck.verdict(builder, socket, cluster(READY) if view is None else view, NODE, "binder")


def test_a_socket_and_ready_pods_are_ok():
    got = verdict()
    assert got.status.value == "ok"
    assert got.detail == ("dind builder: /var/run/dind/docker.sock is a socket; binder-dind ready; "
                          "binder-image-cleaner ready")


def test_the_host_builder_has_only_the_image_cleaner():
    got = verdict(SocketPath("/var/run/docker.sock", "socket"),
                  cluster([READY[1]], daemonsets=("binder-image-cleaner",)), HOST)
    assert got.detail == "host builder: /var/run/docker.sock is a socket; binder-image-cleaner ready"


def test_a_directory_at_the_socket_path_is_named_with_the_fix():
    got = verdict(SocketPath("/var/run/dind/docker.sock", "directory", 0))
    assert got.status.value == "failed"
    assert "/var/run/dind/docker.sock is an empty directory: run nodes.fix-build-socket" in got.detail


def test_a_crash_looping_builder_is_named_with_its_reason_event_and_last_log_line():
    crashing = pod("binder-dind-4xk2p", "binder-dind", ready=False, waiting={
        "reason": "CrashLoopBackOff",
        "message": "back-off 1m20s restarting failed container=dind pod=binder-dind-4xk2p_binder(uid)"})
    line = ('failed to start daemon: Error starting daemon: error while opening volume store metadata database: '
            'listen unix /var/run/dind/docker.sock: bind: address already in use')
    view = cluster([crashing, READY[1]], [event(crashing, "BackOff", "Back-off restarting failed container dind in pod "
                                                "binder-dind-4xk2p_binder(uid)", "2026-12-01T03:05:00Z")],
                   logs={"binder-dind-4xk2p": line})
    got = verdict(SocketPath("/var/run/dind/docker.sock", "directory", 0), view)
    assert got.status.value == "failed"
    assert ("pod binder-dind-4xk2p of binder-dind not ready: container dind CrashLoopBackOff: back-off 1m20s "
            "restarting failed container=dind pod=binder-dind-4xk2p_binder(uid); BackOff: Back-off restarting "
            f"failed container dind in pod binder-dind-4xk2p_binder(uid); last log line: {line}") in got.detail
    assert "binder-image-cleaner ready" in got.detail


def test_a_pod_stuck_on_its_mount_is_named_with_the_kubelets_latest_failed_mount():
    stuck = pod("binder-image-cleaner-9sd8f", "binder-image-cleaner", ready=False,
                waiting={"reason": "ContainerCreating"})
    events = [event(stuck, "FailedMount", "an older message", "2026-12-01T03:01:00Z"),
              event(stuck, "FailedMount", NOT_A_SOCKET, "2026-12-01T03:04:00Z"),
              event(stuck, "Scheduled", "Successfully assigned", "2026-12-01T03:05:00Z", kind="Normal"),
              event(READY[0], "FailedMount", "someone else's", "2026-12-01T03:06:00Z")]
    got = verdict(view=cluster([READY[0], stuck], events))
    assert got.status.value == "failed"
    assert got.detail.startswith("dind builder: pod binder-image-cleaner-9sd8f of binder-image-cleaner not ready: "
                                 f"container image-cleaner ContainerCreating; FailedMount: {NOT_A_SOCKET}; "
                                 "/var/run/dind/docker.sock is a socket; binder-dind ready")


def test_a_missing_socket_while_the_builder_starts_is_failed_with_both_facts():
    starting = pod("binder-dind-4xk2p", "binder-dind", ready=False, waiting={"reason": "ContainerCreating"})
    got = verdict(SocketPath("/var/run/dind/docker.sock", "missing"), cluster([starting, READY[1]]))
    assert got.status.value == "failed"
    assert got.detail.startswith("dind builder: /var/run/dind/docker.sock is missing; pod binder-dind-4xk2p of "
                                 "binder-dind not ready: container dind ContainerCreating")


def test_a_missing_host_socket_asks_whether_docker_runs():
    got = verdict(SocketPath("/var/run/docker.sock", "missing"),
                  cluster([READY[1]], daemonsets=("binder-image-cleaner",)), HOST)
    assert "/var/run/docker.sock is missing: is docker running on this node?" in got.detail


def test_an_old_pod_of_a_replaced_one_does_not_count():
    old = pod("binder-dind-old", "binder-dind", ready=False, waiting={"reason": "CrashLoopBackOff"},
              created="2026-12-01T02:00:00Z")
    assert verdict(view=cluster([old, *READY])).status.value == "ok"


def test_no_pod_on_the_node_and_a_missing_daemonset_are_failures():
    elsewhere = pod("binder-dind-x", "binder-dind", node="lab-node3")
    view = cluster([elsewhere, READY[1]])
    assert "DaemonSet binder-dind has no pod on node lab-node2" in verdict(view=view).detail
    gone = cluster([READY[1]], daemonsets=("binder-image-cleaner",))
    assert "DaemonSet binder-dind is not in the cluster" in verdict(view=gone).detail


def test_a_node_the_daemonset_does_not_select_is_not_a_failure():
    view = cluster([READY[1]])
    view.pods.daemonsets["binder-dind"] = daemonset("binder-dind", {"hub.jupyter.org/node-purpose": "build"})
    got = verdict(view=view)
    assert got.status.value == "ok" and "binder-dind not meant for this node (nodeSelector)" in got.detail


def test_without_a_release_the_socket_is_checked_alone():
    got = verdict(view=cluster([], installed=False))
    assert got.status.value == "ok"
    assert got.detail == "dind builder: /var/run/dind/docker.sock is a socket; release binder not installed: the " \
                         "socket checked alone"
    assert verdict(SocketPath("/var/run/dind/docker.sock", "directory", 3), cluster([], installed=False)) \
        .status.value == "failed"


def test_without_the_control_plane_the_socket_is_still_checked():
    got = buildcheck.verdict(DIND, SOCKET, None, NODE, "binder")
    assert got.status.value == "ok" and "DaemonSets not checked: the control plane did not answer" in got.detail


def test_the_latest_warning_is_the_pods_own_by_uid():
    stuck = pod("binder-dind-4xk2p", "binder-dind", ready=False, waiting={"reason": "ContainerCreating"})
    same_name_before = copy.deepcopy(stuck)
    same_name_before["metadata"]["uid"] = "an-earlier-pod"
    events = [event(stuck, "FailedMount", "mine", "2026-12-01T03:00:00Z"),
              event(same_name_before, "FailedMount", "not mine", "2026-12-01T03:09:00Z")]
    assert probes.latest_warning(events, stuck) == "FailedMount: mine"
    assert probes.latest_warning([], stuck) == ""
