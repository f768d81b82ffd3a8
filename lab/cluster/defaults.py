"""Defaults the apiserver sets on the kinds the charts and tasks write, before validation.

From the defaulting functions (pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go,
pkg/apis/batch/v1/defaults.go) and the admission plugins every cluster runs (ServiceAccount,
Priority, DefaultTolerationSeconds), for Pods and the pod templates of Deployments, ReplicaSets,
DaemonSets, StatefulSets, Jobs and CronJobs, and the specs of Deployments, ReplicaSets,
DaemonSets, Jobs and CronJobs. A strategy without a `type` gets `RollingUpdate` and its
defaults, as SetDefaults_Deployment and SetDefaults_DaemonSet do: so `kubectl apply` of a
manifest whose strategy has only `rollingUpdate` (the current binderhub chart's) finds a `type`
it did not send and prints `configured` each time, as on a real cluster. A Job gets its generated
selector and labels, as the Job strategy sets them. The other kinds' specs are defaulted by their
own controllers (`services`, `controllers`, `statefulsets`, `volumes`). Not done: the service
account token volume, and requests copied from limits.
"""
from __future__ import annotations

from typing import Any

from lab.cluster import apis
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.store import ResourceType

_TEMPLATES = {("apps", "deployments"), ("apps", "replicasets"), ("apps", "daemonsets"), ("apps", "statefulsets"),
              ("batch", "jobs")}
_FILE_MODE = 420  # 0644, the volume sources' DefaultMode
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_NOT_READY = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def pull_policy(image: str) -> str:
    """SetDefaults_Container: Always for `:latest` or no tag, else IfNotPresent (a digest counts as pinned)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _container(container: dict[str, Any]) -> None:
    container.setdefault("imagePullPolicy", pull_policy(container.get("image") or ""))
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for name in _PROBES:
        probe = container.get(name)
        if probe:
            for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                               ("failureThreshold", 3)):
                probe.setdefault(key, value)
            if "httpGet" in probe:
                probe["httpGet"].setdefault("path", "/")
                probe["httpGet"].setdefault("scheme", "HTTP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref:
            field_ref.setdefault("apiVersion", "v1")


def pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec and what it reaches (containers, ports, probes, volumes)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            _container(container)
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap", "downwardAPI", "projected"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", _FILE_MODE)
        if isinstance(volume.get("hostPath"), dict):
            volume["hostPath"].setdefault("type", "")


def pod(obj: dict[str, Any]) -> None:
    """A Pod: its spec's defaults, then SetDefaults_Pod's and the admission plugins'."""
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for key in _NOT_READY:
        if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") or
                   not t.get("key") and t.get("operator") == "Exists" for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def _template(template: Any) -> None:
    if isinstance(template, dict):
        pod_spec(template.setdefault("spec", {}))


def _rolling(strategy: dict[str, Any], max_unavailable: Any, max_surge: Any) -> None:
    """A strategy's type (RollingUpdate when unset) and, for RollingUpdate, its rollingUpdate defaults."""
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        strategy["rollingUpdate"] = rolling
        rolling.setdefault("maxUnavailable", max_unavailable)
        rolling.setdefault("maxSurge", max_surge)


def _apps_spec(plural: str, spec: dict[str, Any]) -> None:
    """SetDefaults_Deployment, SetDefaults_ReplicaSet and SetDefaults_DaemonSet (apps/v1)."""
    if plural in ("deployments", "replicasets"):
        spec.setdefault("replicas", 1)
    if plural == "deployments":
        _rolling(spec.setdefault("strategy", {}), "25%", "25%")
        spec.setdefault("progressDeadlineSeconds", 600)
    if plural == "daemonsets":
        _rolling(spec.setdefault("updateStrategy", {}), 1, 0)
    if plural in ("deployments", "daemonsets"):
        spec.setdefault("revisionHistoryLimit", 10)


def _job_spec(spec: dict[str, Any], uid: str | None, name: str, minor: int) -> None:
    """SetDefaults_Job, and the selector and labels the Job strategy generates (unless manualSelector)."""
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if minor >= 29:
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    if uid and not spec.get("manualSelector") and not spec.get("selector"):
        generated = {"batch.kubernetes.io/controller-uid": uid}
        spec["selector"] = {"matchLabels": generated}
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "job-name": name})


class Defaulter(Controller):
    """Sets the defaults above on every write, as the apiserver does before validation."""

    def __init__(self, kube_version: str = apis.DEFAULT):
        self.minor = apis.minor(kube_version)

    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        key = (resource.group, resource.plural)
        spec = obj.get("spec")
        if key == ("", "pods"):
            pod(obj)
        elif key == ("batch", "cronjobs") and isinstance(spec, dict):
            spec.setdefault("concurrencyPolicy", "Allow")
            spec.setdefault("suspend", False)
            spec.setdefault("successfulJobsHistoryLimit", 3)
            spec.setdefault("failedJobsHistoryLimit", 1)
            _template(((spec.get("jobTemplate") or {}).get("spec") or {}).get("template"))
        elif key in _TEMPLATES and isinstance(spec, dict):
            _template(spec.get("template"))
            if key[0] == "apps" and key[1] != "statefulsets":
                _apps_spec(key[1], spec)
            if key == ("batch", "jobs"):
                meta = obj["metadata"]
                _job_spec(spec, meta.get("uid") if old is None else None, meta.get("name", ""), self.minor)
