"""What a node's kubelet makes of a Pod bound to it, as the pod's status and Events show it
(https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/, .../containers/images/,
pkg/kubelet/kubelet_pods.go, pkg/kubelet/kuberuntime/kuberuntime_container.go). No container runs.

In the kubelet's order, the first failure wins and the pod stays `Pending`, not Ready:
- hostPath volumes, on a node whose node agent (lab.apps.nodeagent, which sees the node's own files)
  reports in ConfigMap `kube-system/lab-node-<node>` (key `mounts`: JSON {pod uid: "" when each
  hostPath volume passes the kubelet's type check there, else the kubelet's message}): the pod's
  containers wait `ContainerCreating` (PodReadyToStartContainers False) until its uid is there; a
  message keeps them so, with Event FailedMount carrying it, repeated at each sync as the kubelet
  retries the mount (pkg/volume/hostpath/host_path.go checkType). On a node without that
  ConfigMap (the emulator alone, as in the emulator-only tests) hostPath volumes are not checked.
- Volumes: a configMap/secret volume (also in `projected`) whose object is missing and not
  `optional` is not mounted: containers wait `ContainerCreating`, Event FailedMount
  `MountVolume.SetUp failed for volume "V" : configmap "N" not found`. (A pod whose claim is not
  Bound is not bound to a node at all: the scheduler's volumebinding, see `scheduling`.)
- Images: the lab's nodes have exactly `NODE_IMAGES` (the images the real charts' workloads and
  the lab's own workloads use; references compare as containerd normalises them), and the images
  the lab built (ConfigMap `kube-system/lab-images`, key `images`, one reference a line, written
  by the lab's build: as from a registry every node reaches). Any other image
  fails to pull, as from a registry the node cannot reach: `ErrImagePull` on the first attempt,
  then `ImagePullBackOff` (Events Failed and BackOff).
- Container config: an env `configMapKeyRef`/`secretKeyRef` or `envFrom` naming a missing object
  or key (not `optional`) is `CreateContainerConfigError` with the kubelet's message
  (`configmap "N" not found`, `couldn't find key K in ConfigMap NS/N`).
Otherwise every container is running and ready and the pod `Running`, except in the pods of
the pods a runner plays (lab.apps' runner runs their containers; it names the images it runs in
ConfigMap `kube-system/lab-runner`, key `images`, fnmatch patterns one a line, as kubeadm keeps the
kubelets' configuration in `kube-system/kubelet-config`; the node agent of the pod's node names the
images it plays on that node in its ConfigMap's key `images` the same way, matched against the
reference as containerd resolves it; a pod is played when each of its images matches one of those,
or is one the lab built): there the container waits `ContainerCreating` until the runner (or the
agent) reports it through the pod's status subresource (`state` running, terminated or
`CrashLoopBackOff`, `ready` from its readiness probe, `restartCount`, `lastState`), and what it
reported is kept. The phase and the Ready/ContainersReady conditions follow the
containers as the kubelet's getPhase and generateContainersReadyCondition derive them
(pkg/kubelet/kubelet_pods.go, pkg/kubelet/status/generate.go): `Pending` while a container has
never started, `Running` once each has (also while one is backing off). `sync` is called again
while the pod is not ready (its controller resyncs), so a pod starts once what it lacked exists.
"""
from __future__ import annotations

import fnmatch
import json
from typing import Any

from lab.cluster import scheduling
from lab.cluster.cluster import Cluster, random_suffix
from lab.cluster.store import now
from lab.imageref import normalise

# The images the lab's nodes have (see the module docstring). tests/test_conformance_pods.py
# checks that every image in both real charts' values is here.
NODE_IMAGES = frozenset({
    # binderhub 0.2.0-n600.h36369a7 (z2jh 0.11.1), every component's image in its values
    "docker.io/library/docker:19.03.5-dind", "docker.io/jupyterhub/configurable-http-proxy:4.2.2",
    "docker.io/jupyterhub/k8s-binderhub:0.2.0-n600.h36369a7", "docker.io/jupyterhub/k8s-hub:0.11.1",
    "docker.io/jupyterhub/k8s-image-awaiter:0.11.1", "docker.io/jupyterhub/k8s-image-cleaner:0.2.0-n600.h36369a7",
    "docker.io/jupyterhub/k8s-network-tools:0.11.1", "docker.io/jupyterhub/k8s-secret-sync:0.11.1",
    "docker.io/jupyterhub/k8s-singleuser-sample:0.11.1", "k8s.gcr.io/kube-scheduler:v1.19.7", "k8s.gcr.io/pause:3.2",
    "docker.io/library/traefik:v2.3.7",
    # binderhub 1.0.0-0.dev.git.2227.hb9fad995 (z2jh 4.2.0)
    "docker.io/library/docker:28.3.3-dind", "quay.io/jupyterhub/configurable-http-proxy:4.6.3",
    "quay.io/jupyterhub/docker-image-cleaner:1.0.0-beta.3",
    "quay.io/jupyterhub/k8s-binderhub:1.0.0-0.dev.git.2227.hb9fad995",
    "quay.io/jupyterhub/k8s-hub:4.2.0", "quay.io/jupyterhub/k8s-image-awaiter:4.2.0",
    "quay.io/jupyterhub/k8s-network-tools:4.2.0", "quay.io/jupyterhub/k8s-secret-sync:4.2.0",
    "quay.io/jupyterhub/k8s-singleuser-sample:4.2.0", "quay.io/podman/stable:v5.8.1",
    "registry.k8s.io/kube-scheduler:v1.30.11", "registry.k8s.io/pause:3.10", "docker.io/library/traefik:v3.3.5",
    # the lab's own workloads: MetalLB (lab/metallb) and the test workloads
    "docker.io/metallb/controller:v0.9.3", "docker.io/metallb/speaker:v0.9.3",
    "quay.io/metallb/controller:v0.14.8", "quay.io/metallb/speaker:v0.14.8",
    # BinderHub's build pods (KubernetesBuildExecutor's build_image default)
    "quay.io/jupyterhub/repo2docker:2024.07.0",
    "docker.io/library/nginx:latest", "docker.io/library/nginx:1", "docker.io/library/busybox:latest",
    "docker.io/library/web:1", "docker.io/library/web:2", "docker.io/lab/spread:1", "docker.io/lab/everywhere:1",
})


def _pull_message(image: str) -> str:
    """containerd's error for a registry the node cannot reach."""
    ref = normalise(image)
    host, _, path = ref.partition("/")
    repo, _, tag = path.rpartition(":")
    return (f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": failed to do request: '
            f'Head "https://{host}/v2/{repo}/manifests/{tag}": dial tcp: lookup {host}: no such host')


def _missing_volume(cluster: Cluster, namespace: str, volume: dict[str, Any]) -> str | None:
    """Why a volume cannot be mounted (a missing, non-optional ConfigMap or Secret), else None."""
    sources = [volume] + [s for s in (volume.get("projected") or {}).get("sources") or []]
    for source in sources:
        for field, plural, kind, key in (("configMap", "configmaps", "configmap", "name"),
                                         ("secret", "secrets", "secret", "secretName")):
            ref = source.get(field)
            if ref is None or ref.get("optional"):
                continue
            name = ref.get(key if source is volume else "name") or ref.get("name")
            if cluster.store.get(cluster.core(plural), namespace, name) is None:
                return f'MountVolume.SetUp failed for volume "{volume.get("name")}" : {kind} "{name}" not found'
    return None


def _config_error(cluster: Cluster, namespace: str, container: dict[str, Any]) -> str | None:
    """The kubelet's CreateContainerConfigError message for a container's env, else None."""
    refs = []
    for source in container.get("envFrom") or []:
        for field, plural, kind in (("configMapRef", "configmaps", "configmap"), ("secretRef", "secrets", "secret")):
            if (ref := source.get(field)) is not None:
                refs.append((plural, kind, ref, None))
    for env in container.get("env") or []:
        value_from = env.get("valueFrom") or {}
        for field, plural, kind in (("configMapKeyRef", "configmaps", "configmap"),
                                    ("secretKeyRef", "secrets", "secret")):
            if (ref := value_from.get(field)) is not None:
                refs.append((plural, kind, ref, ref.get("key")))
    for plural, kind, ref, key in refs:
        if ref.get("optional"):
            continue
        found = cluster.store.get(cluster.core(plural), namespace, ref.get("name"))
        if found is None:
            return f'{kind} "{ref.get("name")}" not found'
        if key is not None and key not in (found.get("data") or {}) and key not in (found.get("binaryData") or {}):
            title = "ConfigMap" if kind == "configmap" else "Secret"
            return f"couldn't find key {key} in {title} {namespace}/{ref.get('name')}"
    return None


RUNNER_CONFIGMAP = ("kube-system", "lab-runner")  # key `images`: the images a runner plays (fnmatch patterns)
NODE_AGENT_PREFIX = "lab-node-"  # kube-system/lab-node-<node>: keys `images` and `mounts` (a node agent's)
LAB_IMAGES = ("kube-system", "lab-images")  # key `images`: the images the lab built (one reference a line)
# The states a runner reports for a container it plays (kept by `sync`); others are the kubelet's own.
_RUNNER_WAITING = ("CrashLoopBackOff",)


def _lines(cluster: Cluster, where: tuple[str, str]) -> list[str]:
    configmap = cluster.store.get(cluster.core("configmaps"), *where)
    return [line.strip() for line in (((configmap or {}).get("data") or {}).get("images") or "").splitlines()
            if line.strip()]


def built_images(cluster: Cluster) -> frozenset[str]:
    """The images the lab built (ConfigMap kube-system/lab-images): present on every node, as if
    pulled from a registry the nodes reach."""
    return frozenset(normalise(image) for image in _lines(cluster, LAB_IMAGES))


def _images(pod: dict[str, Any]) -> list[str]:
    spec = pod["spec"]
    return [c.get("image", "") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def node_agent(cluster: Cluster, node: str | None) -> dict[str, str] | None:
    """The data of the node agent's ConfigMap for `node`, None when the node has none."""
    found = cluster.store.get(cluster.core("configmaps"), "kube-system", f"{NODE_AGENT_PREFIX}{node}") if node else None
    return None if found is None else dict(found.get("data") or {})


def _host_paths(agent: dict[str, str] | None, uid: str) -> tuple[bool, str]:
    """(whether the pod's hostPath volumes are checked yet, the kubelet's message when they failed)."""
    if agent is None:
        return True, ""
    try:
        mounts = json.loads(agent.get("mounts") or "{}")
    except ValueError:
        mounts = {}
    return uid in mounts, str(mounts.get(uid) or "")


def played(cluster: Cluster, pod: dict[str, Any]) -> bool:
    """Whether a runner or the pod's node agent plays the pod: each of its images matches one of
    their patterns or is one the lab built (see the module docstring)."""
    agent = node_agent(cluster, pod["spec"].get("nodeName")) or {}
    patterns = _lines(cluster, RUNNER_CONFIGMAP)
    on_node = [line.strip() for line in (agent.get("images") or "").splitlines() if line.strip()]
    if not patterns and not on_node:
        return False
    built = built_images(cluster)
    return all(normalise(image) in built or any(fnmatch.fnmatchcase(image, p) for p in patterns)
               or any(fnmatch.fnmatchcase(normalise(image), p) for p in on_node) for image in _images(pod))


def _reported(status: dict[str, Any] | None) -> bool:
    """Whether a container's status is one a runner reported (running, terminated, or backing off)."""
    state = (status or {}).get("state") or {}
    return "running" in state or "terminated" in state or (state.get("waiting") or {}).get("reason") in _RUNNER_WAITING


def _never_started(status: dict[str, Any]) -> bool:
    """getPhase's `waiting`: a waiting container that has not terminated before."""
    return "waiting" in status["state"] and "terminated" not in (status.get("lastState") or {})


def ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def sync(cluster: Cluster, pod: dict[str, Any], host_ip: str | None, pod_ip: str) -> dict[str, Any]:
    """Write the status the node's kubelet gives the bound `pod` now (see the module docstring)."""
    meta, spec = pod["metadata"], pod["spec"]
    namespace, old = meta["namespace"], pod.get("status") or {}
    stamp = now()
    containers = spec.get("containers") or []
    previous = {s["name"]: s for s in old.get("containerStatuses") or []}
    checked, failed_mount = _host_paths(node_agent(cluster, spec.get("nodeName")), meta.get("uid", ""))
    unmounted = failed_mount or next((m for v in spec.get("volumes") or []
                                      if (m := _missing_volume(cluster, namespace, v))), None)
    runner = played(cluster, pod)
    built = built_images(cluster)
    statuses = []
    for container in containers:
        name, image = container.get("name"), container.get("image", "")
        state: dict[str, Any]
        if unmounted or not checked:
            state = {"waiting": {"reason": "ContainerCreating"}}
        elif normalise(image) not in NODE_IMAGES and normalise(image) not in built:
            attempts = ((previous.get(name) or {}).get("state") or {}).get("waiting", {}).get("reason")
            if attempts in ("ErrImagePull", "ImagePullBackOff"):
                state = {"waiting": {"reason": "ImagePullBackOff",
                                     "message": f'Back-off pulling image "{image}"'}}
                cluster.record_event(pod, "BackOff", f'Back-off pulling image "{image}"', "kubelet", "Normal")
                cluster.record_event(pod, "Failed", "Error: ImagePullBackOff", "kubelet", "Warning")
            else:
                state = {"waiting": {"reason": "ErrImagePull", "message": _pull_message(image)}}
                cluster.record_event(pod, "Pulling", f'Pulling image "{image}"', "kubelet")
                cluster.record_event(pod, "Failed", f'Failed to pull image "{image}": {_pull_message(image)}',
                                     "kubelet", "Warning")
                cluster.record_event(pod, "Failed", "Error: ErrImagePull", "kubelet", "Warning")
        elif message := _config_error(cluster, namespace, container):
            state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
            cluster.record_event(pod, "Failed", f"Error: {message}", "kubelet", "Warning")
        elif runner and _reported(previous.get(name)):
            statuses.append(previous[name])  # the runner's report
            continue
        elif runner:
            state = {"waiting": {"reason": "ContainerCreating"}}  # until the runner reports it
        else:
            running = ((previous.get(name) or {}).get("state") or {}).get("running")
            state = {"running": running or {"startedAt": stamp}}
            if not running:
                cluster.record_event(pod, "Started", f"Started container {name}", "kubelet")
        status = {"name": name, "image": image, "imageID": "", "ready": "running" in state,
                  "started": "running" in state, "restartCount": 0, "state": state}
        if "running" in state:
            status["containerID"] = (previous.get(name) or {}).get("containerID") or f"containerd://{random_suffix(64)}"
        statuses.append(status)
    if unmounted:
        cluster.record_event(pod, "FailedMount", unmounted, "kubelet", "Warning")

    def condition(kind: str, true: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        before = next((c for c in old.get("conditions") or [] if c.get("type") == kind), {})
        value = "True" if true else "False"
        found = {"type": kind, "status": value, "lastProbeTime": None,
                 "lastTransitionTime": before.get("lastTransitionTime") if before.get("status") == value else stamp}
        return {**found, **({"reason": reason, "message": message} if reason else {})}

    unready = [s["name"] for s in statuses if not s.get("ready")]
    why = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]") if unready else ("", "")
    pod["status"] = {
        "phase": "Pending" if any(_never_started(s) for s in statuses) else "Running",
        "conditions": [condition("PodReadyToStartContainers", checked and not unmounted),
                       condition("Initialized", True),
                       condition("Ready", not unready, *why), condition("ContainersReady", not unready, *why),
                       condition("PodScheduled", True)],
        "containerStatuses": statuses, "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": old.get("startTime") or stamp, "qosClass": scheduling.qos_class(spec)}
    if host_ip:
        pod["status"]["hostIP"] = host_ip
    return pod if pod["status"] == old else cluster.write_status(cluster.core("pods"), pod)
