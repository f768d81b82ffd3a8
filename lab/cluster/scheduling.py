"""The default scheduler's filters and its FailedScheduling message
(https://kubernetes.io/docs/concepts/scheduling-eviction/, pkg/scheduler/framework/plugins/*,
pkg/scheduler/framework/types.go FitError.Error).

- VolumeBinding PreFilter: a claim the pod uses that does not exist (`persistentvolumeclaim "N"
  not found`) or is unbound with an Immediate class (`pod has unbound immediate
  PersistentVolumeClaims`) fails every node.
- Per node, first failure wins, in the default plugin order: NodeUnschedulable (`node(s) were
  unschedulable`, unless the pod tolerates the unschedulable taint), TaintToleration (a NoSchedule
  or NoExecute taint not tolerated: `node(s) had untolerated taint {KEY: VALUE}`), NodeAffinity
  (nodeSelector and requiredDuringScheduling node affinity: `node(s) didn't match Pod's node
  affinity/selector`), NodeResourcesFit (the pod's requests plus those of the pods already on the
  node beyond the node's allocatable: `Insufficient cpu`/`memory`/`pods`; requests default to
  limits, as the apiserver defaults them).
- The message: `0/N nodes are available: ` the counted reasons, sorted, then the preemption
  PostFilter's verdict (`Preemption is not helpful for scheduling` for unresolvable reasons, `No
  preemption victims found for incoming pod` for resources: the lab's pods all share one priority).
Node allocatable, when a node's status has none: `ALLOCATABLE` (posted by `workloads` as the
kubelet posts its node status).
"""
from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from lab.cluster.cluster import Cluster
from lab.cluster.nodes import UNSCHEDULABLE_TAINT, tolerates

ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "n": Decimal("1e-9"),
             "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "P": 10**15, "E": 10**18}
_RESOLVABLE = {"Insufficient cpu", "Insufficient memory", "Insufficient pods"}


def quantity(text: Any) -> Decimal:
    """A resource.Quantity as a number (`100m` = 0.1, `1Gi` = 2**30)."""
    text = str(text)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix) and text[:-len(suffix)]:
            return Decimal(text[:-len(suffix)]) * Decimal(_SUFFIXES[suffix])
    return Decimal(text)


def requests(pod_spec: dict[str, Any]) -> dict[str, Decimal]:
    """The pod's effective requests: the sum over containers, at least each init container's."""
    def of(container: dict[str, Any]) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: quantity(value) for name, value in merged.items()}
    total: dict[str, Decimal] = {}
    for container in pod_spec.get("containers") or []:
        for name, value in of(container).items():
            total[name] = total.get(name, Decimal(0)) + value
    for container in pod_spec.get("initContainers") or []:
        for name, value in of(container).items():
            total[name] = max(total.get(name, Decimal(0)), value)
    return total


def qos_class(pod_spec: dict[str, Any]) -> str:
    """The pod's QoS class (pkg/apis/core/helper/qos): Guaranteed when every container's cpu and memory
    limits equal its requests, BestEffort when none has any, else Burstable."""
    containers = (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all(name in (r.get("limits") or {}) and quantity({**r.get("limits", {}), **(r.get("requests") or {})}[name])
            == quantity(r["limits"][name]) for name in ("cpu", "memory")) for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def _expression_matches(expression: dict[str, Any], value: str | None) -> bool:
    operator, values = expression.get("operator"), expression.get("values") or []
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and value.lstrip("-").isdigit() and values:
        return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])
    return False


def _affinity_matches(node: dict[str, Any], pod_spec: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    return any(all(_expression_matches(e, labels.get(e.get("key"))) for e in term.get("matchExpressions") or [])
               and all(_expression_matches(e, fields.get(e.get("key"))) for e in term.get("matchFields") or [])
               and (term.get("matchExpressions") or term.get("matchFields")) for term in terms)


def _untolerated(node: dict[str, Any], pod_spec: dict[str, Any]) -> dict[str, Any] | None:
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in pod_spec.get("tolerations") or []):
            return taint
    return None


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if toleration.get("effect") not in (None, "", taint.get("effect")):
        return False
    if toleration.get("key") not in (None, "", taint.get("key")):
        return False
    if not toleration.get("key") and toleration.get("operator") != "Exists":
        return False
    if toleration.get("operator") == "Exists":
        return True
    return (toleration.get("value") or "") == (taint.get("value") or "")


def allocatable(node: dict[str, Any]) -> dict[str, Decimal]:
    found = (node.get("status") or {}).get("allocatable") or ALLOCATABLE
    return {name: quantity(value) for name, value in found.items()}


def _node_reason(cluster: Cluster, node: dict[str, Any], pod_spec: dict[str, Any],
                 pods_on: list[dict[str, Any]]) -> str | None:
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(
            pod_spec.get("tolerations"), UNSCHEDULABLE_TAINT, "NoSchedule"):
        return "node(s) were unschedulable"
    if (taint := _untolerated(node, pod_spec)) is not None:
        return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    if not _affinity_matches(node, pod_spec):
        return "node(s) didn't match Pod's node affinity/selector"
    capacity, wanted = allocatable(node), requests(pod_spec)
    used: dict[str, Decimal] = {"pods": Decimal(len(pods_on))}
    for pod in pods_on:
        for name, value in requests(pod["spec"]).items():
            used[name] = used.get(name, Decimal(0)) + value
    wanted["pods"] = Decimal(1)
    for name in ("cpu", "memory", "pods"):
        if wanted.get(name) and used.get(name, Decimal(0)) + wanted[name] > capacity.get(name, Decimal(0)):
            return f"Insufficient {name}"
    return None


def _claims_problem(cluster: Cluster, namespace: str, pod_spec: dict[str, Any]) -> str | None:
    claims, classes = cluster.core("persistentvolumeclaims"), cluster.resource("storage.k8s.io", "v1", "storageclasses")
    for volume in pod_spec.get("volumes") or []:
        if not (ref := volume.get("persistentVolumeClaim")):
            continue
        claim = cluster.store.get(claims, namespace, ref.get("claimName"))
        if claim is None:
            return f'persistentvolumeclaim "{ref.get("claimName")}" not found'
        if (claim.get("status") or {}).get("phase") == "Bound":
            continue
        found = cluster.store.get(classes, None, claim["spec"].get("storageClassName") or "")
        if found is None or found.get("volumeBindingMode", "Immediate") == "Immediate":
            return "pod has unbound immediate PersistentVolumeClaims"
    return None


def place(cluster: Cluster, namespace: str, pod_spec: dict[str, Any], names: list[str],
          placed: list[str]) -> tuple[str | None, str]:
    """The node for a pod (the fitting one with fewest of `placed`), or None and the FailedScheduling message."""
    nodes = [n for name in names if (n := cluster.store.get(cluster.core("nodes"), None, name))]
    prefix = f"0/{len(nodes)} nodes are available:"
    if problem := _claims_problem(cluster, namespace, pod_spec):
        return None, (f"{prefix} {problem}. preemption: {prefix} {len(nodes)} Preemption is not helpful "
                      "for scheduling.")
    running = [p for p in cluster.store.list(cluster.core("pods"))
               if p["spec"].get("nodeName") and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    reasons: dict[str, str | None] = {}
    for node in nodes:
        name = node["metadata"]["name"]
        reasons[name] = _node_reason(cluster, node, pod_spec, [p for p in running if p["spec"]["nodeName"] == name])
    fitting = [name for name, reason in reasons.items() if reason is None]
    if fitting:
        return min(fitting, key=placed.count), ""
    counted = Counter(reasons.values())
    listed = ", ".join(sorted(f"{count} {reason}" for reason, count in counted.items()))
    verdicts = Counter("No preemption victims found for incoming pod" if r in _RESOLVABLE
                       else "Preemption is not helpful for scheduling" for r in reasons.values())
    after = ", ".join(sorted(f"{count} {verdict}" for verdict, count in verdicts.items()))
    return None, f"{prefix} {listed}. preemption: {prefix} {after}."
