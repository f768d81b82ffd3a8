"""What the emulator serves and how clients discover it: API groups, resources, OpenAPI.

The resources are the built-in APIs of the Kubernetes version chosen at start (`apis`), plus
whatever CustomResourceDefinitions add at run time. Discovery documents follow the legacy
(non-aggregated) format, which kubectl and helm fall back to.

OpenAPI: kubectl and helm fetch it only to decide where to validate fields. `/openapi/v3` lists
one document per group-version whose PATCH operations declare the `fieldValidation` and `dryRun`
parameters, so clients leave validation to the server (this one does not validate fields).
`/openapi/v2` is an empty schema: no kind has a client-side schema to check against.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from lab.cluster import apis
from lab.cluster.store import ResourceType

# Served subresources whose kind is not their parent's, as the apiserver lists them (`kubectl drain`
# evicts only if `pods/eviction` names the policy group's Eviction; else it deletes the pods).
_SUBRESOURCE_KINDS = {
    "eviction": {"group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]},
    "scale": {"group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
}
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # as kube-openapi answers


class Registry:
    """The served resources, by group-version and plural: the built-in ones of `kube_version`."""

    def __init__(self, kube_version: str = apis.DEFAULT) -> None:
        self.kube_version = kube_version
        self.version_info = apis.version_info(kube_version)
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for resource in apis.builtin_resources(kube_version):
            self.add(resource)

    def add(self, resource: ResourceType) -> None:
        self._types[resource.group, resource.version, resource.plural] = resource

    def discard(self, group: str, version: str, plural: str) -> None:
        self._types.pop((group, version, plural), None)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def stored_at(self, group: str, plural: str) -> ResourceType | None:
        """The resource a group's plural is stored as (its preferred served version), if served at all."""
        served = [t for (g, _, p), t in self._types.items() if (g, p) == (group, plural)]
        return min(served, key=lambda t: apis.version_priority(t.version), default=None)

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions (newest first, by kube's version ordering)."""
        groups: dict[str, set[str]] = {}
        for group, version, _ in self._types:
            groups.setdefault(group, set()).add(version)
        return {group: sorted(versions, key=apis.version_priority) for group, versions in groups.items()}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for (g, v, _), t in sorted(self._types.items()) if (g, v) == (group, version)]


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_document(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        _group_document(group, versions)
        for group, versions in sorted(registry.group_versions().items()) if group]}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)}


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = []
    for t in types:
        entry = {"name": t.plural, "singularName": t.singular or t.kind.lower(),
                 "namespaced": t.namespaced, "kind": t.kind, "verbs": sorted(t.verbs)}
        if t.short_names:
            entry["shortNames"] = sorted(t.short_names)
        if t.categories:
            entry["categories"] = sorted(t.categories)
        resources.append(entry)
        for sub in sorted(t.subresources):
            resources.append({"name": f"{t.plural}/{sub}", "singularName": "", "namespaced": t.namespaced,
                              **_SUBRESOURCE_KINDS.get(sub, {"kind": t.kind, "verbs": ["get", "patch", "update"]})})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_index(registry: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            path = _gv_path(group, version)
            digest = hashlib.sha256(json.dumps(openapi_v3_document(registry, group, version),
                                               sort_keys=True).encode()).hexdigest()[:32].upper()
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    """Per group-version: a PATCH operation per kind, declaring the server-side query params."""
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths = {}
    for t in types:
        if "patch" not in t.verbs:
            continue
        scope = "/namespaces/{namespace}" if t.namespaced else ""
        patch = {
            "operationId": f"patch{t.kind}",
            "parameters": [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                           for p in ("dryRun", "fieldManager", "fieldValidation", "force")],
            "requestBody": {"content": {ct: {"schema": {"type": "object"}} for ct in (
                "application/json-patch+json", "application/merge-patch+json",
                "application/apply-patch+yaml")}, "required": True},
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": t.kind},
        }
        paths[f"/{_gv_path(group, version)}{scope}/{t.plural}/{{name}}"] = {"patch": patch}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": registry.version_info["gitVersion"]},
            "paths": paths, "components": {"schemas": {}}}


def openapi_v2_document(registry: Registry) -> dict[str, Any]:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": registry.version_info["gitVersion"]},
            "paths": {}, "definitions": {}}
