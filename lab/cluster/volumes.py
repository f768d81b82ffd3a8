"""PersistentVolumeClaims, StorageClasses and a dynamic provisioner, as Kubernetes documents them
(https://kubernetes.io/docs/concepts/storage/persistent-volumes/, .../storage-classes/).

- The DefaultStorageClass admission plugin: a claim created without `storageClassName` gets the
  default class's (annotation `storageclass.kubernetes.io/is-default-class: "true"`; the newest
  if several); with no default class it keeps none and stays Pending. From 1.28
  (RetroactiveDefaultStorageClass, GA) a default class created later is given to such claims.
- Defaults: claims `volumeMode: Filesystem` and `status.phase: Pending`; classes
  `reclaimPolicy: Delete`, `volumeBindingMode: Immediate`.
- Validation: a claim's spec is immutable after creation except `resources.requests` (and, from
  1.29, `volumeAttributesClassName`); `volumeName` and an unset `storageClassName` may be set once.
- The provisioner: a Pending claim of a class whose provisioner is `PROVISIONER` (the class the
  lab's cluster starts with, `standard`, as kind, k3s and minikube ship one) and whose binding mode
  is Immediate gets a PersistentVolume `pvc-<claim uid>` (a hostPath under /var/lib/labcluster,
  not created: no container runs), bound both ways with the annotations the PV controller writes;
  the claim is then `Bound`. Deleting the claim deletes its volume (reclaimPolicy Delete) or leaves
  it `Released` (Retain). Stand-in: a WaitForFirstConsumer class's claims stay Pending (no pod
  consumes anything here), and claims of other provisioners stay Pending (none runs).
- Pending claims get the PV controller's Events: ProvisioningFailed `storageclass.storage.k8s.io
  "N" not found`, ExternalProvisioning (another provisioner's class), WaitForFirstConsumer.
- Protection (pkg/controller/volume/pvcprotection, pvprotection): a claim being deleted keeps its
  `kubernetes.io/pvc-protection` finalizer while a pod that has not finished uses it, a volume its
  `kubernetes.io/pv-protection` one while its claim exists; checked every `SWEEP` seconds.
"""
from __future__ import annotations

import copy
from typing import Any

from lab.cluster import errors
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.store import ResourceType

PROVISIONER = "lab.cluster/hostpath"
SWEEP = 1.0
DEFAULT_CLASS = "standard"
_DEFAULT_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def _minor(cluster: Cluster) -> int:
    return int(cluster.registry.kube_version.split(".")[1])


def default_class(cluster: Cluster) -> dict[str, Any] | None:
    """The default StorageClass (the newest of several), if any."""
    defaults = [c for c in cluster.store.list(cluster.resource("storage.k8s.io", "v1", "storageclasses"))
                if (c["metadata"].get("annotations") or {}).get(_DEFAULT_ANNOTATION) == "true"]
    return max(defaults, key=lambda c: c["metadata"].get("creationTimestamp", ""), default=None)


class VolumeController(Controller):
    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) == ("storage.k8s.io", "storageclasses"):
            obj.setdefault("reclaimPolicy", "Delete")
            obj.setdefault("volumeBindingMode", "Immediate")
        elif (resource.group, resource.plural) == ("", "persistentvolumeclaims"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("volumeMode", "Filesystem")
            if old is None:
                if "storageClassName" not in spec and (found := default_class(cluster)):
                    spec["storageClassName"] = found["metadata"]["name"]
                finalizers = obj["metadata"].setdefault("finalizers", [])
                if "kubernetes.io/pvc-protection" not in finalizers:  # the StorageObjectInUseProtection plugin
                    finalizers.append("kubernetes.io/pvc-protection")
                obj["status"] = {"phase": "Pending"}
            else:
                self._check_update(cluster, obj, old)

    @staticmethod
    def _check_update(cluster: Cluster, claim: dict[str, Any], old: dict[str, Any]) -> None:
        new_spec, old_spec = copy.deepcopy(claim["spec"]), copy.deepcopy(old.get("spec") or {})
        for spec in (new_spec, old_spec):
            (spec.get("resources") or {}).pop("requests", None)
            if _minor(cluster) >= 29:
                spec.pop("volumeAttributesClassName", None)
        for once in ("volumeName", "storageClassName"):
            if not old_spec.get(once):
                old_spec.pop(once, None)
                new_spec.pop(once, None)
        if new_spec != old_spec:
            allowed = "resources.requests and volumeAttributesClassName" if _minor(cluster) >= 29 else \
                "resources.requests"
            raise errors.forbidden("PersistentVolumeClaim", "", claim["metadata"]["name"], "spec",
                                   f"spec is immutable after creation except {allowed} for bound claims")

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) == ("", "persistentvolumeclaims"):
            self._provision(cluster, obj)
        elif (resource.group, resource.plural) == ("storage.k8s.io", "storageclasses"):
            claims = cluster.core("persistentvolumeclaims")
            for claim in cluster.store.list(claims):
                if (claim.get("status") or {}).get("phase") != "Pending":
                    continue
                if "storageClassName" not in claim["spec"] and _minor(cluster) >= 28 and \
                        (found := default_class(cluster)):
                    claim["spec"]["storageClassName"] = found["metadata"]["name"]
                    claim = cluster.write_status(claims, claim)
                self._provision(cluster, claim)

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        if (resource.group, resource.plural) != ("", "persistentvolumeclaims"):
            return
        volumes = cluster.core("persistentvolumes")
        name = obj["spec"].get("volumeName")
        volume = cluster.store.get(volumes, None, name) if name else None
        if volume is None or (volume["spec"].get("claimRef") or {}).get("uid") != obj["metadata"]["uid"]:
            return
        if volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            cluster.delete(volumes, None, name)
        else:
            volume["status"] = {"phase": "Released"}
            cluster.write_status(volumes, volume)

    @staticmethod
    def _provision(cluster: Cluster, claim: dict[str, Any]) -> None:
        """Provision and bind a volume for a Pending claim of the lab's Immediate class."""
        spec, meta = claim["spec"], claim["metadata"]
        if (claim.get("status") or {}).get("phase") != "Pending" or not spec.get("storageClassName"):
            return
        found = cluster.store.get(cluster.resource("storage.k8s.io", "v1", "storageclasses"), None,
                                  spec["storageClassName"])
        if not found:
            cluster.record_event(claim, "ProvisioningFailed", f'storageclass.storage.k8s.io '
                                 f'"{spec["storageClassName"]}" not found', "persistentvolume-controller", "Warning")
            return
        if found.get("volumeBindingMode") != "Immediate":
            cluster.record_event(claim, "WaitForFirstConsumer", "waiting for first consumer to be created before "
                                 "binding", "persistentvolume-controller")
            return
        if found.get("provisioner") != PROVISIONER:
            cluster.record_event(claim, "ExternalProvisioning", "Waiting for a volume to be created either by the "
                                 f"external provisioner '{found.get('provisioner')}' or manually by the system "
                                 "administrator. If volume creation is delayed, please verify that the provisioner "
                                 "is running and correctly registered.", "persistentvolume-controller")
            return
        name = f"pvc-{meta['uid']}"
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        modes = spec.get("accessModes") or ["ReadWriteOnce"]
        volumes = cluster.core("persistentvolumes")
        volume = cluster.create(volumes, {
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                         "finalizers": ["kubernetes.io/pv-protection"]},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "volumeMode": spec["volumeMode"],
                     "persistentVolumeReclaimPolicy": found.get("reclaimPolicy", "Delete"),
                     "storageClassName": spec["storageClassName"],
                     "hostPath": {"path": f"/var/lib/labcluster/volumes/{name}", "type": "DirectoryOrCreate"},
                     "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"],
                                  "resourceVersion": meta["resourceVersion"]}}})
        volume["status"] = {"phase": "Bound"}
        cluster.write_status(volumes, volume)
        spec["volumeName"] = name
        meta.setdefault("annotations", {}).update({
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
            "volume.kubernetes.io/storage-provisioner": PROVISIONER})
        claim["status"] = {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}
        cluster.write_status(cluster.core("persistentvolumeclaims"), claim)


def bootstrap(cluster: Cluster) -> None:
    """The lab's default StorageClass, backed by `PROVISIONER` (kept if it exists); the protection
    controllers start."""
    classes = cluster.resource("storage.k8s.io", "v1", "storageclasses")
    if cluster.store.get(classes, None, DEFAULT_CLASS) is None:
        cluster.create(classes, {"metadata": {"name": DEFAULT_CLASS, "annotations": {_DEFAULT_ANNOTATION: "true"}},
                                 "provisioner": PROVISIONER})
    cluster.later(SWEEP, lambda: _protect(cluster))


def _protect(cluster: Cluster) -> None:
    """One pass of the pvc-protection and pv-protection controllers, then the next in `SWEEP` seconds."""
    claims, volumes = cluster.core("persistentvolumeclaims"), cluster.core("persistentvolumes")
    pods = cluster.core("pods")
    for claim in cluster.store.list(claims):
        meta = claim["metadata"]
        if not meta.get("deletionTimestamp") or "kubernetes.io/pvc-protection" not in (meta.get("finalizers") or []):
            continue
        used = any(v.get("persistentVolumeClaim", {}).get("claimName") == meta["name"]
                   for p in cluster.store.list(pods, meta["namespace"])
                   if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   for v in p["spec"].get("volumes") or [])
        if not used:
            _drop_finalizer(cluster, claims, claim, "kubernetes.io/pvc-protection")
    for volume in cluster.store.list(volumes):
        meta, ref = volume["metadata"], volume["spec"].get("claimRef") or {}
        if not meta.get("deletionTimestamp") or "kubernetes.io/pv-protection" not in (meta.get("finalizers") or []):
            continue
        bound = ref and cluster.store.get(claims, ref.get("namespace"), ref.get("name")) is not None
        if not bound:
            _drop_finalizer(cluster, volumes, volume, "kubernetes.io/pv-protection")
    cluster.later(SWEEP, lambda: _protect(cluster))


def _drop_finalizer(cluster: Cluster, resource: ResourceType, obj: dict[str, Any], finalizer: str) -> None:
    obj = copy.deepcopy(obj)
    obj["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != finalizer]
    cluster.update(resource, obj, obj["metadata"].get("namespace"), obj["metadata"]["name"])
