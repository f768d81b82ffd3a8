"""A small kubelet for the lab: runs the BinderHub release's workloads as local processes.

Every `interval` seconds it reads the release's objects from the API emulator (namespace
`namespace`, names as the chart makes them) and makes the running processes match. Each process
starts from its Deployment's pod template as a kubelet would start the container (lab.apps.pods:
its `env` and the files of its ConfigMap and Secret volumes), so from whatever the real BinderHub
chart, pinned (0.2.0-n600, z2jh 0.11) or current (1.0.0-dev, z2jh 4.x), put where:
- binder: while Deployment `binder` exists, `python -m lab.apps binder` listens on
  `nodeport_address` (0.0.0.0, as kube-proxy serves NodePorts) at the `binder` Service's
  nodePort, with the token in container `binder`'s $JUPYTERHUB_API_TOKEN (pinned: Secret
  `binder-secret` key `binder.hub-token`; current: Secret `hub` key `hub.services.binder.apiToken`)
  and the `config` of the values files the chart's binderhub_config.py reads:
  /etc/binderhub/config/values.yaml (pinned: ConfigMap `binder-config`; current: Secret
  `binder-secret`) with, pinned only, /etc/binderhub/secret/values.yaml (Secret `binder-secret`:
  the repository providers' secrets) merged over it.
- hub: while Deployments `hub` and `proxy` and Service `proxy-public` exist, JupyterHub
  (lab.apps.hub) with its public proxy on proxy-public's load-balancer IP
  (`status.loadBalancer.ingress[0].ip`) at the Service's port once that IP is on one of this
  host's interfaces (before: on `node_address` at the proxy container's `http` port, where the
  pod's proxy serves on a cluster without the load balancer's IP) and, from container
  `hub`, what the chart's z2jh.py reads under the directory of its `--config`: the jupyterhub
  chart's values (pinned: `/etc/jupyterhub/{config,secret}/values.yaml`, ConfigMap `hub-config`
  has none, Secret `hub-secret` has them; current: `/usr/local/etc/jupyterhub/secret/values.yaml`,
  Secret `hub`) for the base URL `hub.baseUrl`, authentication and the rest; the binder service's
  token (current: Secret `hub` key `hub.services.binder.apiToken`; pinned: in the values); the
  cookie secret (current: key `hub.config.JupyterHub.cookie_secret`; pinned: `hub.cookieSecret`
  if set); the proxy token from $CONFIGPROXY_AUTH_TOKEN (pinned: `hub-secret` `proxy.token`;
  current: `hub` `hub.config.ConfigurableHTTPProxy.auth_token`); and the chart's era from the
  Deployment's `chart` label (`jupyterhub-0.11.1`, `jupyterhub-4.2.0`). The hub API, proxy API and
  users' servers listen on `node_address`.
- Services: kube-proxy's part for what this node itself sends (iptables nat OUTPUT, chain
  `LABAPPS-SERVICES`): a connection to Service `hub` or `proxy-api` at its ClusterIP and port is
  sent to `node_address` at that port, where JupyterHub listens (the ClusterIP gets a /32 route
  on the node's interface, as a real node's default route covers it); so, as on a real node,
  `curl http://<hub ClusterIP>:8081/...` works on the node (smoke stops its server that way).
  Not when `node_address` is on loopback (the runner run on the machine itself, as
  tests/test_labapps.py does): the machine's own firewall is left alone.
A process is restarted when what it was started from changes (a helm upgrade, another IP), stopped
when its Deployments go away (helm uninstall), and every process is stopped on SIGTERM or SIGINT.
One that exits by itself is restarted as the kubelet restarts a container (pkg/kubelet/kubelet.go
backOffPeriod and MaxContainerBackOff, kuberuntime_manager.go doBackOff; the lab keeps the real
figures): at once the first time, then after a back-off of 10 s doubling to 300 s, reset once it
has run 10 minutes (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#container-restarts);
at once whenever what it starts from has changed since, as a new pod would.
Pods: at start the runner names the Deployments it plays in ConfigMap `kube-system/lab-runner`
(the emulator's kubelet then leaves their containers to it, see lab.cluster.kubelet), and it
reports each played pod's container through the pod's status subresource, as the kubelet's
status manager does: `running` with `ready` from the container's readinessProbe (its httpGet path,
or tcpSocket, asked where the process serves that Deployment's container; no probe, or `exec`,
which the lab cannot run in a container: ready once started; the probe runs on each reconcile, its
periods and thresholds are not honoured), `CrashLoopBackOff` with the kubelet's message while
backing off, `restartCount` (its restarts after exiting by itself since the pod was made),
`lastState.terminated` (exitCode, 128+N for signal N, reason Error, as containerd reports a
non-zero exit), and the Ready/ContainersReady conditions. A pod the emulator's kubelet holds (an
image it cannot pull, a missing ConfigMap or Secret) is left to it.
The processes are this runner's children, started in their own sessions and stopped by PID
(SIGTERM, then SIGKILL after `STOP_TIMEOUT` s); should the runner die, the kernel sends them
SIGTERM. If the API cannot be read, running processes are left as they are. Logs:
`<state_dir>/logs/{runner,binder,hub}.log`, linked as the pods' logs of the Deployments each
process plays (`pod_logs`/NAMESPACE/{binder,hub,proxy}.log, where the emulator's `kubectl logs`
reads them); `<state_dir>/status.json` tells what runs (PIDs) and what waits, and why.
"""
from __future__ import annotations

import base64
import ctypes
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import yaml

from lab.apps import faults, pods
from lab.apps.hub import DEFAULT_CHP, REPO, HubSettings
from lab.apps.hub import command as hub_command

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
BACKOFF = 10.0  # the kubelet's container restart back-off: first delay, cap, and the run that resets it
MAX_BACKOFF = 300.0
BACKOFF_RESET = 600.0
PLAYS = ("binder", "hub", "proxy")  # the Deployments whose pods the runner plays (lab.cluster.kubelet)
RUNNER_CONFIGMAP = ("kube-system", "lab-runner")
# What the emulator's kubelet holds a container in (lab.cluster.kubelet): the runner leaves those pods alone.
_HELD = ("ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError")
_PR_SET_PDEATHSIG = 1
ROUTED_SERVICES = ("hub", "proxy-api")  # ClusterIP Services whose ports JupyterHub serves on the node
CHAIN = "LABAPPS-SERVICES"
# BinderHub's values files, merged in this order by the charts' binderhub_config.py (the current
# chart mounts only the first)
BINDER_VALUES = ("/etc/binderhub/config/values.yaml", "/etc/binderhub/secret/values.yaml")


def _terminate_with_parent() -> None:
    """In a child before exec: get SIGTERM if the runner dies (even by SIGKILL), not be orphaned."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ApiUnavailable(Exception):
    """The API emulator could not be read."""


@dataclasses.dataclass(frozen=True)
class Played:
    """A Deployment's container that an App's process plays, and where it serves the container's port."""

    deployment: str
    container: str
    address: str
    port: int


@dataclasses.dataclass(frozen=True)
class App:
    """A process to run: restarted whenever `fingerprint` changes."""

    name: str
    argv: list[str]
    env: dict[str, str] = dataclasses.field(repr=False)  # tokens: never in a repr
    workdir: Path
    files: dict[Path, str] = dataclasses.field(repr=False)  # written before it starts (its configuration)
    plays: tuple[Played, ...] = ()  # the Deployments' containers it plays (their pods' log is its log)

    @property
    def fingerprint(self) -> str:
        content = json.dumps([self.argv, self.env, {str(k): v for k, v in self.files.items()}], sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()


@dataclasses.dataclass
class Running:
    app: App
    process: subprocess.Popen
    started: float
    started_at: str  # RFC 3339, as container states show it


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _type(condition: dict) -> str:
    return condition.get("type", "")


def _go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds: 10s, 1m20s, 5m0s."""
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class Api:
    """Reads of the release's objects, as JSON, from the emulator's plain-HTTP API."""

    def __init__(self, url: str, namespace: str):
        self.url, self.namespace = url.rstrip("/"), namespace
        self.session = requests.Session()

    def get(self, group_version: str, plural: str, name: str) -> dict | None:
        prefix = "api/v1" if group_version == "v1" else f"apis/{group_version}"
        return self._send("GET", f"{prefix}/namespaces/{self.namespace}/{plural}/{name}")

    def deployment(self, name: str) -> dict | None:
        return self.get("apps/v1", "deployments", name)

    def pods(self) -> list[dict]:
        """The namespace's pods."""
        return (self._send("GET", f"api/v1/namespaces/{self.namespace}/pods") or {}).get("items") or []

    def patch_pod_status(self, name: str, status: dict) -> None:
        """A strategic merge patch of a pod's status (containerStatuses replaced, conditions merged by type)."""
        self._send("PATCH", f"api/v1/namespaces/{self.namespace}/pods/{name}/status", {"status": status},
                   "application/strategic-merge-patch+json")

    def register(self, deployments: list[str]) -> None:
        """Name the Deployments this runner plays, as NAMESPACE/NAME lines in ConfigMap kube-system/lab-runner."""
        namespace, name = RUNNER_CONFIGMAP
        data = {"deployments": "".join(f"{self.namespace}/{d}\n" for d in deployments)}
        path = f"api/v1/namespaces/{namespace}/configmaps"
        if self._send("PATCH", f"{path}/{name}", {"data": data}, "application/merge-patch+json") is None:
            self._send("POST", path, {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": name, "namespace": namespace}, "data": data})

    def _send(self, method: str, path: str, body: dict | None = None,
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

    def service(self, name: str) -> dict | None:
        return self.get("v1", "services", name)

    def configmap(self, name: str) -> dict[str, str] | None:
        """ConfigMap `name`'s data (None when there is no such ConfigMap)."""
        configmap = self.get("v1", "configmaps", name)
        return None if configmap is None else dict(configmap.get("data") or {})

    def secret(self, name: str) -> dict[str, str] | None:
        """Secret `name`'s data, decoded (None when there is no such Secret)."""
        secret = self.get("v1", "secrets", name)
        if secret is None:
            return None
        return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def _merge(base: dict, over: dict) -> dict:
    """`over` merged into `base` key by key, as the charts' config loaders merge their values files."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _values(pod: pods.Container, paths: tuple[str, ...]) -> dict:
    """The values files at `paths` in the container that exist, merged in that order."""
    merged: dict = {}
    for path in paths:
        text = pod.file(path)
        if text is not None:
            merged = _merge(merged, yaml.safe_load(text) or {})
    return merged


def _routes_services(node_address: str) -> bool:
    """Whether the runner plays kube-proxy: on a lab host, not on the machine itself (loopback)."""
    try:
        return not ipaddress.ip_address(node_address).is_loopback
    except ValueError:
        return False


def _is_local_address(ip: str) -> bool:
    """Whether `ip` is on one of this host's interfaces (the proxy can bind it)."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


def _hub_config(pod: pods.Container, chart: str) -> dict | str:
    """The hub's HubSettings fields from its container, read where the chart's z2jh.py reads them:
    the values files under the directory of `--config` (z2jh 0.x: config/ then secret/; 4.x:
    secret/ then existing-secret/), the Secret keys named like `hub.services.binder.apiToken`
    (4.x; in 0.x they are in the values), the proxy token from $CONFIGPROXY_AUTH_TOKEN; or why not."""
    config_file = next((arg for arg in reversed(pod.args) if arg.endswith("/jupyterhub_config.py")), "")
    directory = config_file.rpartition("/")[0]
    values = _values(pod, tuple(f"{directory}/{source}/values.yaml"
                                for source in ("config", "secret", "existing-secret")))

    def secret_value(key: str) -> str | None:
        return pod.file(f"{directory}/existing-secret/{key}") or pod.file(f"{directory}/secret/{key}")

    hub = values.get("hub") or {}
    binder_token = (secret_value("hub.services.binder.apiToken")
                    or ((hub.get("services") or {}).get("binder") or {}).get("apiToken"))
    proxy_token = pod.env.get("CONFIGPROXY_AUTH_TOKEN")
    if not directory or not values:
        return f"hub: no values.yaml under the directory of its --config ({config_file or 'none given'})"
    if not proxy_token or not binder_token:
        return "hub: no CONFIGPROXY_AUTH_TOKEN or no apiToken for the binder service"
    return {"base_url": hub.get("baseUrl") or "/", "proxy_token": proxy_token, "binder_token": binder_token,
            "cookie_secret": secret_value("hub.config.JupyterHub.cookie_secret") or hub.get("cookieSecret"),
            "chart": chart, "values": values}


class Runner:
    """Keeps the release's processes running as the API says; see the module docstring."""

    def __init__(self, api: Api, node_address: str, state_dir: Path, *, nodeport_address: str = "0.0.0.0",
                 chp: Path = DEFAULT_CHP, keepalive: float = 25, hold_open: float = 60, interval: float = 1.0,
                 pod_logs: Path | None = None):
        self.api, self.node_address, self.state_dir, self.pod_logs = api, node_address, state_dir, pod_logs
        self.nodeport_address, self.chp = nodeport_address, chp
        self.keepalive, self.hold_open, self.interval = keepalive, hold_open, interval
        self.faults_file = state_dir / "faults.json"
        self.running: dict[str, Running] = {}
        self.waiting: dict[str, str] = {}      # app -> why it does not run
        self.backoff: dict[str, tuple[float, float, str]] = {}  # app -> (delay, not before, fingerprint)
        self.restarts: dict[str, int] = {}     # app -> restarts after it exited by itself
        self.first_seen: dict[str, int] = {}   # played pod's uid -> its app's restarts when first seen
        self.last_exit: dict[str, dict] = {}   # app -> its last termination, as lastState.terminated
        self.registered = False
        self.stopping = threading.Event()
        self.routes: list[tuple[str, int]] | None = None  # (ClusterIP, port) in the chain now
        self._status = ""

    # -- what should run -------------------------------------------------------------------

    def desired(self) -> dict[str, App | str]:
        """Each app's App, or the reason it should not run."""
        return {"binder": self._binder(), "hub": self._hub()}

    def _binder(self) -> App | str:
        deployment = self.api.deployment("binder")
        if not deployment:
            return "no Deployment binder"
        ports = ((self.api.service("binder") or {}).get("spec") or {}).get("ports") or []
        node_port = next((p["nodePort"] for p in ports if p.get("nodePort")), None)
        if not node_port:
            return "Service binder has no nodePort"
        try:
            pod = pods.container(self.api, deployment, "binder")
        except pods.NotStarting as exc:
            return f"binder does not start: {exc}"
        token = pod.env.get("JUPYTERHUB_API_TOKEN")
        values = _values(pod, BINDER_VALUES)
        if token is None or "config" not in values:
            return f"binder has no JUPYTERHUB_API_TOKEN or no {' or '.join(BINDER_VALUES)} with `config`"
        workdir = self.state_dir / "binder"
        config_file = workdir / "binderhub_config.json"
        argv = [sys.executable, "-m", "lab.apps", "binder", "--config", str(config_file),
                "--address", self.nodeport_address, "--port", str(node_port), "--state-dir", str(workdir),
                "--keepalive", str(self.keepalive), "--hold-open", str(self.hold_open)]
        env = {"JUPYTERHUB_API_TOKEN": token, faults.FAULTS_ENV: str(self.faults_file), "PYTHONPATH": str(REPO)}
        address = self.node_address if self.nodeport_address in ("0.0.0.0", "::") else self.nodeport_address
        return App("binder", argv, env, workdir, {config_file: json.dumps(values["config"] or {})},
                   (Played("binder", "binder", address, node_port),))

    def _hub(self) -> App | str:
        deployments = {name: self.api.deployment(name) for name in ("hub", "proxy")}
        missing = [name for name, deployment in deployments.items() if not deployment]
        if missing:
            return f"no Deployment {' or '.join(missing)}"
        service = self.api.service("proxy-public")
        if not service:
            return "no Service proxy-public"
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ip = ingress[0].get("ip") if ingress else None
        proxy = deployments["proxy"]["spec"]["template"]["spec"].get("containers") or [{}]
        if ip and _is_local_address(ip):
            ports = service["spec"].get("ports") or [{}]
            port = next((p["port"] for p in ports if p.get("name") == "http"), ports[0].get("port", 80))
        else:  # no IP (yet) on this host: the proxy's own port on the node, as the pod's serves without one
            ip = self.node_address
            port = next((p["containerPort"] for p in proxy[0].get("ports") or [] if p.get("name") == "http"), 8000)
        try:
            pod = pods.container(self.api, deployments["hub"], "hub")
        except pods.NotStarting as exc:
            return f"hub does not start: {exc}"
        chart = (deployments["hub"]["metadata"].get("labels") or {}).get("chart", "")
        config = _hub_config(pod, chart)
        if isinstance(config, str):
            return config
        if not self.chp.exists():
            return f"{self.chp} missing: run scripts/install-lab-apps"
        settings = HubSettings(public_address=ip, public_port=port, internal_address=self.node_address,
                               state_dir=str(self.state_dir / "hub"), chp=str(self.chp),
                               faults_file=str(self.faults_file), **config)
        argv, env = hub_command(settings)
        plays = (Played("hub", "hub", self.node_address, settings.hub_port),
                 Played("proxy", proxy[0].get("name", "chp"), ip, port))
        return App("hub", argv, env, Path(settings.state_dir), {settings.file: settings.to_json()}, plays)

    # -- making it so ------------------------------------------------------------------------

    def reconcile(self) -> None:
        try:
            if not self.registered:
                self.api.register(list(PLAYS))
                self.registered = True
            desired = self.desired()
        except ApiUnavailable as exc:
            if "api" not in self.waiting:
                log.warning("cannot read the API, leaving the processes as they are: %s", exc)
            self.waiting["api"] = f"cannot read the API: {exc}"
            self._write_status()
            return
        if self.waiting.pop("api", None):
            log.info("the API answers again")
        if _routes_services(self.node_address):
            try:
                self._route_services()
            except ApiUnavailable as exc:
                log.warning("cannot read the Services to route: %s", exc)
        for name, app in desired.items():
            current = self.running.get(name)
            if current and current.process.poll() is not None:
                self._exited(name, current)
                current = None
            if isinstance(app, str):
                if current:
                    log.info("stopping %s: %s", name, app)
                    self._stop(name)
                self.backoff.pop(name, None)
                self._wait_reason(name, app)
            elif not current or current.app.fingerprint != app.fingerprint:
                if current:
                    log.info("restarting %s: its configuration changed", name)
                    self._stop(name)
                    self.backoff.pop(name, None)
                _, not_before, crashed = self.backoff.get(name, (0, 0, ""))
                if crashed != app.fingerprint:  # a new configuration starts at once, as a new pod
                    self.backoff.pop(name, None)
                if crashed == app.fingerprint and time.monotonic() < not_before:
                    self._wait_reason(name, "exited by itself; restarting after a back-off")
                else:
                    self._wait_reason(name, None)
                    if crashed == app.fingerprint:
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                    self._start(app)
        try:
            self._report(desired)
        except ApiUnavailable as exc:
            log.warning("cannot report the pods' status: %s", exc)
        self._write_status()

    def _route_services(self) -> None:
        """Make the chain send each routed Service's ClusterIP:port to this node (see the module
        docstring); iptables runs only when the Services' addresses change."""
        routes = sorted((svc["spec"]["clusterIP"], port["port"]) for name in ROUTED_SERVICES
                        if (svc := self.api.service(name)) and svc["spec"].get("clusterIP") not in (None, "None")
                        for port in svc["spec"].get("ports") or [])
        if routes == self.routes:
            return
        nat = ["iptables", "-w", "-t", "nat"]
        device = self._device()
        for ip in {ip for ip, _ in self.routes or []} - {ip for ip, _ in routes}:
            subprocess.run(["ip", "route", "del", f"{ip}/32", "dev", device], capture_output=True)
        commands = [["ip", "route", "replace", f"{ip}/32", "dev", device] for ip in sorted({ip for ip, _ in routes})]
        commands += [[*nat, "-F", CHAIN]] + [
            [*nat, "-A", CHAIN, "-d", f"{ip}/32", "-p", "tcp", "--dport", str(port),
             "-j", "DNAT", "--to-destination", f"{self.node_address}:{port}"] for ip, port in routes]
        subprocess.run([*nat, "-N", CHAIN], capture_output=True)  # fails when it exists: fine
        if subprocess.run([*nat, "-C", "OUTPUT", "-j", CHAIN], capture_output=True).returncode:
            commands.insert(0, [*nat, "-I", "OUTPUT", "-j", CHAIN])
        for argv in commands:
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode:
                log.warning("cannot route Services (retrying): %s: %s", " ".join(argv), done.stderr.strip())
                return
        self.routes = routes
        log.info("Services routed to %s: %s", self.node_address,
                 ", ".join(f"{ip}:{port}" for ip, port in routes) or "none")

    def _device(self) -> str:
        """The interface holding `node_address`."""
        listed = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        return next((line.split()[1] for line in listed.splitlines()
                     if line.split()[3].split("/")[0] == self.node_address), "lo")

    def _wait_reason(self, name: str, reason: str | None) -> None:
        if reason and self.waiting.get(name) != reason:
            log.info("%s not running: %s", name, reason)
        if reason:
            self.waiting[name] = reason
        else:
            self.waiting.pop(name, None)

    def _exited(self, name: str, current: Running) -> None:
        """Back off as the kubelet does (see the module docstring) and keep the exit for lastState."""
        ran, fingerprint = time.monotonic() - current.started, current.app.fingerprint
        previous = self.backoff.get(name)
        if previous is None or previous[2] != fingerprint or ran >= BACKOFF_RESET:
            delay = 0.0
        else:
            delay = min(MAX_BACKOFF, previous[0] * 2) if previous[0] else BACKOFF
        code = current.process.returncode
        log.warning("%s (pid %d) exited with %s after %.1fs; restarting in %.0fs (see %s)", name,
                    current.process.pid, code, ran, delay, self._log_file(name))
        self.backoff[name] = (delay, time.monotonic() + delay, fingerprint)
        self.last_exit[name] = {"exitCode": code if code >= 0 else 128 - code, "reason": "Error" if code else
                                "Completed", "startedAt": current.started_at, "finishedAt": _stamp(),
                                "containerID": self._container_id(name, current.process.pid)}
        del self.running[name]

    # -- reporting the pods ---------------------------------------------------------------------

    def _report(self, desired: dict[str, App | str]) -> None:
        """Write each played pod's container status where it differs (see the module docstring)."""
        apps = {name: app for name, app in desired.items() if isinstance(app, App)
                and (name in self.running or self.backoff.get(name, (0, 0, ""))[2] == app.fingerprint)}
        if not apps:
            return
        for pod in self.api.pods():
            meta, spec = pod["metadata"], pod["spec"]
            owner = next((r["name"] for r in meta.get("ownerReferences") or [] if r.get("kind") == "ReplicaSet"), "")
            found = next(((name, played) for name, app in apps.items() for played in app.plays
                          if owner.rpartition("-")[0] == played.deployment), None)
            if found is None or not spec.get("nodeName") or meta.get("deletionTimestamp"):
                continue
            name, played = found
            status = pod.get("status") or {}
            statuses = status.get("containerStatuses") or []
            current = next((c for c in statuses if c.get("name") == played.container), None)
            container = next((c for c in spec.get("containers") or [] if c.get("name") == played.container), None)
            held = ((current or {}).get("state") or {}).get("waiting", {}).get("reason") in _HELD
            if container is None or current is None or held or any(
                    c.get("type") == "PodReadyToStartContainers" and c.get("status") == "False"
                    for c in status.get("conditions") or []):
                continue
            reported = self._container_status(name, played, container, pod)
            statuses = [reported if c.get("name") == played.container else c for c in statuses]
            unready = [c["name"] for c in statuses if not c.get("ready")]
            conditions = [self._condition(status, kind, unready) for kind in ("Ready", "ContainersReady")]
            old = [{key: c.get(key) for key in conditions[0]} for c in status.get("conditions") or []
                   if c.get("type") in ("Ready", "ContainersReady")]
            if statuses == status.get("containerStatuses") and sorted(conditions, key=_type) == sorted(old, key=_type):
                continue
            self.api.patch_pod_status(meta["name"], {"phase": "Running", "containerStatuses": statuses,
                                                     "conditions": conditions})
            log.info("pod %s: %s %s", meta["name"], next(iter(reported["state"])),
                     "ready" if reported["ready"] else "not ready")

    def _container_status(self, name: str, played: Played, container: dict, pod: dict) -> dict:
        """The played container's status now: running (ready as its probe says) or backing off."""
        restarts, uid = self.restarts.get(name, 0), pod["metadata"]["uid"]
        if uid not in self.first_seen:  # a new pod: no restarts, no back-off (the kubelet keys it by pod)
            self.first_seen[uid] = restarts
            if name in self.running:
                self.backoff.pop(name, None)
        restarts -= self.first_seen[uid]
        status = {"name": played.container, "image": container.get("image", ""), "imageID": "",
                  "restartCount": restarts}
        if name in self.last_exit and (restarts or name not in self.running):
            status["lastState"] = {"terminated": self.last_exit[name]}
        running = self.running.get(name)
        if running:
            return {**status, "state": {"running": {"startedAt": running.started_at}}, "started": True,
                    "ready": self._probe(played, container.get("readinessProbe")),
                    "containerID": self._container_id(name, running.process.pid)}
        meta = pod["metadata"]
        message = (f"back-off {_go_duration(self.backoff[name][0])} restarting failed container={played.container} "
                   f"pod={meta['name']}_{meta['namespace']}({meta.get('uid', '')})")
        return {**status, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": message}},
                "started": False, "ready": False}

    @staticmethod
    def _probe(played: Played, probe: dict | None) -> bool:
        """The readiness probe's verdict: an HTTP status 200-399 (pkg/probe/http), a TCP connection;
        no probe (or exec): ready."""
        probe = probe or {}
        timeout = probe.get("timeoutSeconds") or 1
        host = f"[{played.address}]" if ":" in played.address else played.address
        try:
            if "httpGet" in probe:
                path = probe["httpGet"].get("path") or "/"
                answer = requests.get(f"http://{host}:{played.port}{path}", timeout=timeout, allow_redirects=False)
                return 200 <= answer.status_code < 400
            if "tcpSocket" in probe:
                socket.create_connection((played.address, played.port), timeout=timeout).close()
        except (requests.RequestException, OSError):
            return False
        return True

    @staticmethod
    def _condition(status: dict, kind: str, unready: list[str]) -> dict:
        """The condition's fields as a strategic merge patch sets them (None: removed)."""
        before = next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})
        value = "False" if unready else "True"
        return {"type": kind, "status": value,
                "lastTransitionTime": before.get("lastTransitionTime") if before.get("status") == value else _stamp(),
                "reason": "ContainersNotReady" if unready else None,
                "message": f"containers with unready status: [{' '.join(unready)}]" if unready else None}

    def _container_id(self, name: str, pid: int) -> str:
        return "containerd://" + hashlib.sha256(f"{self.state_dir}/{name}/{pid}".encode()).hexdigest()

    def _log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _start(self, app: App) -> None:
        app.workdir.mkdir(parents=True, exist_ok=True)
        for path, content in app.files.items():
            path.write_text(content)
            path.chmod(0o600)
        with self._log_file(app.name).open("a") as out:
            process = subprocess.Popen(app.argv, env={**os.environ, **app.env}, cwd=app.workdir,
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, preexec_fn=_terminate_with_parent)
        self.running[app.name] = Running(app, process, time.monotonic(), _stamp())
        for played in app.plays if self.pod_logs else ():
            link = self.pod_logs / self.api.namespace / f"{played.deployment}.log"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(self._log_file(app.name))
        log.info("started %s (pid %d): %s", app.name, process.pid, " ".join(app.argv))

    def _stop(self, name: str) -> None:
        current = self.running.pop(name)
        process = current.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %.0fs: killing it", name, process.pid, STOP_TIMEOUT)
                process.kill()
                process.wait()
        log.info("stopped %s (pid %d, exit %s)", name, process.pid, process.returncode)

    def _write_status(self) -> None:
        status = {"running": {name: {"pid": r.process.pid, "argv": r.app.argv, "log": str(self._log_file(name))}
                              for name, r in self.running.items()},
                  "waiting": self.waiting}
        text = json.dumps(status, indent=1) + "\n"
        if text != self._status:
            path = self.state_dir / "status.json"
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(text)
            os.replace(temporary, path)
            self._status = text

    def run(self) -> None:
        """Reconcile every `interval` seconds until SIGTERM/SIGINT, then stop every process."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        log.info("watching namespace %s at %s (node %s)", self.api.namespace, self.api.url, self.node_address)
        try:
            while not self.stopping.is_set():
                self.reconcile()
                self.stopping.wait(self.interval)
        finally:
            for name in list(self.running):
                log.info("stopping %s: runner exiting", name)
                self._stop(name)
            self.waiting = {"all": "runner stopped"}
            self._write_status()
