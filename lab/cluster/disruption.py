"""PodDisruptionBudgets' status, as the disruption controller (pkg/controller/disruption) keeps it:
`expectedPods`, `currentHealthy` (ready pods the selector picks), `desiredHealthy`,
`disruptionsAllowed`, `observedGeneration` and the `DisruptionAllowed` condition
(SufficientPods/InsufficientPods).

desiredHealthy: an integer minAvailable as is (expectedPods: the pods selected); a percentage
minAvailable, or a maxUnavailable, against the replicas of the selected pods' controllers (each
counted once), percentages rounded up. The controller reacts to pod events; here each budget is
recomputed every `RESYNC` seconds while it exists, and written only when its status changes.

Evictions (`check_eviction`, for the eviction subresource: pkg/registry/core/pod/storage/eviction.go,
https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/): a pod that is Pending,
finished or being deleted may always go; with more than one budget selecting the pod, 500; with
one whose `disruptionsAllowed` is 0, 429 TooManyRequests `Cannot evict pod as it would violate the
pod's disruption budget.` (cause DisruptionBudget), which `kubectl drain` retries until its
timeout. A running pod that is not ready may go when the budget is healthy enough (the default
unhealthyPodEvictionPolicy IfHealthyBudget, or AlwaysAllow). The budget is evaluated afresh.
"""
from __future__ import annotations

import math
from typing import Any

from lab.cluster import errors
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.selectors import matches_label_selector
from lab.cluster.store import ResourceType, now

RESYNC = 1.0
_SCALABLE = {"ReplicaSet": ("apps", "v1", "replicasets"), "StatefulSet": ("apps", "v1", "statefulsets"),
             "ReplicationController": ("", "v1", "replicationcontrollers")}


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _scaled(value: Any, total: int) -> int:
    """An int-or-percent against `total`, rounded up (intstr.GetScaledValueFromIntOrPercent, roundUp)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _controllers_replicas(cluster: Cluster, namespace: str, pods: list[dict[str, Any]]) -> int:
    """The summed `spec.replicas` of the pods' controllers, each counted once."""
    owners = {(r["kind"], r["name"]) for p in pods for r in p["metadata"].get("ownerReferences") or []
              if r.get("controller") and r.get("kind") in _SCALABLE}
    found = (cluster.store.get(cluster.resource(*_SCALABLE[kind]), namespace, name) for kind, name in owners)
    return sum((owner or {}).get("spec", {}).get("replicas", 0) for owner in found)


def status(cluster: Cluster, budget: dict[str, Any]) -> dict[str, Any]:
    """The status the disruption controller writes for `budget` (conditions without their timestamp)."""
    spec, namespace = budget.get("spec") or {}, budget["metadata"]["namespace"]
    pods = [p for p in cluster.store.list(cluster.core("pods"), namespace)
            if spec.get("selector") is not None
            and matches_label_selector(spec["selector"], p["metadata"].get("labels") or {})]
    healthy = sum(_ready(p) for p in pods)
    if "maxUnavailable" in spec:
        expected = _controllers_replicas(cluster, namespace, pods)
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    elif isinstance(spec.get("minAvailable"), str):
        expected = _controllers_replicas(cluster, namespace, pods)
        desired = _scaled(spec["minAvailable"], expected)
    else:
        expected, desired = len(pods), int(spec.get("minAvailable", 0))
    allowed = max(0, healthy - desired)
    generation = budget["metadata"].get("generation", 1)
    return {"observedGeneration": generation, "disruptionsAllowed": allowed, "currentHealthy": healthy,
            "desiredHealthy": desired, "expectedPods": expected, "conditions": [{
                "type": "DisruptionAllowed", "status": "True" if allowed else "False",
                "reason": "SufficientPods" if allowed else "InsufficientPods", "message": "",
                "observedGeneration": generation}]}


class DisruptionController(Controller):
    def start(self, cluster: Cluster) -> None:
        """Resync the budgets there are at start (restored from a state file)."""
        resource = cluster.resource("policy", "v1", "poddisruptionbudgets")
        for budget in cluster.store.list(resource):
            meta = budget["metadata"]
            self._sync(cluster, resource, meta["namespace"], meta["name"], meta["uid"])

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) == ("policy", "poddisruptionbudgets"):
            meta = obj["metadata"]
            self._sync(cluster, resource, meta["namespace"], meta["name"], meta["uid"] if old is None else None)

    def _sync(self, cluster: Cluster, resource: ResourceType, namespace: str, name: str, uid: str | None) -> None:
        """Write the budget's status if it changed; with `uid`, keep resyncing that budget while it exists."""
        budget = cluster.store.get(resource, namespace, name)
        if budget is None or (uid and budget["metadata"]["uid"] != uid):
            return
        wanted, current = status(cluster, budget), budget.get("status") or {}
        old_conditions = {c["type"]: c for c in current.get("conditions") or []}
        for condition in wanted["conditions"]:
            before = old_conditions.get(condition["type"], {})
            condition["lastTransitionTime"] = before.get("lastTransitionTime") if \
                before.get("status") == condition["status"] else now()
        if wanted != current:
            budget["status"] = wanted
            cluster.write_status(resource, budget)
        if uid:
            cluster.later(RESYNC, lambda: self._sync(cluster, resource, namespace, name, uid))


def check_eviction(cluster: Cluster, namespace: str, name: str, dry_run: bool) -> None:
    """Refuse evicting the pod when its PodDisruptionBudget forbids it (see the module docstring); else
    count the disruption on the budget (unless `dry_run`). Raises ApiError; the caller deletes the pod."""
    pod = cluster.get(cluster.core("pods"), namespace, name)
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
        return
    resource = cluster.resource("policy", "v1", "poddisruptionbudgets")
    labels = pod["metadata"].get("labels") or {}
    budgets = [b for b in cluster.store.list(resource, namespace) if (b.get("spec") or {}).get("selector")
               is not None and matches_label_selector(b["spec"]["selector"], labels)]
    if not budgets:
        return
    if len(budgets) > 1:
        raise errors.ApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the "
                              "eviction subresource does not support.")
    budget = budgets[0]
    current = status(cluster, budget)
    policy = budget["spec"].get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
    if not _ready(pod) and (policy == "AlwaysAllow" or current["currentHealthy"] >= current["desiredHealthy"]):
        return
    if current["disruptionsAllowed"] <= 0:
        cause = (f"The disruption budget {budget['metadata']['name']} needs {current['desiredHealthy']} healthy pods "
                 f"and has {current['currentHealthy']} currently")
        raise errors.ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption "
                              "budget.", {"causes": [{"reason": "DisruptionBudget", "message": cause}]})
    if not dry_run:
        current["disruptionsAllowed"] -= 1
        current["disruptedPods"] = {**((budget.get("status") or {}).get("disruptedPods") or {}), name: now()}
        budget["status"] = {**(budget.get("status") or {}), **{k: v for k, v in current.items() if k != "conditions"}}
        cluster.write_status(resource, budget)
