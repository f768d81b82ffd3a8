"""StatefulSets, as the apiserver defaults and validates them and the StatefulSet controller
(pkg/controller/statefulset) runs them, with the pods and kubelets of `workloads`.

- Defaults (apps/v1 SetDefaults_StatefulSet): replicas 1, podManagementPolicy OrderedReady,
  updateStrategy RollingUpdate with partition 0, revisionHistoryLimit 10, and from 1.27
  persistentVolumeClaimRetentionPolicy Retain/Retain; volumeClaimTemplates get volumeMode
  Filesystem. An update may change only replicas, template, updateStrategy,
  persistentVolumeClaimRetentionPolicy, minReadySeconds (and ordinals from 1.27): anything else is
  422 Forbidden with the apiserver's message.
- Revisions: a ControllerRevision `<name>-<hash>` per pod template (revision numbers count up,
  owned by the StatefulSet); `status.updateRevision` names the template's, `currentRevision`
  the one all pods ran before the rolling update completed.
- Pods `<name>-0` .. `<name>-(replicas-1)`, labelled `controller-revision-hash`,
  `statefulset.kubernetes.io/pod-name` (and `apps.kubernetes.io/pod-index` from 1.28), with
  hostname and subdomain (serviceName) set, and a PVC `<template>-<name>-<ordinal>` per
  volumeClaimTemplate created before the pod and kept after it. OrderedReady: one pod created at
  a time, in ordinal order, each once the previous is ready; scaled down highest ordinal first.
  Parallel: all at once. RollingUpdate: pods at ordinals >= partition not at the update revision
  are replaced one at a time, highest first; OnDelete: only a deleted pod comes back updated.
- Status: observedGeneration, replicas, readyReplicas, currentReplicas, updatedReplicas,
  availableReplicas, currentRevision, updateRevision, collisionCount; what `kubectl rollout
  status statefulset/NAME` and `helm --wait` read.
Each step happens `ready_delay` seconds after the previous one; pods are scheduled by
`scheduling` and ready when `kubelet` says so (retried while not); a pod the apiserver refuses is a
FailedCreate Event.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from lab.cluster import errors
from lab.cluster.cluster import Cluster
from lab.cluster.selectors import matches_label_selector

if TYPE_CHECKING:
    from lab.cluster.workloads import WorkloadController

# Spec fields an update may change, per apiserver version (ValidateStatefulSetUpdate).
_MUTABLE = ("replicas", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
_MUTABLE_SINCE_1_27 = _MUTABLE[:1] + ("ordinals",) + _MUTABLE[1:]


def _minor(cluster: Cluster) -> int:
    return int(cluster.registry.kube_version.split(".")[1])


def admit(cluster: Cluster, sts: dict[str, Any], old: dict[str, Any] | None) -> None:
    """The apiserver's defaults, then its update validation (see the module docstring)."""
    spec = sts.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    if _minor(cluster) >= 27:
        policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        policy.setdefault("whenDeleted", "Retain")
        policy.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {"phase": "Pending"})
    if old is None:
        return
    mutable = _MUTABLE_SINCE_1_27 if _minor(cluster) >= 27 else _MUTABLE
    fixed = [{k: v for k, v in s.items() if k not in mutable} for s in (spec, old.get("spec") or {})]
    if fixed[0] != fixed[1]:
        names = [f"'{name}'" for name in mutable]
        raise errors.forbidden("StatefulSet", "apps", sts["metadata"]["name"], "spec",
                               f"updates to statefulset spec for fields other than {', '.join(names[:-1])} "
                               f"and {names[-1]} are forbidden")


def _ordinal(sts: dict[str, Any], pod: dict[str, Any]) -> int | None:
    prefix, _, number = pod["metadata"]["name"].rpartition("-")
    return int(number) if prefix == sts["metadata"]["name"] and number.isdigit() else None


def _revisions(cluster: Cluster, sts: dict[str, Any]) -> tuple[dict, dict]:
    """The current and update ControllerRevisions (the update one created for a new template)."""
    from lab.cluster.workloads import owned_by, owner_ref, template_hash

    resource = cluster.resource("apps", "v1", "controllerrevisions")
    meta, template = sts["metadata"], sts["spec"].get("template") or {}
    owned = [r for r in cluster.store.list(resource, meta["namespace"]) if owned_by(r, sts)]
    name = f"{meta['name']}-{template_hash(template)}"
    update = next((r for r in owned if r["metadata"]["name"] == name), None)
    latest = max((r.get("revision", 0) for r in owned), default=0)
    if update is None or update.get("revision", 0) < latest:
        labels = dict(((sts["spec"].get("selector") or {}).get("matchLabels") or {}),
                      **{"controller.kubernetes.io/hash": name.rpartition("-")[2]})
        revision = {"metadata": {"name": name, "labels": labels, "ownerReferences": [owner_ref(sts)]},
                    "data": {"spec": {"template": {**copy.deepcopy(template), "$patch": "replace"}}},
                    "revision": latest + 1}
        if update is None:
            update = cluster.create(resource, revision, meta["namespace"])
        else:  # back to an earlier template: that revision becomes the newest (as a rollback does)
            update["revision"] = latest + 1
            update = cluster.write_status(resource, update)
    current_name = (sts.get("status") or {}).get("currentRevision") or name
    current = next((r for r in owned if r["metadata"]["name"] == current_name), update)
    return current, update


def _template_of(revision: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(revision["data"]["spec"]["template"])
    template.pop("$patch", None)
    return template


def reconcile(workloads: WorkloadController, cluster: Cluster, sts: dict[str, Any]) -> None:
    """One pass of the StatefulSet controller; schedules the next while the set is not converged."""
    meta, spec = sts["metadata"], sts["spec"]
    pods_resource = cluster.core("pods")
    current, update = _revisions(cluster, sts)
    wanted, parallel = spec.get("replicas", 1), spec.get("podManagementPolicy") == "Parallel"
    rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
    partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0) if rolling else 0
    selector = spec.get("selector")
    pods = {n: p for p in cluster.store.list(pods_resource, meta["namespace"]) if (n := _ordinal(sts, p)) is not None
            and matches_label_selector(selector, p["metadata"].get("labels") or {})}
    busy = False
    for ordinal in sorted(pods, reverse=True):
        if ordinal >= wanted and (parallel or all(_ready(pods[o]) for o in pods if o < ordinal)):
            _delete_pod(cluster, sts, pods.pop(ordinal))
            busy = True
            if not parallel:
                break
    for ordinal in range(wanted):
        if ordinal in pods:
            continue
        if not parallel and (busy or not all(_ready(pods[o]) for o in pods if o < ordinal)):
            busy = True
            break
        revision = current if rolling and ordinal < partition else update
        busy = True
        try:
            pods[ordinal] = _create_pod(workloads, cluster, sts, ordinal, revision)
        except errors.ApiError as exc:  # refused by the apiserver (a missing ServiceAccount)
            cluster.record_event(sts, "FailedCreate", f"create Pod {meta['name']}-{ordinal} in StatefulSet "
                                 f"{meta['name']} failed error: {exc.message}", "statefulset-controller", "Warning")
            break
        if not parallel:
            break
    for ordinal, pod in pods.items():
        if not pod["spec"].get("nodeName"):
            node, why = workloads.pick_node(cluster, meta["namespace"], pod["spec"], [])
            pods[ordinal] = workloads.bind(cluster, pod, node) if node else workloads.unschedulable(cluster, pod, why)
        elif not _ready(pod):
            pods[ordinal] = workloads.sync(cluster, pod)
    update_name = update["metadata"]["name"]
    if rolling and not busy and all(_ready(p) for p in pods.values()):
        stale = [o for o in pods if o >= partition and _revision_of(pods[o]) != update_name]
        if stale:
            _delete_pod(cluster, sts, pods.pop(max(stale)))
            busy = True
    ready = sum(_ready(p) for p in pods.values())
    updated = sum(_revision_of(p) == update_name for p in pods.values())
    status = {"observedGeneration": meta.get("generation", 1), "replicas": len(pods), "availableReplicas": ready,
              "currentRevision": current["metadata"]["name"], "updateRevision": update_name, "collisionCount": 0}
    if rolling and updated == len(pods) == ready:
        status["currentRevision"] = update_name
    at_current = sum(_revision_of(p) == status["currentRevision"] for p in pods.values())
    status.update({k: v for k, v in (("readyReplicas", ready), ("currentReplicas", at_current),
                                     ("updatedReplicas", updated)) if v})
    sts["status"] = status
    cluster.write_status(cluster.resource("apps", "v1", "statefulsets"), sts)
    if busy or ready < len(pods):
        workloads.schedule(cluster, cluster.resource("apps", "v1", "statefulsets"), meta["namespace"], meta["name"])


def _delete_pod(cluster: Cluster, sts: dict[str, Any], pod: dict[str, Any]) -> None:
    name = pod["metadata"]["name"]
    cluster.delete(cluster.core("pods"), pod["metadata"]["namespace"], name)
    cluster.record_event(sts, "SuccessfulDelete", f"delete Pod {name} in StatefulSet {sts['metadata']['name']} "
                         "successful", "statefulset-controller")


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _revision_of(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("labels") or {}).get("controller-revision-hash")


def _create_pod(workloads: WorkloadController, cluster: Cluster, sts: dict[str, Any], ordinal: int,
                revision: dict[str, Any]) -> dict[str, Any]:
    """Pod `<name>-<ordinal>` of the revision's template, its claims created first."""
    meta, spec = sts["metadata"], sts["spec"]
    name = f"{meta['name']}-{ordinal}"
    template = _template_of(revision)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update({"controller-revision-hash": revision["metadata"]["name"],
                   "statefulset.kubernetes.io/pod-name": name})
    if _minor(cluster) >= 28:
        labels["apps.kubernetes.io/pod-index"] = str(ordinal)
    pod_spec = template.setdefault("spec", {})
    pod_spec.update(hostname=name, subdomain=spec.get("serviceName", ""))
    volumes = pod_spec.setdefault("volumes", [])
    claims = cluster.core("persistentvolumeclaims")
    for claim in spec.get("volumeClaimTemplates") or []:
        claim_name = f"{claim['metadata']['name']}-{name}"
        volumes[:] = [v for v in volumes if v.get("name") != claim["metadata"]["name"]]
        volumes.append({"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}})
        if cluster.store.get(claims, meta["namespace"], claim_name) is None:
            claim_labels = dict((claim["metadata"].get("labels") or {}),
                                **((spec.get("selector") or {}).get("matchLabels") or {}))
            cluster.create(claims, {"metadata": {"name": claim_name, "labels": claim_labels},
                                    "spec": copy.deepcopy(claim.get("spec") or {})}, meta["namespace"])
    node, why = workloads.pick_node(cluster, meta["namespace"], pod_spec, [])
    pod = workloads.create_pod(cluster, sts, template, node, name=name, why=why)
    cluster.record_event(sts, "SuccessfulCreate", f"create Pod {name} in StatefulSet {meta['name']} successful",
                         "statefulset-controller")
    return pod
