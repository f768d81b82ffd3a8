"""Deployments, ReplicaSets, DaemonSets and their Pods, as the controllers and kubelets of a
healthy cluster leave them, `ready_delay` seconds after each change (no container runs).

- Deployment controller: one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`
  and owned by the Deployment; a new template scales the old ReplicaSets to 0 (revision
  annotations count up, so `kubectl rollout history` and `helm --wait`'s new-ReplicaSet lookup
  work). Status: replicas, updated/ready/available replicas, observedGeneration, and the
  `Available` and `Progressing` conditions (those of a finished rollout once all pods are ready).
- ReplicaSet controller: `spec.replicas` Pods named `<replicaset>-<5 chars>`.
- DaemonSet controller: one Pod per node, with the tolerations the controller adds (so they stay
  on cordoned nodes); status numbers (desired/current/ready/updated/available).
- Scheduler: a ReplicaSet's Pod goes to a schedulable node (`nodes.schedulable`), the one with the
  fewest of its ReplicaSet's Pods (first in `--node` order on a tie); with none, it stays `Pending`
  (PodScheduled False, Unschedulable) until a node takes pods again (uncordon).
- Kubelet: every scheduled Pod is `Running`, all containers ready, with a pod IP from
  10.244.0.0/16. A Pod deleted through the API (or evicted) is replaced by its controller.
Defaults the apiserver applies (replicas 1, RollingUpdate 25%/25%, revisionHistoryLimit 10,
progressDeadlineSeconds 600, DaemonSet maxUnavailable 1) are set, since clients read them.
"""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from typing import Any

from lab.cluster.cluster import Cluster, Controller, random_suffix
from lab.cluster.nodes import UNSCHEDULABLE_TAINT, schedulable
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


def _owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _revision(replicaset: dict[str, Any]) -> int:
    return int((replicaset["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] for ref in obj["metadata"].get("ownerReferences") or [])


def _max_unavailable(spec: dict[str, Any]) -> int:
    """A Deployment's maxUnavailable in pods (a percentage rounds down); 0 for Recreate."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type") != "RollingUpdate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return spec["replicas"] * int(value[:-1]) // 100
    return min(int(value), spec["replicas"])


class WorkloadController(Controller):
    """Emulates the deployment, replicaset and daemonset controllers plus the kubelets."""

    def __init__(self, nodes: dict[str, str | None], ready_delay: float = 0.5):
        self.nodes = nodes  # node name -> InternalIP (or None)
        self.ready_delay = ready_delay
        self._next_pod_ip = 1

    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if resource.group != "apps":
            return
        spec = obj.setdefault("spec", {})
        if resource.plural == "deployments":
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if strategy.get("type") == "RollingUpdate":
                strategy.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", "25%")
                strategy["rollingUpdate"].setdefault("maxSurge", "25%")
        elif resource.plural == "daemonsets":
            spec.setdefault("revisionHistoryLimit", 10)
            strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
            if strategy.get("type") == "RollingUpdate":
                strategy.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", 1)
                strategy["rollingUpdate"].setdefault("maxSurge", 0)
        elif resource.plural == "replicasets":
            spec.setdefault("replicas", 1)

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if resource.group == "apps" and resource.plural in ("deployments", "daemonsets", "replicasets"):
            self._schedule(cluster, resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        elif (resource.group, resource.plural) == ("", "nodes") and not (obj.get("spec") or {}).get("unschedulable"):
            # A node takes pods (again): the scheduler retries the Pending ones.
            for pod in cluster.store.list(cluster.core("pods")):
                if not pod["spec"].get("nodeName"):
                    self._requeue_owner(cluster, pod)

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        """A Pod deleted through the API is replaced by its controller."""
        if (resource.group, resource.plural) == ("", "pods"):
            self._requeue_owner(cluster, obj)

    def _requeue_owner(self, cluster: Cluster, pod: dict[str, Any]) -> None:
        """Reconcile the Pod's controller soon: its Deployment, or else its ReplicaSet or DaemonSet."""
        namespace = pod["metadata"].get("namespace")
        for ref in pod["metadata"].get("ownerReferences") or []:
            plural = {"ReplicaSet": "replicasets", "DaemonSet": "daemonsets"}.get(ref.get("kind"))
            if plural is None:
                continue
            owner = cluster.store.get(cluster.resource("apps", "v1", plural), namespace, ref["name"])
            if owner is None:
                continue
            deployment = next((r for r in owner["metadata"].get("ownerReferences") or []
                               if r.get("kind") == "Deployment"), None)
            if deployment:
                self._schedule(cluster, cluster.resource("apps", "v1", "deployments"), namespace, deployment["name"])
            else:
                self._schedule(cluster, cluster.resource("apps", "v1", plural), namespace, ref["name"])

    def _schedule(self, cluster: Cluster, resource: ResourceType, namespace: str | None, name: str) -> None:
        cluster.later(self.ready_delay, lambda: self.reconcile(cluster, resource, namespace, name))

    def reconcile(self, cluster: Cluster, resource: ResourceType, namespace: str, name: str) -> None:
        obj = cluster.store.get(resource, namespace, name)
        if obj is None:
            return
        if resource.plural == "deployments":
            self._reconcile_deployment(cluster, obj)
        elif resource.plural == "daemonsets":
            self._reconcile_daemonset(cluster, obj)
        elif not any(ref.get("kind") == "Deployment" for ref in obj["metadata"].get("ownerReferences") or []):
            self._reconcile_replicaset(cluster, obj)

    def _reconcile_deployment(self, cluster: Cluster, dep: dict[str, Any]) -> None:
        replicasets = cluster.resource("apps", "v1", "replicasets")
        meta, spec = dep["metadata"], dep["spec"]
        template = spec.get("template") or {}
        pod_hash = template_hash(template)
        owned = [rs for rs in cluster.store.list(replicasets, meta["namespace"]) if _owned_by(rs, dep)]
        current = next((rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == pod_hash), None)
        latest = max((_revision(rs) for rs in owned), default=0)
        if current is None:
            current = self._new_replicaset(dep, template, pod_hash, latest + 1)
            current = cluster.create(replicasets, current, meta["namespace"])
            cluster.record_event(dep, "ScalingReplicaSet", f"Scaled up replica set {current['metadata']['name']} "
                                 f"to {spec['replicas']}", "deployment-controller")
        elif current["spec"].get("replicas") != spec["replicas"] or _revision(current) < latest:
            # Scaled, or back to an older template (a rollback): that ReplicaSet becomes the newest revision.
            current["spec"]["replicas"] = spec["replicas"]
            if _revision(current) < latest:
                current["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(latest + 1)
            current = cluster.write_status(replicasets, current)
        revision = _revision(current)
        for old in owned:
            if old["metadata"]["name"] != current["metadata"]["name"] and old["spec"].get("replicas"):
                cluster.record_event(dep, "ScalingReplicaSet", f"Scaled down replica set {old['metadata']['name']} "
                                     f"to 0 from {old['spec']['replicas']}", "deployment-controller")
                old["spec"]["replicas"] = 0
                self._reconcile_replicaset(cluster, cluster.write_status(replicasets, old))
        ready = self._reconcile_replicaset(cluster, current)
        meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
        stamp, wanted, rs_name = now(), spec["replicas"], current["metadata"]["name"]
        if ready >= wanted - _max_unavailable(spec):
            available = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        if ready == wanted:
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        counts = {"replicas": wanted, "updatedReplicas": wanted, "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": wanted - ready}
        dep["status"] = {
            "observedGeneration": meta.get("generation", 1), **{k: v for k, v in counts.items() if v},
            "conditions": [{"type": kind, "status": status, "reason": reason, "message": message,
                            "lastUpdateTime": stamp, "lastTransitionTime": stamp}
                           for kind, (status, reason, message) in (("Available", available),
                                                                   ("Progressing", progressing))]}
        cluster.write_status(cluster.resource("apps", "v1", "deployments"), dep)

    @staticmethod
    def _new_replicaset(dep: dict[str, Any], template: dict[str, Any], pod_hash: str, revision: int) -> dict[str, Any]:
        template = copy.deepcopy(template)
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy(dep["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        return {"metadata": {"name": f"{dep['metadata']['name']}-{pod_hash}", "labels": template["metadata"]["labels"],
                             "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                             "ownerReferences": [_owner_ref(dep)]},
                "spec": {"replicas": dep["spec"]["replicas"], "selector": selector, "template": template}}

    def _reconcile_replicaset(self, cluster: Cluster, rs: dict[str, Any]) -> int:
        """Make the ReplicaSet's pods match its replicas, schedule Pending ones; return how many are ready."""
        # Scaling down removes Pending pods first, then the newest, as the controller ranks them.
        pods = sorted(self._owned_pods(cluster, rs), key=lambda p: not p["spec"].get("nodeName"))
        wanted = rs["spec"].get("replicas", 1)
        for pod in pods[wanted:]:
            cluster.store.remove(cluster.core("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"])
        pods = pods[:wanted]
        placed = [p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]
        for pod in pods:
            if not pod["spec"].get("nodeName") and (node := self._pick_node(cluster, pod["spec"], placed)):
                self._bind(cluster, pod, node)
                placed.append(node)
        for _ in range(len(pods), wanted):
            node = self._pick_node(cluster, rs["spec"]["template"].get("spec") or {}, placed)
            pod = self._create_pod(cluster, rs, rs["spec"]["template"], node)
            if node:
                placed.append(node)
            cluster.record_event(rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                 "replicaset-controller")
        ready = len(placed)
        counts = {"fullyLabeledReplicas": wanted, "readyReplicas": ready, "availableReplicas": ready}
        rs["status"] = {"replicas": wanted, "observedGeneration": rs["metadata"].get("generation", 1),
                        **{k: v for k, v in counts.items() if v}}
        cluster.write_status(cluster.resource("apps", "v1", "replicasets"), rs)
        return ready

    def _pick_node(self, cluster: Cluster, pod_spec: dict[str, Any], placed: list[str]) -> str | None:
        """The scheduler's choice for a ReplicaSet's pod (see the module docstring); None: it stays Pending."""
        nodes = cluster.core("nodes")
        fitting = [name for name in self.nodes
                   if (node := cluster.store.get(nodes, None, name)) and schedulable(node, pod_spec)]
        return min(fitting, key=placed.count, default=None)

    def _reconcile_daemonset(self, cluster: Cluster, ds: dict[str, Any]) -> None:
        template = ds["spec"].get("template") or {}
        revision_hash = template_hash(template)
        pods = self._owned_pods(cluster, ds)
        for pod in pods:
            if pod["metadata"].get("labels", {}).get("controller-revision-hash") != revision_hash:
                cluster.store.remove(cluster.core("pods"), pod["metadata"]["namespace"], pod["metadata"]["name"])
        on_nodes = {p["spec"].get("nodeName") for p in self._owned_pods(cluster, ds)}
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
                pod = self._create_pod(cluster, ds, labelled, node)
                cluster.record_event(ds, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                                     "daemonset-controller")
        count = len(eligible)
        ds["status"] = {"currentNumberScheduled": count, "desiredNumberScheduled": count, "numberMisscheduled": 0,
                        "numberReady": count, "numberAvailable": count, "updatedNumberScheduled": count,
                        "observedGeneration": ds["metadata"].get("generation", 1)}
        cluster.write_status(cluster.resource("apps", "v1", "daemonsets"), ds)

    @staticmethod
    def _node_labels(cluster: Cluster, node: str) -> dict[str, str]:
        found = cluster.store.get(cluster.core("nodes"), None, node)
        return (found or {}).get("metadata", {}).get("labels") or {}

    @staticmethod
    def _owned_pods(cluster: Cluster, owner: dict[str, Any]) -> list[dict[str, Any]]:
        selector = owner["spec"].get("selector")
        return [p for p in cluster.store.list(cluster.core("pods"), owner["metadata"]["namespace"])
                if _owned_by(p, owner) and matches_label_selector(selector, p["metadata"].get("labels") or {})]

    def _create_pod(self, cluster: Cluster, owner: dict[str, Any], template: dict[str, Any],
                    node: str | None) -> dict[str, Any]:
        """A controller's new Pod, bound to `node`, or Pending as the scheduler leaves it when none fits."""
        spec = copy.deepcopy(template.get("spec") or {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        pod = {"metadata": {"generateName": f"{owner['metadata']['name']}-",
                            "labels": copy.deepcopy((template.get("metadata") or {}).get("labels") or {}),
                            "annotations": copy.deepcopy((template.get("metadata") or {}).get("annotations") or {}),
                            "ownerReferences": [_owner_ref(owner)]},
               "spec": spec}
        pod = cluster.create(cluster.core("pods"), pod, owner["metadata"]["namespace"])
        if node:
            return self._bind(cluster, pod, node)
        count = len(cluster.store.list(cluster.core("nodes")))
        message = (f"0/{count} nodes are available: {count} node(s) were unschedulable. preemption: "
                   f"0/{count} nodes are available: {count} Preemption is not helpful for scheduling.")
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
             "lastTransitionTime": now()}]}
        cluster.write_status(cluster.core("pods"), pod)
        cluster.record_event(pod, "FailedScheduling", message, "default-scheduler", "Warning")
        return pod

    def _bind(self, cluster: Cluster, pod: dict[str, Any], node: str) -> dict[str, Any]:
        """The scheduler binds the Pod to `node`, whose kubelet runs it: Running, all containers ready."""
        pod["spec"]["nodeName"] = node
        started = now()
        pod_ip = str(POD_CIDR[self._next_pod_ip])
        self._next_pod_ip = self._next_pod_ip % (POD_CIDR.num_addresses - 2) + 1
        conditions = [{"type": t, "status": "True", "lastTransitionTime": started}
                      for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
        statuses = [{"name": c.get("name"), "image": c.get("image"), "imageID": "", "ready": True, "started": True,
                     "restartCount": 0, "containerID": f"containerd://{random_suffix(64)}",
                     "state": {"running": {"startedAt": started}}} for c in pod["spec"].get("containers") or []]
        pod["status"] = {"phase": "Running", "conditions": conditions, "containerStatuses": statuses,
                         "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": started, "qosClass": "BestEffort"}
        if self.nodes.get(node):
            pod["status"]["hostIP"] = self.nodes[node]
        cluster.write_status(cluster.core("pods"), pod)
        cluster.record_event(pod, "Scheduled", f"Successfully assigned {pod['metadata']['namespace']}/"
                             f"{pod['metadata']['name']} to {node}", "default-scheduler")
        return pod
