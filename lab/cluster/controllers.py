"""Cluster-wide controllers and the objects a fresh cluster starts with.

- Namespaces: `status.phase: Active`, the `kubernetes` finalizer and the
  `kubernetes.io/metadata.name` label, as the apiserver sets them. (Deleting one: `Cluster.delete`.)
- Service accounts: every active namespace has a `default` ServiceAccount, made when the namespace
  is and again if deleted, as the serviceaccounts controller does
  (pkg/controller/serviceaccount/serviceaccounts_controller.go).
- Garbage collector: deleting an object deletes its dependents (objects whose ownerReferences
  name its uid), as background cascading deletion does (kubectl's and helm's default).
- Secrets: `stringData` is merged into `data` (base64) and dropped, `type` defaults to Opaque, as
  the apiserver's Secret strategy does.
- CustomResourceDefinitions: an established CRD adds its resources to discovery and the API,
  and deleting it removes them with their objects (so MetalLB's IPAddressPools can be served).
"""
from __future__ import annotations

import base64
import copy
from typing import Any

from lab.cluster import apis, errors
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.services import KUBERNETES_SERVICE_IP
from lab.cluster.store import PrinterColumn, ResourceType, now

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class NamespaceController(Controller):
    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) != ("", "namespaces"):
            return
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Terminating" if obj["metadata"].get("deletionTimestamp") else "Active"}


class DefaultServiceAccount(Controller):
    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) == ("", "namespaces") and old is None:
            default_service_account(cluster, obj["metadata"]["name"])

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        if (resource.group, resource.plural) == ("", "serviceaccounts") and obj["metadata"]["name"] == "default":
            default_service_account(cluster, obj["metadata"]["namespace"])


def default_service_account(cluster: Cluster, namespace: str) -> None:
    """Create the `default` ServiceAccount of an active namespace, if missing."""
    found = cluster.store.get(cluster.core("namespaces"), None, namespace)
    if found is None or found["metadata"].get("deletionTimestamp"):
        return
    if cluster.store.get(cluster.core("serviceaccounts"), namespace, "default") is None:
        cluster.create(cluster.core("serviceaccounts"), {"metadata": {"name": "default"}}, namespace)


class SecretStrategy(Controller):
    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) != ("", "secrets"):
            return
        obj.setdefault("type", "Opaque")
        for key, value in (obj.pop("stringData", None) or {}).items():
            if not isinstance(value, (str, type(None))):  # as the apiserver's JSON decoding refuses it
                found = {bool: "bool", dict: "object", list: "array"}.get(type(value), "number")
                raise errors.bad_request(f'Secret in version "v1" cannot be handled as a Secret: json: cannot '
                                         f"unmarshal {found} into Go struct field Secret.stringData of type string")
            obj.setdefault("data", {})[key] = base64.b64encode((value or "").encode()).decode("ascii")


class GarbageCollector(Controller):
    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        uid = obj["metadata"].get("uid")
        for res_key, ns, name in cluster.store.keys():
            found = cluster.registry.get(res_key.group, res_key.version, res_key.plural)
            dependent = cluster.store.get(found, ns, name) if found else None
            if dependent and any(ref.get("uid") == uid for ref in dependent["metadata"].get("ownerReferences") or []):
                cluster.delete(found, ns, name)


class CustomResourceController(Controller):
    """CustomResourceDefinitions (apiextensions.k8s.io/v1): an accepted CRD's served versions become
    resources (in discovery, the API, and `kubectl get` with its printer columns), namespaced or
    cluster-scoped as it says; a version no longer served, or the CRD deleted, takes them away, with
    their objects. Custom objects get their schema's `default`s, as the apiserver sets them, and are
    pruned and validated against it (`customresources`)."""

    _CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")

    def admit(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) != self._CRDS:
            crds = cluster.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            crd = cluster.store.get(crds, None, f"{resource.plural}.{resource.group}")
            if crd:  # a custom resource
                version = next((v for v in crd["spec"].get("versions") or [] if v.get("name") == resource.version), {})
                _apply_defaults(obj, (version.get("schema") or {}).get("openAPIV3Schema") or {})
            return
        spec, name = obj.get("spec") or {}, obj["metadata"]["name"]
        names = spec.get("names") or {}
        if name != f"{names.get('plural')}.{spec.get('group')}":
            raise errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, "metadata.name",
                                 f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        obj["status"] = {"acceptedNames": names, "storedVersions": [
            v["name"] for v in spec.get("versions") or [] if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "lastTransitionTime": now(), "message": m}
                for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                ("Established", "InitialNamesAccepted", "the initial names have been accepted"))]}

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) != self._CRDS:
            return
        served = self._resources(obj)
        keys = {(r.group, r.version, r.plural) for r in served}
        for gone in self._resources(old or obj):
            if (gone.group, gone.version, gone.plural) not in keys:
                self._remove(cluster, gone)
        for new in served:
            cluster.registry.add(new)

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        if (resource.group, resource.plural) == self._CRDS:
            for served in self._resources(obj):
                self._remove(cluster, served)

    @staticmethod
    def _remove(cluster: Cluster, served: ResourceType) -> None:
        for item in cluster.store.list(served):
            cluster.delete(served, item["metadata"].get("namespace"), item["metadata"]["name"])
        cluster.registry.discard(served.group, served.version, served.plural)

    @staticmethod
    def _resources(crd: dict[str, Any]) -> list[ResourceType]:
        spec = crd["spec"]
        names = spec["names"]
        verbs = frozenset({"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"})
        return [ResourceType(spec["group"], version["name"], names["plural"], names["kind"],
                             spec.get("scope", "Namespaced") == "Namespaced", names.get("singular", ""),
                             verbs, frozenset(names.get("shortNames") or []), frozenset(names.get("categories") or []),
                             frozenset((version.get("subresources") or {}).keys()),
                             tuple(PrinterColumn(c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
                                   for c in version.get("additionalPrinterColumns") or []))
                for version in spec.get("versions") or [] if version.get("served", True)]


def _apply_defaults(value: Any, schema: dict[str, Any]) -> None:
    """Set the `default` of each absent property, in objects and array items, throughout `value`."""
    if isinstance(value, dict):
        for name, field in (schema.get("properties") or {}).items():
            if name not in value and "default" in field:
                value[name] = copy.deepcopy(field["default"])
            if name in value:
                _apply_defaults(value[name], field)
    elif isinstance(value, list):
        for item in value:
            _apply_defaults(item, schema.get("items") or {})


def bootstrap(cluster: Cluster, nodes: dict[str, str | None]) -> None:
    """The objects of a fresh cluster: system namespaces, the `kubernetes` service, the nodes."""
    for name in SYSTEM_NAMESPACES:
        if cluster.store.get(cluster.core("namespaces"), None, name) is None:
            cluster.create(cluster.core("namespaces"), {"metadata": {"name": name}})
    for namespace in cluster.store.list(cluster.core("namespaces")):  # a restarted lab's own
        default_service_account(cluster, namespace["metadata"]["name"])
    if cluster.store.get(cluster.core("services"), "default", "kubernetes") is None:
        cluster.create(cluster.core("services"), {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": KUBERNETES_SERVICE_IP,
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}, "default")
    for index, (name, address) in enumerate(nodes.items()):
        if cluster.store.get(cluster.core("nodes"), None, name) is not None:
            continue
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}  # kubelet sets both
        if index == 0:
            labels["node-role.kubernetes.io/control-plane"] = ""
        addresses = [{"type": "Hostname", "address": name}]
        if address:
            addresses.append({"type": "InternalIP", "address": address})
        node = cluster.create(cluster.core("nodes"), {"metadata": {"name": name, "labels": labels}})
        node["status"] = {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": now(),
                            "lastTransitionTime": now()}],
            "addresses": addresses,
            "nodeInfo": {"kubeletVersion": apis.kubelet_version(cluster.registry.kube_version),
                         "containerRuntimeVersion": "containerd://1.7.24",
                         "operatingSystem": "linux", "architecture": "amd64"}}
        cluster.write_status(cluster.core("nodes"), node)
