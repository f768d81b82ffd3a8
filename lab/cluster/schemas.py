"""Decoding a request body as the apiserver's JSON decoder does, against the real Kubernetes schemas.

The schemas are the strict JSON schemas `kubernetes-validate` ships per Kubernetes version
(generated from the apiserver's own OpenAPI; for 1.24, the oldest it ships, 1.25's). As
sigs.k8s.io/json decodes into the Go types: a value of the wrong JSON type is a 400
`... cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field
DeploymentSpec.spec.replicas of type int32`; a quantity that does not parse is a 400 too
(Quantity's UnmarshalJSON); unknown fields follow `fieldValidation`
(staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go, fieldValidation): Strict: 400
`strict decoding error: unknown field "spec.foo"`; Warn (the default): dropped, each named in a
`Warning` header; Ignore: dropped silently. `required` is not a decoding matter (see `validation`).
Kinds without a schema (custom resources, APIs removed by 1.25) are not checked here.

`swagger` gives the same definitions back in the form the apiserver publishes them at /openapi/v2
(see `discovery` for /openapi/v3).
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from lab.cluster import errors
from lab.cluster.store import ResourceType

# k8s.io/apimachinery/pkg/api/resource/quantity.go: ErrFormatWrong
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_QUANTITY_SUFFIX = re.compile(r"^(|[numkMGTPE]|Ki|Mi|Gi|Ti|Pi|Ei|[eE][-+]?[0-9]+)$")
_QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def _schema_dir(minor: int, variant: str = "-strict") -> Path:
    import kubernetes_validate
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    shipped = sorted((int(p.name.split(".")[1]), p) for p in root.glob(f"v1.*.0-local{variant}"))
    return next((p for m, p in shipped if m >= minor), shipped[-1][1])


@functools.lru_cache(maxsize=None)
def definitions(kube_version: str, variant: str = "-strict") -> dict[str, Any]:
    """The `$defs` of the strict schemas (`variant` "": the plain ones) of a Kubernetes version
    ("1.32"), by OpenAPI name."""
    path = _schema_dir(int(kube_version.split(".")[1]), variant) / "_definitions.json"
    return json.loads(path.read_text())["$defs"]


# The two types whose schema kube-openapi's generator does not derive from Go fields: their v2 form
# (OpenAPISchemaType/OpenAPISchemaFormat) in k8s.io/apimachinery/pkg/util/intstr/intstr.go and
# pkg/api/resource/quantity.go; `discovery` gives their v3 form (OpenAPIV3OneOfTypes).
SCALARS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                       "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you "
                       "to have, for example, a JSON field that can accept a name or number.",
        "type": "string", "format": "int-or-string"},
    _QUANTITY_DEF: {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() "
                       "accessors.",
        "type": "string"},
}


@functools.lru_cache(maxsize=None)
def swagger(kube_version: str) -> dict[str, dict[str, Any]]:
    """The definitions of a Kubernetes version as its swagger.json (/openapi/v2) has them: the
    plain schemas with what kubernetes-validate's JSON-schema conversion added taken back out
    (`"#/$defs/"` refs, `"null"` in every type, apiVersion and kind enums, the oneOf scalars)."""
    found = {}
    for name, schema in definitions(kube_version, "").items():
        if name in SCALARS:
            found[name] = dict(SCALARS[name])
            continue
        schema = _swagger_schema(schema)
        if schema.get("x-kubernetes-group-version-kind"):
            for field in ("apiVersion", "kind"):
                (schema.get("properties") or {}).get(field, {}).pop("enum", None)
        found[name] = schema
    return found


def _swagger_schema(schema: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in schema.items():
        if key == "$ref":
            value = "#/definitions/" + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            kept = [t for t in value if t != "null"]
            value = kept[0] if len(kept) == 1 else kept
        elif key == "properties":
            value = {field: _swagger_schema(sub) for field, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _swagger_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            value = [_swagger_schema(sub) for sub in value]
        out[key] = value
    return out


@functools.lru_cache(maxsize=None)
def _kinds(kube_version: str) -> dict[tuple[str, str, str], str]:
    found = {}
    for name, schema in definitions(kube_version).items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            found.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return found


def schema_name(kube_version: str, resource: ResourceType) -> str | None:
    return _kinds(kube_version).get((resource.group, resource.version, resource.kind))


def valid_quantity(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    match = QUANTITY.match(value) if isinstance(value, str) else None
    if not match:
        return False
    try:
        float(match.group(1))
    except ValueError:
        return False
    return bool(_QUANTITY_SUFFIX.match(match.group(2)))


class _Decoder:
    def __init__(self, defs: dict[str, Any], prune: bool):
        self.defs, self.prune = defs, prune
        self.unknown: list[str] = []

    def walk(self, value: Any, schema: dict[str, Any], path: str, gopath: str, struct: str) -> None:
        name = None
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.defs[name]
        if value is None:
            return
        if name == _QUANTITY_DEF:
            if isinstance(value, str) and not valid_quantity(value):
                raise _DecodeError(QUANTITY_ERROR)
        if "oneOf" in schema:  # IntOrString, Quantity
            allowed = {t for option in schema["oneOf"] for t in _types(option)}
            if not any(_is(value, t) for t in allowed):
                raise _DecodeError(self._type_error(value, struct, gopath, _go_type(schema, name)))
            return
        types = _types(schema)
        if types and not any(_is(value, t) for t in types):
            raise _DecodeError(self._type_error(value, struct, gopath, _go_type(schema, name)))
        if isinstance(value, dict):
            here = name.rsplit(".", 1)[-1] if name else struct
            properties = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key in list(value):
                sub_path = f"{path}.{key}" if path else key
                sub_go = f"{gopath}.{key}" if gopath else key
                if properties is not None and key in properties:
                    self.walk(value[key], properties[key], sub_path, sub_go, here)
                elif isinstance(extra, dict):
                    self.walk(value[key], extra, f"{path}[{key}]", gopath, here)
                elif extra is False:
                    self.unknown.append(sub_path)
                    if self.prune:
                        del value[key]
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                self.walk(item, schema["items"], f"{path}[{index}]", gopath, struct)

    @staticmethod
    def _type_error(value: Any, struct: str, gopath: str, go_type: str) -> str:
        found = {bool: "bool", str: "string", dict: "object", list: "array"}.get(type(value), "number")
        return f"json: cannot unmarshal {found} into Go struct field {struct}.{gopath} of type {go_type}"


class _DecodeError(Exception):
    pass


def _types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type") or []
    return [t for t in ([declared] if isinstance(declared, str) else declared) if t != "null"]


def _is(value: Any, json_type: str) -> bool:
    if json_type == "boolean" or isinstance(value, bool):
        return json_type == "boolean" and isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) or isinstance(value, float) and value.is_integer()
    types = {"object": dict, "array": list, "string": str, "number": (int, float)}
    return isinstance(value, types.get(json_type, object))


def _go_type(schema: dict[str, Any], name: str | None) -> str:
    if name and name.startswith("io.k8s."):
        parts = name.split(".")
        package = {"Quantity": "resource", "IntOrString": "intstr"}.get(parts[-1], parts[-2])
        return f"{package}.{parts[-1]}"
    types = _types(schema)
    json_type = types[0] if types else ""
    if json_type == "integer":
        return schema.get("format") or "int"
    if json_type == "array":
        items = schema.get("items") or {}
        ref = items.get("$ref", "").rsplit("/", 1)[-1] or None
        return "[]" + _go_type(items, ref)
    if json_type == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            ref = extra.get("$ref", "").rsplit("/", 1)[-1] or None
            return "map[string]" + _go_type(extra, ref)
        return "map[string]interface {}"
    return {"string": "string", "boolean": "bool", "number": "float64"}.get(json_type, "interface {}")


def decode(kube_version: str, resource: ResourceType, obj: dict[str, Any], field_validation: str | None,
           known_unknown: frozenset[str] = frozenset()) -> list[str]:
    """Check `obj` (changed in place: unknown fields dropped unless Strict) as the apiserver decodes a
    body for `resource`; return the warnings to send. `known_unknown`: unknown fields already stored
    (a patch is not blamed for them)."""
    name = schema_name(kube_version, resource)
    if name is None:
        return []
    mode = validation_mode(field_validation)
    decoder = _Decoder(definitions(kube_version), prune=mode != "Strict")
    try:
        decoder.walk(obj, {"$ref": name}, "", "", resource.kind)
    except _DecodeError as exc:
        raise undecodable(resource, str(exc)) from None
    return unknown_answer(resource, mode, [f for f in decoder.unknown if f not in known_unknown])


def validation_mode(field_validation: str | None) -> str:
    """The `fieldValidation` query parameter (Warn when absent); 400 for any other value."""
    mode = field_validation or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation: Unsupported value: \"{mode}\": supported values: "
                                 '"Ignore", "Strict", "Warn"')
    return mode


def undecodable(resource: ResourceType, message: str) -> errors.ApiError:
    """The decoder's 400 for a body of `resource`."""
    return errors.bad_request(f'{resource.kind} in version "{resource.version}" cannot be handled as a '
                              f"{resource.kind}: {message}")


def strict_error(unknown: list[str]) -> str:
    return "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown)


def unknown_answer(resource: ResourceType, mode: str, unknown: list[str]) -> list[str]:
    """What `mode` makes of the unknown fields of a body: Strict, the decoder's 400; Warn, a
    warning each; Ignore, nothing."""
    if mode == "Strict" and unknown:
        raise undecodable(resource, strict_error(unknown))
    return [f'unknown field "{f}"' for f in unknown] if mode == "Warn" else []


def unknown_fields(kube_version: str, resource: ResourceType, obj: dict[str, Any]) -> frozenset[str]:
    """The unknown fields of a stored object (none unless stored before validation)."""
    name = schema_name(kube_version, resource)
    if name is None:
        return frozenset()
    decoder = _Decoder(definitions(kube_version), prune=False)
    try:
        decoder.walk(json.loads(json.dumps(obj)), {"$ref": name}, "", "", resource.kind)
    except _DecodeError:
        pass
    return frozenset(decoder.unknown)
