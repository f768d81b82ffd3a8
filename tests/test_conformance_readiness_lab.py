"""Conformance on the lab: a pod of a Deployment the lab's runner plays (lab.apps.runner) is Ready
when the runner's process answers the pod's readinessProbe, and a process that exits is restarted
with the kubelet's back-off; checked with the real kubectl on the control plane. Each expectation
cites the Kubernetes documentation or source it comes from. (A `_lab.py` file: it runs with the
lab's tests, see tests/conftest.py pytest_xdist_make_scheduler.)"""
from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.conftest import runner_status, ssh, until

pytestmark = pytest.mark.lab
CP = "lab-node1"


def kubectl(*args: str, check: bool = True) -> str:
    return ssh(CP, shlex.join(["kubectl", *args]), check=check)


def _binder_pod() -> dict | None:
    """The pod of Deployment binder (owned by one of its ReplicaSets, `binder-<hash>`), if there is one."""
    items = json.loads(kubectl("get", "pods", "-n", "binder", "-o", "json"))["items"]
    return next((p for p in items if any(r["kind"] == "ReplicaSet" and r["name"].rpartition("-")[0] == "binder"
                                         for r in p["metadata"].get("ownerReferences") or [])), None)


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def _container(pod: dict) -> dict:
    return next(c for c in pod["status"]["containerStatuses"] if c["name"] == "binder")


def _binder_pid() -> int | None:
    """The binder container's PID as the runner records it (key POD/CONTAINER)."""
    running = runner_status()["running"]
    return next((v["pid"] for k, v in running.items() if k.startswith("binder-") and k.endswith("/binder")), None)


def _kill_binder() -> int:
    """SIGKILL the binder process by the PID the runner records; returns the PID."""
    pid = _binder_pid()
    ssh(CP, f"sudo -n kill -KILL {pid}")  # the runner runs as root
    return pid


def test_a_process_that_exits_crash_loops_and_its_pod_is_ready_only_when_it_answers(deployed):
    pod = until("the binder pod Ready", lambda: (p := _binder_pod()) and _ready(p) and p)
    name, restarts = pod["metadata"]["name"], _container(pod)["restartCount"]
    try:
        # The kubelet restarts a container that exits at once the first time, then backs off 10 s,
        # doubling to 300 s (pkg/kubelet/kubelet.go backOffPeriod, MaxContainerBackOff;
        # kuberuntime_manager.go doBackOff); restartCount counts the restarts, lastState keeps the
        # last termination (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts).
        first = _kill_binder()
        until("the first restart", lambda: _binder_pid() not in (None, first))
        until("restartCount + 1", lambda: (p := _binder_pod()) and _container(p)["restartCount"] == restarts + 1)
        _kill_binder()
        pod = until("CrashLoopBackOff", lambda: (p := _binder_pod()) and
                     _container(p)["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" and p)
        container = _container(pod)
        assert not _ready(pod) and container["ready"] is False and pod["status"]["phase"] == "Running"
        assert container["restartCount"] == restarts + 1
        # A process killed by SIGKILL: exit code 128 + 9, reason Error, as the container runtime reports it.
        assert {k: container["lastState"]["terminated"][k] for k in ("exitCode", "reason")} == \
            {"exitCode": 137, "reason": "Error"}
        assert container["state"]["waiting"]["message"].startswith(
            f"back-off 10s restarting failed container=binder pod={name}_binder(")
        # kubectl's STATUS is the container's waiting reason, READY counts ready containers, RESTARTS
        # adds the last termination's age (pkg/printers/internalversion/printers.go printPod).
        row = kubectl("get", "pod", name, "-n", "binder", "--no-headers")
        assert re.match(rf"{name} +0/1 +CrashLoopBackOff +{restarts + 1} \(\d+s ago\) ", row), row
        # A rollout is complete only when the new ReplicaSet's pods are available
        # (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#complete-deployment):
        # `kubectl rollout status` waits, here until its timeout.
        waiting = ssh(CP, "kubectl rollout status deployment/binder -n binder --timeout 2s", check=False)
        assert 'Waiting for deployment "binder" rollout to finish: 0 of 1 updated replicas are available' in waiting
        pod = until("Ready again", lambda: (p := _binder_pod()) and _ready(p) and p, timeout=25)
        assert _container(pod)["restartCount"] == restarts + 2 and "running" in _container(pod)["state"]
        assert "successfully rolled out" in kubectl("rollout", "status", "deployment/binder", "-n", "binder",
                                                    "--timeout", "10s")
    finally:  # the lab as it was: a binder pod Ready, with no restarts counted
        kubectl("delete", "pod", name, "-n", "binder", "--ignore-not-found", "--wait=false")
        until("a new binder pod Ready", lambda: (p := _binder_pod()) and p["metadata"]["name"] != name
               and _ready(p), timeout=20)
