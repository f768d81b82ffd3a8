"""Cordoning and draining nodes (`kubectl cordon`, `drain`, `uncordon`).

- Cordon: kubectl sets `spec.unschedulable` with a strategic merge patch. The node lifecycle
  controller then adds the `node.kubernetes.io/unschedulable:NoSchedule` taint (and removes it on
  uncordon), as its NoSchedule tainting pass does; here at once, not a moment later.
- Scheduling: the default scheduler's NodeUnschedulable filter, `schedulable`: no pod goes to an
  unschedulable node unless it tolerates that taint (DaemonSet pods do: their controller adds the
  toleration, so they stay on a drained node).
- Drain: kubectl POSTs a policy/v1 `Eviction` to `pods/NAME/eviction` for each pod on the node,
  then polls each pod until GET says NotFound. `evict` is the apiserver's eviction subresource:
  an eviction the pod's PodDisruptionBudget forbids is refused with 429 (lab.cluster.disruption),
  which kubectl retries until its timeout. Simplified: an allowed eviction deletes the pod at once
  (no grace period, no `Terminating`); its ReplicaSet then replaces it on a schedulable node.
"""
from __future__ import annotations

from typing import Any

from lab.cluster import disruption, errors
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.store import ResourceType, now

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def tolerates(tolerations: list[dict[str, Any]] | None, key: str, effect: str) -> bool:
    """Whether a pod's tolerations tolerate a taint with this key, effect and no value."""
    def matches(toleration: dict[str, Any]) -> bool:
        if toleration.get("effect") not in (None, "", effect):
            return False
        if toleration.get("operator") == "Exists":
            return toleration.get("key") in (None, "", key)
        return toleration.get("key") == key and not toleration.get("value")
    return any(matches(t) for t in tolerations or [])


def schedulable(node: dict[str, Any], pod_spec: dict[str, Any]) -> bool:
    """The scheduler's NodeUnschedulable filter: may a pod with this spec go to this node?"""
    return not (node.get("spec") or {}).get("unschedulable") or tolerates(
        pod_spec.get("tolerations"), UNSCHEDULABLE_TAINT, "NoSchedule")


class NodeLifecycleController(Controller):
    """Keeps the unschedulable taint in step with `spec.unschedulable`."""

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) != ("", "nodes"):
            return
        spec = obj.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != UNSCHEDULABLE_TAINT]
        tainted = len(taints) != len(spec.get("taints") or [])
        if bool(spec.get("unschedulable")) == tainted:
            return
        if spec.get("unschedulable"):
            taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now()})
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints")
        cluster.write_status(resource, obj)


def evict(cluster: Cluster, namespace: str, name: str, eviction: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """POST pods/NAME/eviction: delete the pod (see the module docstring) and answer a Success Status."""
    if (eviction.get("metadata") or {}).get("name") != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    dry_run = dry_run or "All" in ((eviction.get("deleteOptions") or {}).get("dryRun") or [])
    disruption.check_eviction(cluster, namespace, name, dry_run)
    cluster.delete(cluster.core("pods"), namespace, name, dry_run)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
