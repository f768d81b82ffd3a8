"""A played container's life as a kubelet keeps it, shared by the lab's kubelets (lab.apps.runner
on the control plane, lab.apps.nodeagent on each node): restarts per the pod's restartPolicy with
the kubelet's back-off (backOffPeriod 10 s doubling to MaxContainerBackOff 300 s, reset after 10
minutes of running: kuberuntime_manager.go doBackOff), the container's status as the status manager
reports it (`running`, `waiting` CrashLoopBackOff with the kubelet's message, `terminated`;
`restartCount`, `lastState.terminated` with the exit code, 128+N for signal N), the pod's phase
(Running, Succeeded, Failed) and Ready/ContainersReady conditions, stopping a container's
process group (SIGTERM, SIGKILL after the grace period), and whether the emulator's kubelet still
holds a pod (its volumes not ready, an image it cannot pull, a missing ConfigMap or Secret).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT = 10.0
PRELUDE = Path(__file__).with_name("container.py")  # runs a container: its mounts, then its argv
BACKOFF, MAX_BACKOFF, BACKOFF_RESET = 10.0, 300.0, 600.0
_PR_SET_PDEATHSIG = 1
_HELD = ("ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")


def terminate_with_parent() -> None:
    """In a child before exec: get SIGTERM if its kubelet dies (even by SIGKILL)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(container: Container, log: Path) -> subprocess.Popen:
    """Start `container` (container.py SPEC ARGV) in a session of its own, its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, str(PRELUDE), str(container.spec_file), *container.argv],
                                env=container.env, cwd="/", stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=terminate_with_parent)


def run_init(process: subprocess.Popen, timeout: float = 60) -> int:
    """An init container's exit code: it runs to completion, killed after `timeout` s."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        stop([process], 0)
        return process.wait()


def held(pod: dict) -> str | None:
    """Why the emulator's kubelet holds the pod (its volumes, or its containers' waiting reason), else None."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodReadyToStartContainers" and condition.get("status") == "False":
            return "its volumes are not ready (see its events)"
    for container in status.get("containerStatuses") or []:
        reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
        if reason in _HELD:
            return reason
    return None


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds: 10s, 1m20s, 5m0s."""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


@dataclasses.dataclass
class Container:
    """One container of a played pod, and its process when it runs."""

    spec: dict
    argv: list[str]
    env: dict[str, str] = dataclasses.field(repr=False)  # tokens: never in a repr
    spec_file: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    started_at: str = ""
    restarts: int = 0
    backoff: float = 0.0
    not_before: float = 0.0
    last_exit: dict | None = None
    finished: bool = False  # exited and not to be restarted (restartPolicy)
    ready: bool = False

    @property
    def name(self) -> str:
        return self.spec["name"]

    def started_now(self, process: subprocess.Popen) -> None:
        self.process, self.started, self.started_at, self.ready = process, time.monotonic(), stamp(), False


def container_id(uid: str, container: Container) -> str:
    pid = container.process.pid if container.process else 0
    return "containerd://" + hashlib.sha256(f"{uid}/{container.name}/{pid}".encode()).hexdigest()


def exited(uid: str, container: Container, policy: str) -> int | None:
    """If the container's process has ended: record its exit, mark it finished or set the back-off
    before its restart (restartPolicy Always; OnFailure on a non-zero exit; Never), and return the
    exit code; else None."""
    process = container.process
    if process is None or process.poll() is None:
        return None
    code, ran = process.returncode, time.monotonic() - container.started
    container.last_exit = {"exitCode": code if code >= 0 else 128 - code, "reason": "Error" if code else "Completed",
                           "startedAt": container.started_at, "finishedAt": stamp(),
                           "containerID": container_id(uid, container)}
    container.process, container.ready = None, False
    if policy == "Never" or (policy == "OnFailure" and code == 0):
        container.finished = True
    else:
        container.backoff = 0.0 if ran >= BACKOFF_RESET or not container.restarts else \
            min(MAX_BACKOFF, container.backoff * 2 or BACKOFF)
        container.not_before = time.monotonic() + container.backoff
    return code


def due(container: Container) -> bool:
    """Whether an exited container is to be restarted now (its back-off over)."""
    return container.process is None and not container.finished and container.last_exit is not None \
        and time.monotonic() >= container.not_before


def container_status(pod: dict, container: Container, ready: bool) -> dict:
    """The container's status as the kubelet reports it (`ready`: its readiness probe's verdict)."""
    meta = pod["metadata"]
    status = {"name": container.name, "image": container.spec.get("image", ""), "imageID": "",
              "restartCount": container.restarts}
    if container.last_exit and (container.restarts or container.process is None):
        status["lastState"] = {"terminated": container.last_exit}
    if container.process is not None:
        container.ready = ready
        return {**status, "state": {"running": {"startedAt": container.started_at}}, "started": True,
                "ready": ready, "containerID": container_id(meta["uid"], container)}
    if container.finished:
        return {**status, "state": {"terminated": container.last_exit}, "started": False, "ready": False}
    message = (f"back-off {go_duration(container.backoff)} restarting failed container={container.name} "
               f"pod={meta['name']}_{meta['namespace']}({meta['uid']})")
    return {**status, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
            "started": False, "ready": False}


def pod_status(pod: dict, containers: list[Container], statuses: list[dict]) -> dict | None:
    """The status patch (phase, containerStatuses, Ready and ContainersReady) for the pod's
    containers' `statuses`, None when the pod already has it."""
    status = pod.get("status") or {}
    unready = [s["name"] for s in statuses if not s["ready"]]
    if all(c.finished for c in containers):
        phase = "Succeeded" if all((c.last_exit or {}).get("exitCode") == 0 for c in containers) else "Failed"
    else:
        phase = "Running"
    conditions = []
    for kind in ("Ready", "ContainersReady"):
        before = next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})
        value = "False" if unready else "True"
        why = f"containers with unready status: [{' '.join(unready)}]" if unready else None
        conditions.append({"type": kind, "status": value, "lastProbeTime": None,
                           "lastTransitionTime": before.get("lastTransitionTime")
                           if before.get("status") == value else stamp(),
                           "reason": "ContainersNotReady" if unready else None, "message": why})
    old = [{key: c.get(key) for key in conditions[0]} for c in status.get("conditions") or []
           if c.get("type") in ("Ready", "ContainersReady")]
    if statuses == status.get("containerStatuses") and phase == status.get("phase") and \
            sorted(conditions, key=lambda c: c["type"]) == sorted(old, key=lambda c: c["type"]):
        return None
    return {"phase": phase, "containerStatuses": statuses, "conditions": conditions}


def stop(processes: list[subprocess.Popen], grace: float) -> list[int]:
    """SIGTERM to each live process's group, SIGKILL to those still there after `grace` seconds
    (capped at STOP_TIMEOUT); return the PIDs that had to be killed."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline, killed = time.monotonic() + min(STOP_TIMEOUT, grace), []
    for process in alive:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return killed
