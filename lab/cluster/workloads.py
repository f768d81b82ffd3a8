"""Deployments, ReplicaSets, DaemonSets and their Pods, as the controllers and kubelets of a
healthy cluster leave them, `ready_delay` seconds after each change (no container runs).

- Deployment controller: one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`
  and owned by the Deployment; a new template scales the old ReplicaSets to 0 (revision
  annotations count up, so `kubectl rollout history` and `helm --wait`'s new-ReplicaSet lookup
  work). Status: replicas, updated/ready/available replicas, observedGeneration, and the
  `Available` and `Progressing` conditions (those of a finished rollout once all pods are ready).
  A rolling update keeps old pods until new ones are ready (maxSurge/maxUnavailable, rounded as
  the controller rounds them); Recreate scales the old ReplicaSets to 0 first. A Deployment not
  complete for `progressDeadlineSeconds` gets Progressing=False, reason ProgressDeadlineExceeded
  (what `kubectl rollout status` stops on). A Deployment not converged resyncs every second.
- ReplicaSet controller: `spec.replicas` Pods named `<replicaset>-<5 chars>`; a Pod the apiserver
  refuses (its ServiceAccount missing: the ServiceAccount admission plugin's 403) is a FailedCreate
  Event `Error creating: ...`.
- DaemonSet controller: one Pod per node, with the tolerations the controller adds (so they stay
  on cordoned nodes); status numbers (desired/current/ready/updated/available).
- Pods no controller owns (KubeSpawner's): scheduled and synced by the kubelet as they are
  created, then synced every second while Pending (`_place_bare`).
- Scheduler: `scheduling.place` (filters, the FailedScheduling message); among fitting nodes the one
  with the fewest of its ReplicaSet's Pods (first in `--node` order on a tie); with none, it stays
  `Pending` (PodScheduled False, Unschedulable) and is retried on each resync.
- StatefulSets: see `statefulsets`, which uses this scheduler and kubelet.
- Kubelet: `kubelet.sync` (images, volumes, env), a pod IP from 10.244.0.0/16; Ready only when
  it says so (or, in the pods a runner plays, when the runner reports it: a pod's readiness
  written through its status subresource wakes its controller, as the informers do). Nodes get
  `scheduling.ALLOCATABLE` as capacity/allocatable (the kubelet's node status). A Pod deleted
  through the API (or evicted) is replaced by its controller.
The specs' defaults are the apiserver's (`defaults`).
"""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import math
from datetime import datetime, timezone
from typing import Any

from lab.cluster import errors, kubelet, scheduling, statefulsets
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.nodes import UNSCHEDULABLE_TAINT
from lab.cluster.selectors import matches_label_selector
from lab.cluster.store import ResourceType, now

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# The tolerations the DaemonSet controller adds to its pods (AddOrUpdateDaemonPodTolerations).
_DAEMON_TOLERATIONS = [("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
                       ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                       ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                       ("node.kubernetes.io/pid-pressure", "NoSchedule"), (UNSCHEDULABLE_TAINT, "NoSchedule")]


def template_hash(template: dict[str, Any]) -> str:
    """A stable pod-template-hash (10 characters of the controller's safe alphabet)."""
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    chars = []
    for _ in range(10):
        digest, index = divmod(digest, len(_HASH_ALPHABET))
        chars.append(_HASH_ALPHABET[index])
    return "".join(chars)


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


# The Deployment's annotations the controller does not copy to its new ReplicaSet
# (pkg/controller/deployment/util/deployment_util.go annotationsToSkip).
_NOT_COPIED = frozenset({"kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision",
                         "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                         "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"})


def _copy_annotations(dep: dict[str, Any], replicaset: dict[str, Any]) -> bool:
    """Copy the Deployment's annotations to its new ReplicaSet, as copyDeploymentAnnotationsToReplicaSet
    does (deployment_util.go); whether any changed. `kubectl rollout undo` puts an old ReplicaSet's
    annotations back on the Deployment (kubectl rollback.go), so helm's ownership annotations survive it."""
    annotations = replicaset["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((dep["metadata"].get("annotations") or {})).items():
        if key not in _NOT_COPIED and annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def _revision(replicaset: dict[str, Any]) -> int:
    return int((replicaset["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        share = total * int(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


def _surge_and_unavailable(spec: dict[str, Any]) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down) in pods, as deployment/util ResolveFenceposts
    (both 0 makes maxUnavailable 1); (0, replicas) for Recreate."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0, spec["replicas"]
    rolling = strategy.get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), spec["replicas"], True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), spec["replicas"], False)
    return surge, (1 if surge == unavailable == 0 else min(unavailable, spec["replicas"]))


def _max_unavailable(spec: dict[str, Any]) -> int:
    return _surge_and_unavailable(spec)[1] if (spec.get("strategy") or {}).get("type") == "RollingUpdate" else 0


def _seconds_since(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


class WorkloadController(Controller):
    """Emulates the deployment, replicaset and daemonset controllers plus the kubelets."""

    def __init__(self, nodes: dict[str, str | None], ready_delay: float = 0.5):
        self.nodes = nodes  # node name -> InternalIP (or None)
        self.ready_delay = ready_delay
        self._next_pod_ip = 1
        self._queued: set[tuple[str, str | None, str]] = set()

    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) == ("", "pods") and old is None:
            _check_service_account(cluster, obj)
            # The pod strategy's PrepareForCreate (pkg/registry/core/pod/strategy.go): a new pod's
            # status is Pending with its QoS class, whatever the client sent.
            obj["status"] = {"phase": "Pending", "qosClass": scheduling.qos_class(obj.get("spec") or {})}
        elif (resource.group, resource.plural) == ("apps", "statefulsets"):
            statefulsets.admit(cluster, obj, old)

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if resource.group == "apps" and resource.plural in ("deployments", "daemonsets", "replicasets", "statefulsets"):
            self.schedule(cluster, resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        elif (resource.group, resource.plural) == ("", "pods") and old is None and not _controlled(obj) \
                and not obj["spec"].get("nodeName"):
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            cluster.later(0, lambda: self._place_bare(cluster, namespace, name, obj["metadata"]["uid"]))
        elif (resource.group, resource.plural) == ("", "pods") and old and kubelet.ready(obj) != kubelet.ready(old):
            self._requeue_owner(cluster, obj)  # a runner reported the pod (un)ready
        elif (resource.group, resource.plural) == ("", "nodes") and old is None:
            cluster.later(0, lambda: self._post_node_status(cluster, obj["metadata"]["name"]))
        elif (resource.group, resource.plural) == ("", "nodes") and not (obj.get("spec") or {}).get("unschedulable"):
            # A node takes pods (again): the scheduler retries the Pending ones.
            for pod in cluster.store.list(cluster.core("pods")):
                if not pod["spec"].get("nodeName"):
                    self._requeue_owner(cluster, pod)

    def _place_bare(self, cluster: Cluster, namespace: str, name: str, uid: str) -> None:
        """A pod no controller owns (e.g. one KubeSpawner creates): the scheduler places it, whatever
        its schedulerName (the lab's scheduler stands for z2jh's user-scheduler too), and its
        kubelet syncs it every second until its containers run or it is gone (as the kubelet retries
        a pod whose volumes or images are not there yet)."""
        pod = cluster.store.get(cluster.core("pods"), namespace, name)
        if pod is None or pod["metadata"].get("uid") != uid or pod["metadata"].get("deletionTimestamp"):
            return
        if not pod["spec"].get("nodeName"):
            node, why = self.pick_node(cluster, namespace, pod["spec"], [])
            pod = self.bind(cluster, pod, node) if node else self.unschedulable(cluster, pod, why)
        elif (pod.get("status") or {}).get("phase") == "Pending":
            pod = self.sync(cluster, pod)
        if (pod.get("status") or {}).get("phase") == "Pending":
            cluster.later(max(self.ready_delay, 1.0), lambda: self._place_bare(cluster, namespace, name, uid))

    @staticmethod
    def _post_node_status(cluster: Cluster, name: str) -> None:
        """The node's kubelet posts its capacity and allocatable (`scheduling.ALLOCATABLE`)."""
        node = cluster.store.get(cluster.core("nodes"), None, name)
        if node is not None and "allocatable" not in (node.get("status") or {}):
            node.setdefault("status", {}).update(capacity=dict(scheduling.ALLOCATABLE),
                                                 allocatable=dict(scheduling.ALLOCATABLE))
            cluster.write_status(cluster.core("nodes"), node)

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        """A Pod deleted through the API is replaced by its controller."""
        if (resource.group, resource.plural) == ("", "pods"):
            self._requeue_owner(cluster, obj)

    def _requeue_owner(self, cluster: Cluster, pod: dict[str, Any]) -> None:
        """Reconcile the Pod's controller soon: its Deployment, or else its ReplicaSet or DaemonSet."""
        namespace = pod["metadata"].get("namespace")
        for ref in pod["metadata"].get("ownerReferences") or []:
            plural = {"ReplicaSet": "replicasets", "DaemonSet": "daemonsets",
                      "StatefulSet": "statefulsets"}.get(ref.get("kind"))
            if plural is None:
                continue
            owner = cluster.store.get(cluster.resource("apps", "v1", plural), namespace, ref["name"])
            if owner is None:
                continue
            deployment = next((r for r in owner["metadata"].get("ownerReferences") or []
                               if r.get("kind") == "Deployment"), None)
            if deployment:
                self.schedule(cluster, cluster.resource("apps", "v1", "deployments"), namespace, deployment["name"])
            else:
                self.schedule(cluster, cluster.resource("apps", "v1", plural), namespace, ref["name"])

    def schedule(self, cluster: Cluster, resource: ResourceType, namespace: str | None, name: str,
                 delay: float | None = None) -> None:
        """Reconcile the object `ready_delay` (or `delay`) seconds from now, unless that is queued already."""
        key = (resource.plural, namespace, name)
        if key in self._queued:
            return
        self._queued.add(key)
        cluster.later(self.ready_delay if delay is None else delay,
                      lambda: self.reconcile(cluster, resource, namespace, name))

    def resync(self, cluster: Cluster, obj: dict[str, Any]) -> None:
        """Look at a workload not converged again in a second (as its pods' kubelets and the scheduler retry)."""
        plural = {"Deployment": "deployments", "DaemonSet": "daemonsets", "StatefulSet": "statefulsets",
                  "ReplicaSet": "replicasets"}[obj["kind"]]
        self.schedule(cluster, cluster.resource("apps", "v1", plural), obj["metadata"]["namespace"],
                      obj["metadata"]["name"], max(self.ready_delay, 1.0))

    def reconcile(self, cluster: Cluster, resource: ResourceType, namespace: str, name: str) -> None:
        self._queued.discard((resource.plural, namespace, name))
        obj = cluster.store.get(resource, namespace, name)
        if obj is None:
            return
        if resource.plural == "deployments":
            self._reconcile_deployment(cluster, obj)
        elif resource.plural == "daemonsets":
            self._reconcile_daemonset(cluster, obj)
        elif resource.plural == "statefulsets":
            statefulsets.reconcile(self, cluster, obj)
        elif not any(ref.get("kind") == "Deployment" for ref in obj["metadata"].get("ownerReferences") or []):
            self._reconcile_replicaset(cluster, obj)

    def _reconcile_deployment(self, cluster: Cluster, dep: dict[str, Any]) -> None:
        replicasets = cluster.resource("apps", "v1", "replicasets")
        meta, spec = dep["metadata"], dep["spec"]
        template = spec.get("template") or {}
        pod_hash = template_hash(template)
        owned = [rs for rs in cluster.store.list(replicasets, meta["namespace"]) if owned_by(rs, dep)]
        current = next((rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == pod_hash), None)
        latest = max((_revision(rs) for rs in owned), default=0)
        olds = sorted((rs for rs in owned if current is None or rs["metadata"]["name"] != current["metadata"]["name"]),
                      key=_revision)
        wanted = spec["replicas"]
        surge, unavailable = _surge_and_unavailable(spec)
        rolling = (spec.get("strategy") or {}).get("type") == "RollingUpdate"
        old_pods = [p for rs in olds for p in self.owned_pods(cluster, rs)]
        old_total = sum(rs["spec"].get("replicas", 0) for rs in olds)
        if rolling:  # new ReplicaSet up to what maxSurge allows (NewRSNewReplicas)
            new_size = min(wanted, max((current or {}).get("spec", {}).get("replicas", 0), wanted + surge - old_total))
        else:  # Recreate: only once the old pods are gone
            new_size = wanted if not old_pods and not old_total else 0
        if current is None:
            current = self._new_replicaset(dep, template, pod_hash, latest + 1, new_size)
            current = cluster.create(replicasets, current, meta["namespace"])
            if new_size:
                cluster.record_event(dep, "ScalingReplicaSet", f"Scaled up replica set "
                                     f"{current['metadata']['name']} to {new_size}", "deployment-controller")
        elif (current["spec"].get("replicas") != new_size or _revision(current) < latest
              or _copy_annotations(dep, current)):
            # Scaled, or back to an older template (a rollback): that ReplicaSet becomes the newest revision.
            if new_size > current["spec"].get("replicas", 0):
                cluster.record_event(dep, "ScalingReplicaSet",
                                     f"Scaled up replica set {current['metadata']['name']} to {new_size} from "
                                     f"{current['spec'].get('replicas', 0)}", "deployment-controller")
            current["spec"]["replicas"] = new_size
            if _revision(current) < latest:
                current["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(latest + 1)
            _copy_annotations(dep, current)
            current = cluster.write_status(replicasets, current)
        new_ready = self._reconcile_replicaset(cluster, current)
        # Old ReplicaSets scale down as far as availability allows (unready old pods always go).
        old_ready = sum(kubelet.ready(p) for p in old_pods)
        removable = old_total - min(old_total, old_ready) + max(0, old_ready + new_ready - (wanted - unavailable))
        if not rolling:
            removable = old_total
        for old in olds:
            cut = min(removable, old["spec"].get("replicas", 0))
            if cut:
                removable -= cut
                size = old["spec"]["replicas"] - cut
                cluster.record_event(dep, "ScalingReplicaSet", f"Scaled down replica set {old['metadata']['name']} "
                                     f"to {size} from {old['spec']['replicas']}", "deployment-controller")
                old["spec"]["replicas"] = size
                old = cluster.write_status(replicasets, old)
            self._reconcile_replicaset(cluster, old)
        self._deployment_status(cluster, dep, current, olds)

    def _deployment_status(self, cluster: Cluster, dep: dict[str, Any], current: dict[str, Any],
                           olds: list[dict[str, Any]]) -> None:
        """Status and conditions as the deployment controller's syncRolloutStatus writes them."""
        meta, spec, wanted = dep["metadata"], dep["spec"], dep["spec"]["replicas"]
        new_pods = self.owned_pods(cluster, current)
        all_pods = new_pods + [p for rs in olds for p in self.owned_pods(cluster, rs)]
        ready = sum(kubelet.ready(p) for p in all_pods)
        counts = {"replicas": len(all_pods), "updatedReplicas": len(new_pods), "readyReplicas": ready,
                  "availableReplicas": ready, "unavailableReplicas": max(0, wanted - ready)}
        old_status = dep.get("status") or {}
        before = {c["type"]: c for c in old_status.get("conditions") or []}
        stamp, rs_name = now(), current["metadata"]["name"]
        if ready >= wanted - _max_unavailable(spec):
            available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        complete = len(new_pods) == wanted == len(all_pods) and sum(kubelet.ready(p) for p in new_pods) == wanted
        progressed = any(counts.get(k, 0) != old_status.get(k, 0)
                         for k in ("updatedReplicas", "readyReplicas", "availableReplicas", "replicas")) \
            or (before.get("Progressing") or {}).get("message", "").split('"')[1:2] != [rs_name]
        last = before.get("Progressing") or {}
        if complete:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        elif progressed or last.get("reason") == "NewReplicaSetAvailable" or not last:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        elif last.get("reason") == "ProgressDeadlineExceeded" or \
                _seconds_since(last.get("lastUpdateTime")) > spec.get("progressDeadlineSeconds", 600):
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')

        def condition(kind: str, value: tuple[str, str, str]) -> dict[str, Any]:
            old = before.get(kind) or {}
            same = (old.get("status"), old.get("reason"), old.get("message")) == value
            keep_update = same and not (kind == "Progressing" and progressed and not complete)
            return {"type": kind, "status": value[0], "reason": value[1], "message": value[2],
                    "lastUpdateTime": old.get("lastUpdateTime") if keep_update else stamp,
                    "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == value[0] else stamp}
        revision = str(_revision(current))
        status = {"observedGeneration": meta.get("generation", 1), **{k: v for k, v in counts.items() if v},
                  "conditions": [condition("Available", available), condition("Progressing", progressing)]}
        if status != old_status or (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision") != revision:
            meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = revision
            dep["status"] = status
            cluster.write_status(cluster.resource("apps", "v1", "deployments"), dep)
        if not complete:
            self.resync(cluster, dep)

    @staticmethod
    def _new_replicaset(dep: dict[str, Any], template: dict[str, Any], pod_hash: str, revision: int,
                        replicas: int) -> dict[str, Any]:
        template = copy.deepcopy(template)
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy(dep["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        replicaset = {"metadata": {"name": f"{dep['metadata']['name']}-{pod_hash}",
                                   "labels": template["metadata"]["labels"],
                                   "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                                   "ownerReferences": [owner_ref(dep)]},
                      "spec": {"replicas": replicas, "selector": selector, "template": template}}
        _copy_annotations(dep, replicaset)
        return replicaset

    def _reconcile_replicaset(self, cluster: Cluster, rs: dict[str, Any]) -> int:
        """Make the ReplicaSet's pods match its replicas, schedule Pending ones, let kubelets retry the
        unready ones; return how many are ready."""
        # Scaling down removes Pending pods first, then unready ones, then the newest, as the controller ranks them.
        pods = sorted(self.owned_pods(cluster, rs), key=lambda p: (not p["spec"].get("nodeName"), not kubelet.ready(p)))
        wanted = rs["spec"].get("replicas", 1)
        namespace = rs["metadata"]["namespace"]
        for pod in pods[wanted:]:
            cluster.store.remove(cluster.core("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"])
        pods = pods[:wanted]
        placed = [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]
        for pod in pods:
            if not pod["spec"].get("nodeName"):
                node, why = self.pick_node(cluster, namespace, pod["spec"], placed)
                if node:
                    self.bind(cluster, pod, node)
                    placed.append(node)
                else:
                    self.unschedulable(cluster, pod, why)
            elif not kubelet.ready(pod):
                self.sync(cluster, pod)
        template = rs["spec"]["template"]
        for _ in range(len(pods), wanted):
            node, why = self.pick_node(cluster, namespace, template.get("spec") or {}, placed)
            try:
                pod = self.create_pod(cluster, rs, template, node, why=why)
            except errors.ApiError as exc:
                cluster.record_event(rs, "FailedCreate", f"Error creating: {exc.message}", "replicaset-controller",
                                     "Warning")
                self.resync(cluster, rs)
                break
            if node:
                placed.append(node)
            cluster.record_event(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                 "replicaset-controller")
        pods = self.owned_pods(cluster, rs)
        ready = sum(kubelet.ready(p) for p in pods)
        counts = {"fullyLabeledReplicas": len(pods), "readyReplicas": ready, "availableReplicas": ready}
        status = {"replicas": len(pods), "observedGeneration": rs["metadata"].get("generation", 1),
                  **{k: v for k, v in counts.items() if v}}
        if status != rs.get("status"):
            rs["status"] = status
            cluster.write_status(cluster.resource("apps", "v1", "replicasets"), rs)
        owners = rs["metadata"].get("ownerReferences") or []
        if ready < wanted and not any(r.get("kind") == "Deployment" for r in owners):
            self.resync(cluster, rs)
        return ready

    def pick_node(self, cluster: Cluster, namespace: str, pod_spec: dict[str, Any],
                  placed: list[str]) -> tuple[str | None, str]:
        """The scheduler's choice for a pod, or None (it stays Pending) and the FailedScheduling message."""
        return scheduling.place(cluster, namespace, pod_spec, list(self.nodes), placed)

    def _reconcile_daemonset(self, cluster: Cluster, ds: dict[str, Any]) -> None:
        template = ds["spec"].get("template") or {}
        revision_hash = template_hash(template)
        pods = self.owned_pods(cluster, ds)
        for pod in pods:
            if pod["metadata"].get("labels", {}).get("controller-revision-hash") != revision_hash:
                cluster.store.remove(cluster.core("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"])
        on_nodes = {p["spec"].get("nodeName") for p in self.owned_pods(cluster, ds)}
        selector = (template.get("spec") or {}).get("nodeSelector") or {}
        eligible = [node for node in self.nodes
                    if all(self._node_labels(cluster, node).get(k) == v for k, v in selector.items())]
        labelled = copy.deepcopy(template)
        labelled.setdefault("metadata", {}).setdefault("labels", {})["controller-revision-hash"] = revision_hash
        tolerations = labelled.setdefault("spec", {}).setdefault("tolerations", [])
        tolerations += [{"key": key, "operator": "Exists", "effect": effect} for key, effect in _DAEMON_TOLERATIONS
                        if not any((t.get("key"), t.get("effect")) == (key, effect) for t in tolerations)]
        for node in eligible:
            if node not in on_nodes:
                pod = self.create_pod(cluster, ds, labelled, node)
                cluster.record_event(ds, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                     "daemonset-controller")
        pods = self.owned_pods(cluster, ds)
        for pod in pods:
            if pod["spec"].get("nodeName") and not kubelet.ready(pod):
                self.sync(cluster, pod)
        count, ready = len(eligible), sum(kubelet.ready(p) for p in self.owned_pods(cluster, ds))
        status = {"currentNumberScheduled": count, "desiredNumberScheduled": count, "numberMisscheduled": 0,
                  "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": count,
                  "observedGeneration": ds["metadata"].get("generation", 1)}
        if count - ready:
            status["numberUnavailable"] = count - ready
            self.resync(cluster, ds)
        if status != ds.get("status"):
            ds["status"] = status
            cluster.write_status(cluster.resource("apps", "v1", "daemonsets"), ds)

    @staticmethod
    def _node_labels(cluster: Cluster, node: str) -> dict[str, str]:
        found = cluster.store.get(cluster.core("nodes"), None, node)
        return (found or {}).get("metadata", {}).get("labels") or {}

    @staticmethod
    def owned_pods(cluster: Cluster, owner: dict[str, Any]) -> list[dict[str, Any]]:
        selector = owner["spec"].get("selector")
        return [p for p in cluster.store.list(cluster.core("pods"), owner["metadata"]["namespace"])
                if owned_by(p, owner) and matches_label_selector(selector, p["metadata"].get("labels") or {})]

    def create_pod(self, cluster: Cluster, owner: dict[str, Any], template: dict[str, Any],
                   node: str | None, name: str | None = None, why: str = "") -> dict[str, Any]:
        """A controller's new Pod (named `name`, else `<owner>-<5 chars>`), bound to `node`, or Pending
        as the scheduler leaves it when none fits (`why`: the FailedScheduling message). Raises the
        apiserver's refusal (ApiError)."""
        spec = copy.deepcopy(template.get("spec") or {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        naming = {"name": name} if name else {"generateName": f"{owner['metadata']['name']}-"}
        pod = {"metadata": {**naming,
                            "labels": copy.deepcopy((template.get("metadata") or {}).get("labels") or {}),
                            "annotations": copy.deepcopy((template.get("metadata") or {}).get("annotations") or {}),
                            "ownerReferences": [owner_ref(owner)]},
               "spec": spec}
        pod = cluster.create(cluster.core("pods"), pod, owner["metadata"]["namespace"])
        if node:
            return self.bind(cluster, pod, node)
        return self.unschedulable(cluster, pod, why)

    @staticmethod
    def unschedulable(cluster: Cluster, pod: dict[str, Any], message: str) -> dict[str, Any]:
        """The scheduler leaves the pod Pending: PodScheduled False (Unschedulable) and a FailedScheduling Event."""
        conditions = (pod.get("status") or {}).get("conditions") or []
        old = next((c for c in conditions if c.get("type") == "PodScheduled"), {})
        pod["status"] = {"phase": "Pending", "qosClass": scheduling.qos_class(pod["spec"]), "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
             "lastProbeTime": None, "lastTransitionTime": old.get("lastTransitionTime") or now()}]}
        cluster.record_event(pod, "FailedScheduling", message, "default-scheduler", "Warning")
        return cluster.write_status(cluster.core("pods"), pod)

    def bind(self, cluster: Cluster, pod: dict[str, Any], node: str) -> dict[str, Any]:
        """The scheduler binds the Pod to `node`, whose kubelet starts it (`kubelet.sync`)."""
        pod["spec"]["nodeName"] = node
        pod.setdefault("status", {})["podIP"] = str(POD_CIDR[self._next_pod_ip])
        self._next_pod_ip = self._next_pod_ip % (POD_CIDR.num_addresses - 2) + 1
        cluster.record_event(pod, "Scheduled", f"Successfully assigned {pod['metadata']['namespace']}/"
                             f"{pod['metadata']['name']} to {node}", "default-scheduler")
        return self.sync(cluster, pod)

    def sync(self, cluster: Cluster, pod: dict[str, Any]) -> dict[str, Any]:
        """The pod's kubelet (re)starts what it can of a bound pod."""
        node = pod["spec"]["nodeName"]
        return kubelet.sync(cluster, pod, self.nodes.get(node), pod["status"]["podIP"])


def _controlled(pod: dict[str, Any]) -> bool:
    """Whether a workload controller (ReplicaSet, DaemonSet, StatefulSet) owns the pod."""
    return any(ref.get("controller") and ref.get("kind") in ("ReplicaSet", "DaemonSet", "StatefulSet")
               for ref in pod["metadata"].get("ownerReferences") or [])


def _check_service_account(cluster: Cluster, pod: dict[str, Any]) -> None:
    """The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount): a pod naming a
    ServiceAccount that does not exist is refused with 403, `default` too (its controller,
    `controllers.DefaultServiceAccount`, makes it in every active namespace)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    namespace = meta.get("namespace") or "default"
    if cluster.store.get(cluster.core("serviceaccounts"), namespace, account) is not None:
        return
    name = meta.get("name") or meta.get("generateName") or ""
    raise errors.ApiError(403, "Forbidden", f'pods "{name}" is forbidden: error looking up service account '
                          f'{namespace}/{account}: serviceaccount "{account}" not found',
                          {"name": name, "kind": "pods"})
