"""What the emulator serves and how clients discover it: API groups, resources, OpenAPI.

The resources are the built-in APIs of the Kubernetes version chosen at start (`apis`), plus
whatever CustomResourceDefinitions add at run time. Discovery documents follow the legacy
(non-aggregated) format, which kubectl and helm fall back to.

OpenAPI, from the real schemas of the version (`schemas.swagger`), as kube-openapi publishes them:
`/openapi/v2` is the swagger document with every definition the served built-in group-versions
use (JSON, or gnostic's protobuf as kubectl asks for it; custom resources are left out of it);
`/openapi/v3` indexes one document per group-version (by a hash of its content), and each holds
`components.schemas`, the definitions of the group-version's kinds (`x-kubernetes-group-version-kind`)
and all they refer to, refs as `#/components/schemas/NAME` and wrapped in `allOf` where the field
adds a description (kube-openapi pkg/builder3), IntOrString and Quantity as their `oneOf`
(`OpenAPIV3OneOfTypes`, k8s.io/apimachinery). A custom resource's document holds its served
version's `openAPIV3Schema` under the reversed-group name with apiVersion, kind and metadata added
(staging/src/k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder/builder.go).
`kubectl explain` reads these. Each kind's PATCH operation declares the `fieldValidation` and `dryRun`
parameters, so kubectl and helm leave validation to the server (kubectl's ParamVerifyingSchema), and
for built-in kinds the strategic-merge-patch content type, so `kubectl apply` builds its patch from
these schemas (custom resources take none); a kind without PATCH has its create or list operation.
Only paths that carry a GVK are listed, not every operation the apiserver has.
Documents are static per version and served types, so they are built once and cached.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from typing import Any

import yaml

from lab.cluster import apis, schemas
from lab.cluster.store import ResourceType

# Served subresources whose kind is not their parent's, as the apiserver lists them (`kubectl drain`
# evicts only if `pods/eviction` names the policy group's Eviction; else it deletes the pods).
_SUBRESOURCE_KINDS = {
    "eviction": {"group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]},
    "scale": {"group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
    "token": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]},
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


def openapi_v3_index(registry: Registry, custom: dict[tuple[str, str, str], dict] | None = None) -> dict[str, Any]:
    """`custom`: each custom resource's served `openAPIV3Schema`, by (group, version, kind)."""
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            path = _gv_path(group, version)
            digest = _v3(registry.kube_version, group, version, *_v3_key(registry, custom, group, version))[1]
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_document(registry: Registry, group: str, version: str,
                        custom: dict[tuple[str, str, str], dict] | None = None) -> dict[str, Any] | None:
    """A group-version's document (None: not served); shared and cached: not to be changed."""
    if not registry.in_group_version(group, version):
        return None
    return _v3(registry.kube_version, group, version, *_v3_key(registry, custom, group, version))[0]


def _v3_key(registry: Registry, custom: dict | None, group: str, version: str) -> tuple[tuple, str]:
    types = tuple((t.kind, t.plural, t.namespaced, tuple(sorted(t.verbs)))
                  for t in registry.in_group_version(group, version))
    mine = {kind: schema for (g, v, kind), schema in (custom or {}).items() if (g, v) == (group, version)}
    return types, json.dumps(mine, sort_keys=True)


@functools.lru_cache(maxsize=256)
def _v3(kube_version: str, group: str, version: str, types: tuple, custom: str) -> tuple[dict[str, Any], str]:
    """The document and its hash (as the index gives it)."""
    defs = schemas.swagger(kube_version)
    builtin = {g["kind"] for schema in defs.values() for g in schema.get("x-kubernetes-group-version-kind") or []
               if (g["group"], g["version"]) == (group, version)}  # custom resources take no strategic merge patch
    paths = {}
    for kind, plural, namespaced, verbs in types:
        scope = "/namespaces/{namespace}" if namespaced else ""
        gvk = {"group": group, "version": version, "kind": kind}
        if "patch" in verbs:
            patch = {
                "operationId": f"patch{kind}",
                "parameters": [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                               for p in ("dryRun", "fieldManager", "fieldValidation", "force")],
                "requestBody": {"content": {ct: {"schema": {"type": "object"}} for ct in (
                    "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml",
                    *(["application/strategic-merge-patch+json"] if kind in builtin else []))}, "required": True},
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            }
            paths[f"/{_gv_path(group, version)}{scope}/{plural}/{{name}}"] = {"patch": patch}
        elif verbs:  # a create-only kind (a review) or a read-only one: its operation names its GVK
            method, action = ("post", "post") if "create" in verbs else ("get", "list")
            paths[f"/{_gv_path(group, version)}{scope}/{plural}"] = {method: {
                "operationId": f"{'create' if method == 'post' else 'list'}{kind}",
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}}
    kinds = {kind for kind, *_ in types}
    roots = [name for name, schema in defs.items()
             if any((g["group"], g["version"]) == (group, version)
                    and (g["kind"] in kinds or g["kind"][:-4] in kinds or name.startswith("io.k8s.apimachinery."))
                    for g in schema.get("x-kubernetes-group-version-kind") or [])]
    found = {name: _v3_schema(defs[name]) for name in _closure(defs, roots)}
    for kind, schema in json.loads(custom).items():
        schema = _custom_schema(kube_version, schema, group, version, kind)
        found[_custom_name(group, version, kind)] = _v3_schema(schema)
        found.update((name, _v3_schema(defs[name])) for name in _closure(defs, [_OBJECT_META]))
    for name, (description, one_of, extra) in _V3_SCALARS.items():
        if name in found:
            found[name] = {"description": description, "oneOf": [{"type": t} for t in one_of], **extra}
    info = {"title": "Kubernetes", "version": apis.version_info(kube_version)["gitVersion"]}
    document = {"openapi": "3.0.0", "info": info, "paths": paths,
                "components": {"schemas": dict(sorted(found.items()))}}
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32].upper()
    return document, digest


_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# IntOrString and Quantity in v3: OpenAPIV3OneOfTypes (k8s.io/apimachinery/pkg/util/intstr/intstr.go,
# pkg/api/resource/quantity.go) through kube-openapi's GenerateOpenAPIV3OneOfSchema.
_V3_SCALARS = {name: (schemas.SCALARS[name]["description"], one_of, extra) for name, one_of, extra in (
    ("io.k8s.apimachinery.pkg.util.intstr.IntOrString", ("integer", "string"), {"format": "int-or-string"}),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", ("string", "number"), {}))}


def _closure(defs: dict[str, dict], roots: list[str]) -> list[str]:
    """`roots` and every definition they refer to, directly or not."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        todo += _refs(defs[name])
    return sorted(seen)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"].rsplit("/", 1)[-1]] if isinstance(value.get("$ref"), str) else []
        return found + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def _v3_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A swagger schema as kube-openapi's v3 has it: refs into components, alone or in `allOf`."""
    out = {}
    for key, value in schema.items():
        if key == "properties":
            value = {field: _v3_schema(sub) for field, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            value = _v3_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            value = [_v3_schema(sub) for sub in value]
        out[key] = value
    ref = out.pop("$ref", None)
    if ref is None:
        return out
    ref = {"$ref": "#/components/schemas/" + ref.rsplit("/", 1)[-1]}
    return {"allOf": [ref], **out} if out else ref


def _custom_name(group: str, version: str, kind: str) -> str:
    """A custom resource's definition name: its group reversed ("metallb.io" -> "io.metallb")."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _custom_schema(kube_version: str, schema: dict[str, Any], group: str, version: str,
                   kind: str) -> dict[str, Any]:
    """A CRD version's openAPIV3Schema as published: with apiVersion, kind, metadata and the GVK."""
    meta = schemas.swagger(kube_version)["io.k8s.api.apps.v1.Deployment"]["properties"]  # as on every kind
    out = copy.deepcopy(schema)
    properties = out.setdefault("properties", {})
    for field in ("apiVersion", "kind", "metadata"):
        ref = {"$ref": "#/definitions/" + _OBJECT_META} if field == "metadata" else {}
        properties[field] = {**meta[field], **ref}
    out["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return out


def openapi_v2_document(registry: Registry) -> dict[str, Any]:
    """The swagger document: the definitions every served built-in kind uses (cached per version)."""
    return _v2(registry.kube_version, _served(registry))


def _served(registry: Registry) -> frozenset[tuple[str, str]]:
    return frozenset((g, v) for g, versions in registry.group_versions().items() for v in versions)


@functools.lru_cache(maxsize=8)
def _v2(kube_version: str, served: frozenset) -> dict[str, Any]:
    defs = schemas.swagger(kube_version)
    roots = [name for name, schema in defs.items()
             if any((g["group"], g["version"]) in served for g in schema.get("x-kubernetes-group-version-kind") or [])]
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": apis.version_info(kube_version)["gitVersion"]},
            "paths": {}, "definitions": {name: defs[name] for name in _closure(defs, roots)}}


def openapi_v2_protobuf(registry: Registry) -> bytes:
    """`openapi_v2_document` as the apiserver answers a protobuf Accept: gnostic's openapi.v2.Document
    (github.com/google/gnostic openapiv2/OpenAPIv2.proto), vendor extensions as YAML in `Any.yaml`
    (kube-openapi pkg/handler, ToProtoBinary)."""
    return _v2_protobuf(registry.kube_version, _served(registry))


@functools.lru_cache(maxsize=8)
def _v2_protobuf(kube_version: str, served: frozenset) -> bytes:
    document = _v2(kube_version, served)
    info = _field(1, document["info"]["title"]) + _field(2, document["info"]["version"])
    definitions = b"".join(_field(1, _field(1, name) + _field(2, _proto_schema(schema)))
                           for name, schema in document["definitions"].items())
    return _field(1, document["swagger"]) + _field(2, info) + _field(8, b"") + _field(9, definitions)


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _proto_schema(schema: dict[str, Any]) -> bytes:
    """A swagger schema as gnostic's Schema message (the keywords Kubernetes' definitions use)."""
    out = b""
    for number, key in ((1, "$ref"), (2, "format"), (4, "description")):
        if key in schema:
            out += _field(number, schema[key])
    out += b"".join(_field(19, name) for name in schema.get("required") or [])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out += _field(21, _field(1, _proto_schema(extra)))
    elif isinstance(extra, bool):
        out += _field(21, _tag(2, 0) + _varint(int(extra)))
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        out += _field(22, b"".join(_field(1, t) for t in types))
    if "items" in schema:
        out += _field(23, _field(1, _proto_schema(schema["items"])))
    out += b"".join(_field(24, _proto_schema(sub)) for sub in schema.get("allOf") or [])
    if "properties" in schema:
        out += _field(25, b"".join(_field(1, _field(1, name) + _field(2, _proto_schema(sub)))
                                   for name, sub in schema["properties"].items()))
    for name, value in schema.items():
        if name.startswith("x-"):
            out += _field(31, _field(1, name) + _field(2, _field(2, yaml.dump(value, Dumper=_DUMPER))))
    return out


def _varint(value: int) -> bytes:
    out = b""
    while True:
        low, value = value & 0x7F, value >> 7
        out += bytes([low | (0x80 if value else 0)])
        if not value:
            return out


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _field(number: int, value: str | bytes) -> bytes:
    """A length-delimited field: a string or an embedded message."""
    data = value.encode() if isinstance(value, str) else value
    return _tag(number, 2) + _varint(len(data)) + data
