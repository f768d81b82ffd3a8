"""The lab's node agent: the part of a node's kubelet that needs the node's own files, run on every
lab node (host-init.sh starts `python -m lab.apps.nodeagent --api URL --node NAME`). Every
`interval` seconds it reads the pods bound to its node (every namespace) from the API emulator and:

- checks each pod's hostPath volumes against the node's filesystem as the kubelet does before it
  mounts them (pkg/volume/hostpath/host_path.go checkType): no `type`, no check; `DirectoryOrCreate`
  and `FileOrCreate` make what is missing (a 0755 directory, an empty 0644 file); `Directory`,
  `File`, `Socket`, `CharDevice`, `BlockDevice` fail with `hostPath type check failed: PATH is not a
  directory|is not a file|is not a socket file|is not a character device|is not a block device`.
  Once every typed volume of a pod passes, a missing untyped path is made a directory, as
  containerd's CRI and docker do when they bind-mount a missing source (how socket paths become
  directories). A failed pod is checked again at every pass (the kubelet retries the mount); one
  that passed is not checked again (its volumes stay mounted). The verdicts go to ConfigMap
  `kube-system/lab-node-<node>` (written by this agent alone, only when they change; made again
  when missing): key `mounts`, JSON {pod uid: "" or `MountVolume.SetUp failed for volume "V" :
  MESSAGE`}, and key `images`, the fnmatch patterns of the images it plays (`PLAYED`). The
  emulator's kubelet (lab.cluster.kubelet) waits for the first and shows the messages.
- plays, on its node, the pods whose every image it plays, once the emulator's kubelet holds them no
  more (their volumes passed, images and env found: lifecycle.held), until they go
  from the API (or get a deletionTimestamp): init containers one after the other to completion
  (a failed one is retried after BACKOFF), then the containers, restarted and reported through the
  status subresource as the runner does (lab.apps.lifecycle). Each container runs as
  `python lab/apps/container.py SPEC ARGV...` in a mount namespace of its own with its hostPath
  (and emptyDir) volumes bind-mounted at their mountPaths; the first container's output goes to
  `pod_logs/<namespace>/<pod>.log` (a directory every node shares, where the emulator's
  `kubectl logs` reads it), the others' to `<state_dir>/logs/`.
  * `*/docker:*-dind` (both charts' dind): the image's `sh` for a command whose first word is `sh`
    (the current chart's `filesystem` init container), and for `dockerd` the node's real dockerd
    with the container's arguments (a pinned chart's `-H unix://...` in one word is dockerd's own
    business: it trims the value) plus what a container would have had of its own: `--exec-root`,
    `--pidfile` and an empty `--config-file` under `<run_dir>/pods/<uid>`, no bridge, iptables
    or masquerading (it runs in the node's network), and an empty /run/containerd so that on a
    containerd node it starts its own containerd, as in its image. Its data root is the volume
    mounted at /var/lib/docker.
  * `quay.io/jupyterhub/repo2docker:*` (BinderHub's build pods): `<checkout>/.venv/bin/python -m
    lab.apps.labr2d ARGS` (the container's command and args), with the container's env and
    `DOCKER_HOST=unix://<the hostPath of the volume mounted at /var/run/docker.sock>`, and no mounts
    (it reaches the socket at its path on the node).
  * `quay.io/podman/stable:*` (the current chart's pink): `sh` as for dind; podman is not installed
    on the lab's hosts, so `podman system service --time=0 unix://SOCK` is played by what a build
    uses of it, its Docker-compatible API on SOCK: stand-in, the node's dockerd as for dind, its
    data root the volume mounted at /var/lib/containers/storage.
Stand-in: securityContext is not applied (everything runs as root, `privileged` or not); other
volume types than hostPath and emptyDir, and the service account token, are not mounted; no
Service links in the env. Logs: `<state_dir>/logs/agent.log`.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
import signal
import stat
import sys
import threading
import time
from pathlib import Path

from lab.apps import lifecycle, pods
from lab.apps.lifecycle import Container
from lab.apps.runner import Api, ApiUnavailable, PodRun
from lab.imageref import normalise

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CONFIGMAP_NAMESPACE, CONFIGMAP_PREFIX = "kube-system", "lab-node-"
DIND, PINK, R2D = "*/docker:*-dind", "quay.io/podman/stable:*", "quay.io/jupyterhub/repo2docker:*"
PLAYED = (DIND, PINK, R2D)
BACKOFF = 10.0  # before a failed init container runs again
DOCKERD = "/usr/sbin/dockerd"
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "HOME": "/root"}
_NOT = {"Directory": "a directory", "File": "a file", "Socket": "a socket file", "CharDevice": "a character device",
        "BlockDevice": "a block device"}
_IS = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK, "CharDevice": stat.S_ISCHR,
       "BlockDevice": stat.S_ISBLK}


def _pattern(image: str) -> str | None:
    return next((p for p in PLAYED if fnmatch.fnmatchcase(normalise(image), p)), None)


def check_type(path: str, kind: str) -> str:
    """host_path.go checkType for one volume: "" when it passes (making an OrCreate path), else the error."""
    if not kind:
        return ""
    checked = kind.removesuffix("OrCreate") if kind in ("DirectoryOrCreate", "FileOrCreate") else kind
    if checked not in _IS:
        return f"{kind} is an invalid volume type"
    try:
        mode = os.stat(path).st_mode  # follows symlinks, as the kubelet's GetFileType does
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return str(exc)
    if mode is None and kind != checked:
        try:
            if checked == "Directory":
                os.makedirs(path, 0o755, exist_ok=True)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError as exc:
            return str(exc)
        return ""
    return "" if mode is not None and _IS[checked](mode) else \
        f"hostPath type check failed: {path} is not {_NOT[checked]}"


def check_host_paths(pod: dict) -> str:
    """"" when each hostPath volume of the pod passes its type check on this node (then missing
    untyped paths are made directories, as the runtime does), else the kubelet's FailedMount message."""
    volumes = [v for v in (pod.get("spec") or {}).get("volumes") or [] if "hostPath" in v]
    for volume in volumes:
        host = volume["hostPath"]
        if error := check_type(host.get("path", ""), host.get("type") or ""):
            return f'MountVolume.SetUp failed for volume "{volume["name"]}" : {error}'
    for volume in volumes:
        if not (volume["hostPath"].get("type") or os.path.lexists(volume["hostPath"].get("path", ""))):
            try:
                os.makedirs(volume["hostPath"]["path"], 0o755, exist_ok=True)
            except OSError as exc:  # the runtime's failure to create the container, not a mount's
                log.warning("hostPath %s of pod %s: %s", volume["hostPath"]["path"],
                            pod.get("metadata", {}).get("name"), exc)
    return ""


def plays(pod: dict) -> bool:
    """Whether the agent plays each of the pod's images."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    return all(_pattern(c.get("image", "")) for c in containers)


def dockerd_argv(argv: list[str], pod_dir: Path) -> list[str]:
    """The dind container's dockerd as it runs on the node (see the module docstring): the image's
    entrypoint puts `dockerd` before arguments that start with `-`."""
    if argv and argv[0].startswith("-"):
        argv = ["dockerd", *argv]
    (pod_dir / "daemon.json").write_text("{}\n")
    return [DOCKERD, *argv[1:], f"--exec-root={pod_dir / 'exec'}", f"--pidfile={pod_dir / 'docker.pid'}",
            f"--config-file={pod_dir / 'daemon.json'}", "--bridge=none", "--iptables=false", "--ip-masq=false"]


class Agent:
    """Keeps its node's mount verdicts published and its played pods running; see the module docstring."""

    def __init__(self, api: Api, node: str, state_dir: Path, *, run_dir: Path = Path("/run/labnode"),
                 pod_logs: Path | None = None, interval: float = 1.0):
        self.api, self.node, self.state_dir, self.run_dir = api, node, state_dir, run_dir
        self.pod_logs, self.interval = pod_logs, interval
        self.configmap = f"{CONFIGMAP_PREFIX}{node}"
        self.mounts: dict[str, str] = {}
        self.pods: dict[str, PodRun] = {}
        self.retry: dict[str, float] = {}  # pod uid -> when its init containers run again
        self.stopping = threading.Event()
        self._unavailable = False

    # -- the loop --------------------------------------------------------------------------------

    def reconcile(self) -> None:
        try:
            listed = (self.api.send("GET", f"api/v1/pods?fieldSelector=spec.nodeName%3D{self.node}") or {}).get(
                "items") or []
            published = self.api.send("GET", f"api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps/{self.configmap}")
        except ApiUnavailable as exc:
            if not self._unavailable:
                log.warning("cannot read the API, leaving the pods as they are: %s", exc)
            self._unavailable = True
            return
        self._unavailable = False
        current = {p["metadata"]["uid"]: p for p in listed
                   if p["spec"].get("nodeName") == self.node and not p["metadata"].get("deletionTimestamp")}
        self.mounts = {uid: self.mounts[uid] if self.mounts.get(uid) == "" else check_host_paths(pod)
                       for uid, pod in current.items()}
        self._publish(published)
        for uid in list(self.pods):
            if uid not in current:
                self._stop_pod(self.pods[uid], "deleted")
        self.retry = {uid: when for uid, when in self.retry.items() if uid in current}
        for uid, pod in current.items():
            if uid in self.pods:
                self.pods[uid].pod = pod
            elif plays(pod) and self.mounts[uid] == "" and not lifecycle.held(pod) \
                    and time.monotonic() >= self.retry.get(uid, 0):
                self._start_pod(pod)
        for run in list(self.pods.values()):
            self._keep(run)
            try:
                self._report(run)
            except ApiUnavailable as exc:
                log.warning("cannot report pod %s: %s", run.name, exc)

    def _publish(self, published: dict | None) -> None:
        """Write the ConfigMap when its data differs from what the agent knows (or it is missing)."""
        data = {"images": "".join(f"{p}\n" for p in PLAYED), "mounts": json.dumps(self.mounts, sort_keys=True)}
        if published is not None and (published.get("data") or {}) == data:
            return
        path = f"api/v1/namespaces/{CONFIGMAP_NAMESPACE}/configmaps"
        try:
            if published is None:
                self.api.send("POST", path, {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
                                             "metadata": {"name": self.configmap, "namespace": CONFIGMAP_NAMESPACE}})
            else:
                self.api.send("PATCH", f"{path}/{self.configmap}", {"data": data}, "application/merge-patch+json")
        except ApiUnavailable as exc:
            log.warning("cannot write ConfigMap %s/%s: %s", CONFIGMAP_NAMESPACE, self.configmap, exc)
            return
        failed = {uid: m for uid, m in self.mounts.items() if m}
        log.info("published %s: %d pods, %d failing their hostPath checks%s", self.configmap, len(self.mounts),
                 len(failed), "".join(f"\n  {uid}: {m}" for uid, m in failed.items()))

    # -- starting a pod --------------------------------------------------------------------------

    def _start_pod(self, pod: dict) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        directory = self.run_dir / "pods" / meta["uid"]
        try:
            directory.mkdir(parents=True, exist_ok=True)
            volumes = {}
            for volume in spec.get("volumes") or []:
                if "hostPath" in volume:
                    volumes[volume["name"]] = Path(volume["hostPath"]["path"])
                elif "emptyDir" in volume:
                    volumes[volume["name"]] = directory / "volumes" / volume["name"]
                    volumes[volume["name"]].mkdir(parents=True, exist_ok=True)
            containers = [self._container(pod, c, volumes, directory)
                          for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        except (pods.NotStarting, ApiUnavailable, OSError) as exc:
            log.warning("pod %s not started: %s", meta["name"], exc)
            shutil.rmtree(directory, ignore_errors=True)
            self.retry[meta["uid"]] = time.monotonic() + BACKOFF
            return
        inits = len(spec.get("initContainers") or [])
        run = PodRun(pod, directory, containers[inits:])
        if run.containers:  # a new pod's log starts empty (one of the same name before it kept its own)
            first = self._log_file(run, run.containers[0])
            first.parent.mkdir(parents=True, exist_ok=True)
            first.write_text("")
        for init in containers[:inits]:
            code = lifecycle.run_init(lifecycle.spawn(init, self._log_file(run, init)))
            if code:
                log.warning("pod %s: init container %s exited with %s (see %s); again in %.0fs", run.name,
                            init.name, code, self._log_file(run, init), BACKOFF)
                shutil.rmtree(directory, ignore_errors=True)
                self.retry[meta["uid"]] = time.monotonic() + BACKOFF
                return
        self.pods[meta["uid"]] = run
        log.info("pod %s/%s: started", meta["namespace"], meta["name"])
        for container in run.containers:
            self._start(run, container)

    def _container(self, pod: dict, spec: dict, volumes: dict[str, Path], directory: Path) -> Container:
        namespace = pod["metadata"]["namespace"]
        env = pods.environment(Api(self.api.url, namespace).data, pod, spec, [])
        argv = pods.command_line(list(spec.get("command") or []) + list(spec.get("args") or []), env)
        mounts = pods.mounts(spec, volumes)
        if _pattern(spec.get("image", "")) == R2D:  # the socket is reached at its path on the node: no mounts
            socket = next((m.source for m in mounts if m.target == "/var/run/docker.sock"), None)
            argv, mounts = [sys.executable, "-m", "lab.apps.labr2d", *argv], []
            env = {**env, "PYTHONPATH": str(REPO), **({"DOCKER_HOST": f"unix://{socket}"} if socket else {})}
        elif argv[:3] == ["podman", "system", "service"]:  # podman's Docker-compatible API, served by dockerd
            storage = next((m.source for m in mounts if m.target == "/var/lib/containers/storage"), None)
            socket = next((a for a in argv[3:] if "://" in a), "unix:///run/podman/podman.sock")
            argv = dockerd_argv(["dockerd", f"--host={socket}"], directory)
            mounts += [pods.Mount(storage, "/var/lib/docker")] if storage else []
        elif argv[:1] == ["dockerd"] or argv[:1] and argv[0].startswith("-"):
            argv = dockerd_argv(argv, directory)
        elif argv[:1] in (["sh"], ["/bin/sh"]):
            argv = ["/bin/sh", *argv[1:]]
        else:
            raise pods.NotStarting(f"container {spec.get('name')}: the lab does not run {argv[:1]} of "
                                   f"image {spec.get('image')}")
        if argv[0] == DOCKERD and Path("/run/containerd").is_dir():  # its own containerd, not the node's
            hidden = directory / "no-containerd"
            hidden.mkdir(exist_ok=True)
            mounts.append(pods.Mount(str(hidden), "/run/containerd"))
        spec_file = directory / f"{spec['name']}.json"
        spec_file.write_text(json.dumps({"mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only}
                                                    for m in mounts], "workingDir": spec.get("workingDir") or "/"}))
        return Container(spec, argv, {**BASE_ENV, **env}, spec_file)

    def _log_file(self, run: PodRun, container: Container) -> Path:
        meta = run.pod["metadata"]
        if self.pod_logs and container is (run.containers or [None])[0]:
            return self.pod_logs / meta["namespace"] / f"{meta['name']}.log"
        return self.state_dir / "logs" / f"{meta['namespace']}_{meta['name']}_{container.name}.log"

    def _start(self, run: PodRun, container: Container) -> None:
        container.started_now(lifecycle.spawn(container, self._log_file(run, container)))
        log.info("pod %s: container %s started (pid %d): %s", run.name, container.name, container.process.pid,
                 container.argv[0] if "labr2d" not in container.argv else "lab.apps.labr2d")

    def _keep(self, run: PodRun) -> None:
        policy = run.pod["spec"].get("restartPolicy") or "Always"
        for container in run.containers:
            code = lifecycle.exited(run.uid, container, policy)
            if code is not None:
                log.info("pod %s: container %s exited with %s%s (see %s)", run.name, container.name, code,
                         "" if container.finished else f"; restarting in {container.backoff:.0f}s",
                         self._log_file(run, container))
            if lifecycle.due(container):
                container.restarts += 1
                self._start(run, container)

    def _report(self, run: PodRun) -> None:
        statuses = [lifecycle.container_status(run.pod, c, c.process is not None) for c in run.containers]
        patch = lifecycle.pod_status(run.pod, run.containers, statuses)
        if patch is None:
            return
        meta = run.pod["metadata"]
        self.api.send("PATCH", f"api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status", {"status": patch},
                      "application/strategic-merge-patch+json")
        run.pod["status"] = {**(run.pod.get("status") or {}), "phase": patch["phase"], "containerStatuses": statuses}
        log.info("pod %s: %s", run.name, patch["phase"])

    # -- stopping --------------------------------------------------------------------------------

    def _stop_pod(self, run: PodRun, why: str) -> None:
        grace = float(run.pod["spec"].get("terminationGracePeriodSeconds", 30))
        for pid in lifecycle.stop([c.process for c in run.containers if c.process], grace):
            log.warning("pod %s: pid %d ignored SIGTERM: killed", run.name, pid)
        shutil.rmtree(run.directory, ignore_errors=True)
        self.pods.pop(run.uid, None)
        log.info("pod %s: stopped (%s)", run.name, why)

    def run(self) -> None:
        """Reconcile every `interval` seconds until SIGTERM/SIGINT, then stop every pod."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        log.info("node agent of %s watching %s", self.node, self.api.url)
        try:
            while not self.stopping.is_set():
                try:
                    self.reconcile()
                except Exception:  # one bad pass must not end the node's kubelet
                    log.exception("reconcile failed")
                self.stopping.wait(self.interval)
        finally:
            for run in list(self.pods.values()):
                self._stop_pod(run, "agent exiting")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.apps.nodeagent", description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the API emulator's URL, e.g. http://10.77.0.11:6443")
    parser.add_argument("--node", required=True, help="this node's name in the cluster, e.g. lab-node2")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/labnode"), help="logs/ (default %(default)s)")
    parser.add_argument("--run-dir", type=Path, default=Path("/run/labnode"),
                        help="the played pods' files (default %(default)s)")
    parser.add_argument("--pod-logs", type=Path, metavar="DIR", help="the pods' logs: DIR/NAMESPACE/POD.log")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default 1)")
    args = parser.parse_args(argv)
    (args.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        filename=args.state_dir / "logs" / "agent.log")
    Agent(Api(args.api, ""), args.node, args.state_dir, run_dir=args.run_dir, pod_logs=args.pod_logs,
          interval=args.interval).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
