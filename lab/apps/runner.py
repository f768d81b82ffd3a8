"""The lab's kubelet for the pods it can run: every `interval` seconds it reads the pods of
`namespace` from the API emulator and runs, on the host it runs on (the control plane), the
containers of each pod whose every image the lab knows (lab.apps.images: the chart's binder, hub
and proxy, user servers KubeSpawner creates), as a kubelet runs a pod
(https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/, pkg/kubelet/kubelet.go
SyncPod/SyncTerminatingPod). Pods with other images are left to the emulator's kubelet
(lab.cluster.kubelet), which the runner tells, through ConfigMap `kube-system/lab-runner` key
`images` (fnmatch patterns, one a line), which images it plays; the emulator's kubelet then keeps
those pods' containers `ContainerCreating` until the runner reports them.

For each such pod bound to a node, not being deleted, and not held by the emulator's kubelet (an
image it cannot pull, a missing ConfigMap/Secret, a claim that is not Bound: it keeps those in
ErrImagePull/ImagePullBackOff, CreateContainerConfigError or PodReadyToStartContainers=False):
- volumes written under `<run_dir>/pods/<uid>` (tmpfs; Secrets' files 0600), claims' data under
  `<state_dir>/volumes/<the PersistentVolume bound to the claim>` (lab.apps.pods; a new claim of an
  old name gets a new volume, hence empty; removed once no claim is bound to it, as its
  reclaimPolicy Delete does); the service account's token from the
  emulator's TokenRequest; an /etc/hosts standing for the cluster DNS (CoreDNS), each Service of
  the namespace at its ClusterIP as `name name.ns name.ns.svc name.ns.svc.cluster.local`;
- its network namespace with its pod IP (lab.apps.network);
- init containers one after the other to completion, then each container as
  `python lab/apps/container.py SPEC ARGV...` (its own mount namespace, the pod's network
  namespace, its working directory), with its env (pods.environment: service links, envFrom,
  env) plus `KUBECONFIG`: a kubeconfig for the emulator's plain-HTTP URL with the pod's token (the
  lab's stand-in for the in-cluster config; KUBERNETES_SERVICE_HOST is not set);
- a container that exits is restarted per the pod's restartPolicy with the kubelet's back-off, and
  its status reported through the status subresource, as the status manager does (lab.apps.lifecycle),
  `ready` from the readinessProbe (httpGet or tcpSocket, asked at the pod IP; none: ready once
  started);
- kube-proxy's rules (network.ServiceProxy) for the namespace's Services to the ready pods it runs.
A pod that is deleted (gone from the API, or with a deletionTimestamp) is stopped: SIGTERM to each
container's process group, SIGKILL after its terminationGracePeriodSeconds (capped at
`lifecycle.STOP_TIMEOUT`) and to whatever is left in its network namespace; its namespace and files are
removed (the emulator deletes a pod at once, as with gracePeriodSeconds=0, so nothing is left to
confirm). On SIGTERM or SIGINT every pod is stopped so. Logs: `<state_dir>/logs/runner.log` and
`<state_dir>/logs/<namespace>_<pod>_<container>.log`, linked as `pod_logs/<namespace>/<workload>.log`
(where the emulator's `kubectl logs` reads them); `<state_dir>/status.json` tells what runs and
what waits. Stand-in: securityContext (users, capabilities) is not applied, everything runs as root.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import requests
import yaml

from lab.apps import images, lifecycle, network, pods
from lab.apps.lifecycle import Container

log = logging.getLogger(__name__)

RUNNER_CONFIGMAP = ("kube-system", "lab-runner")
BASE_ENV = {"PATH": f"{images.VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8", "HOME": "/root"}


class ApiUnavailable(Exception):
    """The API emulator could not be read."""


def _redacted(argv: list[str]) -> list[str]:
    """argv for logs and status.json: the value of any `...token...=VALUE` argument hidden (a
    spawner passes the server's token so: `--ServerApp.token=...`)."""
    return [f"{arg.partition('=')[0]}=***" if "=" in arg and "token" in arg.partition("=")[0].lower() else arg
            for arg in argv]


def _is_local_address(ip: str) -> bool:
    """Whether `ip` is on one of this host's interfaces (MetalLB's emulation announces it here)."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


class Api:
    """The emulator's plain-HTTP API, JSON in and out."""

    def __init__(self, url: str, namespace: str):
        self.url, self.namespace = url.rstrip("/"), namespace
        self.session = requests.Session()

    def send(self, method: str, path: str, body: dict | None = None,
             content_type: str = "application/json") -> dict | None:
        """The answer's JSON; None on 404."""
        url = f"{self.url}/{path}"
        try:
            response = self.session.request(method, url, data=None if body is None else json.dumps(body),
                                            headers={"Content-Type": content_type}, timeout=5)
        except requests.RequestException as exc:
            raise ApiUnavailable(f"{method} {url}: {exc}") from exc
        if response.status_code == 404:
            return None
        if not response.ok:
            raise ApiUnavailable(f"{method} {url}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def items(self, plural: str) -> list[dict]:
        return (self.send("GET", f"api/v1/namespaces/{self.namespace}/{plural}") or {}).get("items") or []

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict | None:
        return self.send("GET", f"api/v1/namespaces/{namespace or self.namespace}/{plural}/{name}")

    def data(self, kind: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data or a Secret's decoded data (None when missing)."""
        if kind == "secret":
            return pods.decoded(self.get("secrets", name))
        found = self.get("configmaps", name)
        return None if found is None else dict(found.get("data") or {})

    def token(self, account: str, pod: dict, audiences: list[str] | None = None, seconds: int = 3607) -> str:
        """A token of the pod's ServiceAccount, bound to the pod (TokenRequest, as the kubelet asks it)."""
        spec: dict = {"expirationSeconds": seconds, "boundObjectRef": {
            "kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}}
        if audiences:
            spec["audiences"] = audiences
        answer = self.send("POST", f"api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        if not answer:
            raise pods.NotStarting(f'serviceaccount "{account}" not found')
        return answer["status"]["token"]

    def patch_pod_status(self, name: str, status: dict) -> None:
        """A strategic merge patch of a pod's status (containerStatuses replaced, conditions merged by type)."""
        self.send("PATCH", f"api/v1/namespaces/{self.namespace}/pods/{name}/status", {"status": status},
                  "application/strategic-merge-patch+json")

    def register(self, patterns: list[str]) -> None:
        """Name the images this runner plays in ConfigMap kube-system/lab-runner (key `images`)."""
        namespace, name = RUNNER_CONFIGMAP
        data = {"images": "".join(f"{p}\n" for p in patterns)}
        path = f"api/v1/namespaces/{namespace}/configmaps"
        if self.send("PATCH", f"{path}/{name}", {"data": data}, "application/merge-patch+json") is None:
            self.send("POST", path, {"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": name, "namespace": namespace}, "data": data})


@dataclasses.dataclass
class PodRun:
    """A pod this runner plays."""

    pod: dict
    directory: Path
    containers: list[Container]

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def ip(self) -> str:
        return self.pod["status"]["podIP"]


def _workload(pod: dict) -> str:
    """The pod's Deployment (its ReplicaSet's name less the hash), else the pod's name (lab.cluster.api _pod_log)."""
    owner = next((r for r in pod["metadata"].get("ownerReferences") or []), None)
    if owner and owner.get("kind") == "ReplicaSet":
        return owner["name"].rpartition("-")[0]
    return owner["name"] if owner else pod["metadata"]["name"]


def _port(pod: dict, port: int | str | None) -> int | None:
    """A port number, a named one looked up in the pod's containers' ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    return next((p["containerPort"] for c in pod["spec"].get("containers") or [] for p in c.get("ports") or []
                 if p.get("name") == port), None)


def _matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Runner:
    """Keeps the played pods running as the API says; see the module docstring."""

    def __init__(self, api: Api, node_address: str, state_dir: Path, *, run_dir: Path = Path("/run/labapps"),
                 interval: float = 1.0, pod_logs: Path | None = None):
        self.api, self.node_address, self.state_dir, self.pod_logs = api, node_address, state_dir, pod_logs
        self.run_dir, self.interval = run_dir, interval
        self.pods: dict[str, PodRun] = {}
        self.waiting: dict[str, str] = {}  # pod name -> why it does not run
        self.proxy = network.ServiceProxy(node_address)
        self.registered = False
        self.stopping = threading.Event()
        self._status = ""

    # -- which pods ----------------------------------------------------------------------------

    @staticmethod
    def _images(pod: dict) -> list[str]:
        spec = pod["spec"]
        return [c.get("image", "") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]

    def _plays(self, pod: dict, built: frozenset[str]) -> bool:
        return all(images.find(image, built) for image in self._images(pod))

    # -- reconcile -----------------------------------------------------------------------------

    def reconcile(self) -> None:
        try:
            if not self.registered:
                self.api.register([pattern for pattern, _ in images.CATALOGUE])
                self.registered = True
            listed = self.api.items("pods")
            services = self.api.items("services")
            namespace, name = images.LAB_IMAGES
            built = images.built_images((self.api.get("configmaps", name, namespace) or {}).get("data"))
        except ApiUnavailable as exc:
            if "api" not in self.waiting:
                log.warning("cannot read the API, leaving the pods as they are: %s", exc)
            self.waiting["api"] = f"cannot read the API: {exc}"
            self._write_status()
            return
        self.waiting.pop("api", None)
        wanted = {}
        for pod in listed:
            meta = pod["metadata"]
            if not self._plays(pod, built) or not pod["spec"].get("nodeName") or meta.get("deletionTimestamp") \
                    or not (pod.get("status") or {}).get("podIP"):
                self.waiting.pop(meta["name"], None)
                continue
            if meta["uid"] not in self.pods and (held := lifecycle.held(pod)):
                self._wait(meta["name"], f"held by the node's kubelet: {held}")
                continue
            wanted[meta["uid"]] = pod
        for uid in list(self.pods):
            if uid not in wanted:
                self._stop_pod(self.pods[uid], "deleted")
        for uid, pod in wanted.items():
            if uid not in self.pods:
                self._start_pod(pod, services, built)
            else:
                self.pods[uid].pod = pod
        for run in self.pods.values():
            self._keep(run)
        self._release_claims()
        try:
            self._route(services)
        except network.NetworkError as exc:
            log.warning("cannot set up the Services' rules (retrying): %s", exc)
        for run in list(self.pods.values()):
            try:
                self._report(run)
            except ApiUnavailable as exc:
                log.warning("cannot report pod %s: %s", run.name, exc)
        self._write_status()

    def _wait(self, name: str, reason: str) -> None:
        if self.waiting.get(name) != reason:
            log.info("pod %s not started: %s", name, reason)
        self.waiting[name] = reason

    # -- starting a pod --------------------------------------------------------------------------

    def _hosts(self, pod: dict, services: list[dict]) -> str:
        """/etc/hosts for the pod: itself, and each Service as the cluster DNS names it."""
        namespace = pod["metadata"]["namespace"]
        lines = ["127.0.0.1\tlocalhost", f"{pod['status']['podIP']}\t{pod['metadata']['name']}"]
        for service in services:
            ip, name = (service.get("spec") or {}).get("clusterIP"), service["metadata"]["name"]
            if ip and ip != "None":
                lines.append(f"{ip}\t{name} {name}.{namespace} {name}.{namespace}.svc "
                             f"{name}.{namespace}.svc.cluster.local")
        return "\n".join(lines) + "\n"

    def _kubeconfig(self, token: str) -> str:
        namespace = self.api.namespace
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": {"server": self.api.url}}],
            "users": [{"name": "pod", "user": {"token": token}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "pod", "namespace": namespace}}]})

    def _start_pod(self, pod: dict, services: list[dict], built: frozenset[str]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        directory = self.run_dir / "pods" / meta["uid"]
        try:
            bound = {}  # claim -> the volume bound to it
            for volume in spec.get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if not claim:
                    continue
                found = self.api.get("persistentvolumeclaims", claim) or {}
                if (found.get("status") or {}).get("phase") != "Bound":
                    raise pods.NotStarting(f'persistentvolumeclaim "{claim}" is not Bound')
                bound[claim] = found["spec"]["volumeName"]
            account = spec.get("serviceAccountName") or "default"
            token = self.api.token(account, pod)
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o711)  # the pod's user reaches its kubeconfig, and lists nothing
            volumes = pods.write_volumes(
                self.api.data, pod, directory,
                lambda asked: self.api.token(account, pod, [asked["audience"]]) if asked.get("audience") else token,
                lambda claim: self.state_dir / "volumes" / bound[claim])
            owner = next((u["uid"] for c in spec.get("containers") or [] if (u := pods.user(pod, c))), None)
            pods.set_ownership(pod, volumes, owner)
            (directory / "hosts").write_text(self._hosts(pod, services))
            (directory / "hosts").chmod(0o644)
            kubeconfig = directory / "kubeconfig"
            kubeconfig.touch(mode=0o600)
            kubeconfig.write_text(self._kubeconfig(token))
            if owner is not None:
                os.chown(kubeconfig, owner, -1)
            netns = network.add_pod(meta["uid"], pod["status"]["podIP"])
            containers = [self._container(pod, c, services, built, volumes, directory, kubeconfig, netns)
                          for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        except (pods.NotStarting, ApiUnavailable, network.NetworkError, OSError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            network.remove_pod(meta["uid"])
            self._wait(meta["name"], str(exc))
            return
        inits = len(spec.get("initContainers") or [])
        run = PodRun(pod, directory, containers[inits:])
        for init in containers[:inits]:
            code = lifecycle.run_init(lifecycle.spawn(init, self._log_file(run, init)))
            if code:
                self._stop_pod(run, f"init container {init.name} exited with {code}")
                self._wait(meta["name"], f"Init:Error: init container {init.name} exited with {code}")
                return
        self.waiting.pop(meta["name"], None)
        self.pods[meta["uid"]] = run
        log.info("pod %s: started (IP %s)", meta["name"], pod["status"]["podIP"])
        for container in run.containers:
            self._start(run, container)

    def _container(self, pod: dict, spec: dict, services: list[dict], built: frozenset[str],
                   volumes: dict[str, Path], directory: Path, kubeconfig: Path, netns: Path) -> Container:
        how = images.find(spec.get("image", ""), built)
        assert how is not None
        env = pods.environment(self.api.data, pod, spec, services)
        argv = how.argv(spec)
        if isinstance(argv, str):
            raise pods.NotStarting(argv)
        argv = pods.command_line(argv, env)
        env = {**BASE_ENV, **how.env, **env, "KUBECONFIG": str(kubeconfig)}
        mounts = [*pods.mounts(spec, volumes), pods.Mount(str(directory / "hosts"), "/etc/hosts", True)]
        user = pods.user(pod, spec)
        for path in how.writable:  # the container's writable layer where no volume covers it
            if not any(m.target == path or path.startswith(m.target.rstrip("/") + "/") for m in mounts):
                layer = directory / "layers" / spec["name"] / path.strip("/")
                layer.mkdir(parents=True, exist_ok=True)
                if user:
                    os.chown(layer, user["uid"], user["gid"])
                mounts.insert(0, pods.Mount(str(layer), path))
        spec_file = directory / f"{spec['name']}.json"
        spec_file.write_text(json.dumps({"mounts": [{"source": m.source, "target": m.target,
                                                     "readOnly": m.read_only} for m in mounts],
                                         "workingDir": spec.get("workingDir") or how.workdir,
                                         "user": user, "netns": str(netns)}))
        return Container(spec, argv, env, spec_file)

    def _log_file(self, run: PodRun, container: Container) -> Path:
        return self.state_dir / "logs" / f"{run.pod['metadata']['namespace']}_{run.name}_{container.name}.log"

    def _start(self, run: PodRun, container: Container) -> None:
        container.started_now(lifecycle.spawn(container, self._log_file(run, container)))
        if self.pod_logs and container is run.containers[0]:
            link = self.pod_logs / run.pod["metadata"]["namespace"] / f"{_workload(run.pod)}.log"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(self._log_file(run, container))
        log.info("pod %s: container %s started (pid %d): %s", run.name, container.name, container.process.pid,
                 " ".join(_redacted(container.argv)))

    def _keep(self, run: PodRun) -> None:
        """Restart exited containers as restartPolicy and the back-off say."""
        policy = run.pod["spec"].get("restartPolicy") or "Always"
        for container in run.containers:
            code = lifecycle.exited(run.uid, container, policy)
            if code is not None and container.finished:
                log.info("pod %s: container %s exited with %s (not restarted)", run.name, container.name, code)
            elif code is not None:
                log.warning("pod %s: container %s exited with %s; restarting in %.0fs (see %s)", run.name,
                            container.name, code, container.backoff, self._log_file(run, container))
            if lifecycle.due(container):
                container.restarts += 1
                self._start(run, container)

    # -- stopping a pod ----------------------------------------------------------------------------

    def _stop_pod(self, run: PodRun, why: str) -> None:
        grace = float(run.pod["spec"].get("terminationGracePeriodSeconds", 30))
        for pid in lifecycle.stop([c.process for c in run.containers if c.process], grace):
            log.warning("pod %s: pid %d ignored SIGTERM: killed", run.name, pid)
        name = network.netns_name(run.uid)
        left = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in left:  # whatever else ran in the pod (e.g. kernels in sessions of their own)
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        network.remove_pod(run.uid)
        shutil.rmtree(run.directory, ignore_errors=True)
        self.pods.pop(run.uid, None)
        log.info("pod %s: stopped (%s)", run.name, why)

    def _release_claims(self) -> None:
        """A volume's data goes with its claim (reclaimPolicy Delete, as the lab's provisioner sets
        it): the directories of volumes no claim of the namespace is bound to are removed."""
        directory = self.state_dir / "volumes"
        if not directory.is_dir():
            return
        try:
            bound = {(c.get("spec") or {}).get("volumeName") for c in self.api.items("persistentvolumeclaims")}
        except ApiUnavailable:
            return
        for path in directory.iterdir():
            if path.name not in bound:
                shutil.rmtree(path, ignore_errors=True)
                log.info("volume %s has no claim any more: its data removed", path.name)

    # -- Services --------------------------------------------------------------------------------

    def _route(self, services: list[dict]) -> None:
        """kube-proxy: each Service port to a ready pod this runner plays, rejected while there is
        none (network.ServiceProxy)."""
        rules, cluster_ips = [], set()
        for service in services:
            spec = service.get("spec") or {}
            if spec.get("clusterIP") and spec["clusterIP"] != "None":
                cluster_ips.add(spec["clusterIP"])
            selector = spec.get("selector") or {}
            endpoint = next((run for run in self.pods.values() if _matches(selector,
                             run.pod["metadata"].get("labels") or {}) and all(c.ready for c in run.containers)), None)
            if endpoint is None and not selector:
                continue  # endpoints of its own (none in the charts): not kube-proxy's to route
            ingress = [i["ip"] for i in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                       if i.get("ip") and _is_local_address(i["ip"])]
            for port in spec.get("ports") or []:
                target = _port(endpoint.pod, port.get("targetPort", port["port"])) if endpoint else 0
                if target is None:
                    continue
                proto = (port.get("protocol") or "TCP").lower()
                addresses = [(spec.get("clusterIP"), port["port"])] + [(ip, port["port"]) for ip in ingress]
                if port.get("nodePort"):
                    addresses.append((self.node_address, port["nodePort"]))
                rules += [network.Rule(ip, p, endpoint.ip if endpoint else "", target, proto) for ip, p in addresses
                          if ip and ip != "None"]
        self.proxy.sync(rules, cluster_ips)

    # -- reporting -------------------------------------------------------------------------------

    def _probe(self, run: PodRun, container: Container) -> bool:
        """The readiness probe's verdict at the pod IP: HTTP 200-399 (pkg/probe/http), a TCP
        connection; no probe (or exec, which the lab does not run): ready."""
        probe = container.spec.get("readinessProbe") or {}
        timeout = min(1, probe.get("timeoutSeconds") or 1)
        try:
            if "httpGet" in probe:
                port = _port(run.pod, probe["httpGet"].get("port"))
                answer = requests.get(f"http://{run.ip}:{port}{probe['httpGet'].get('path') or '/'}",
                                      timeout=timeout, allow_redirects=False)
                return 200 <= answer.status_code < 400
            if "tcpSocket" in probe:
                socket.create_connection((run.ip, _port(run.pod, probe["tcpSocket"].get("port"))), timeout).close()
        except (requests.RequestException, OSError):
            return False
        return True

    def _report(self, run: PodRun) -> None:
        statuses = [lifecycle.container_status(run.pod, c, c.process is not None and self._probe(run, c))
                    for c in run.containers]
        patch = lifecycle.pod_status(run.pod, run.containers, statuses)
        if patch is None:
            return
        self.api.patch_pod_status(run.name, patch)
        run.pod["status"] = {**(run.pod.get("status") or {}), "phase": patch["phase"], "containerStatuses": statuses}
        unready = [s["name"] for s in statuses if not s["ready"]]
        log.info("pod %s: %s, %s", run.name, patch["phase"], f"not ready: {', '.join(unready)}" if unready else "ready")

    def _write_status(self) -> None:
        running = {f"{run.name}/{c.name}": {"pid": c.process.pid, "argv": _redacted(c.argv), "ip": run.ip,
                                            "log": str(self._log_file(run, c))}
                   for run in self.pods.values() for c in run.containers if c.process}
        text = json.dumps({"running": running, "waiting": self.waiting}, indent=1) + "\n"
        if text != self._status:
            path = self.state_dir / "status.json"
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
            self._status = text

    def run(self) -> None:
        """Reconcile every `interval` seconds until SIGTERM/SIGINT, then stop every pod."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        log.info("watching namespace %s at %s (node %s)", self.api.namespace, self.api.url, self.node_address)
        try:
            while not self.stopping.is_set():
                self.reconcile()
                self.stopping.wait(self.interval)
        finally:
            for run in list(self.pods.values()):
                self._stop_pod(run, "runner exiting")
            self.proxy.clear()
            self.waiting = {"all": "runner stopped"}
            self._write_status()
