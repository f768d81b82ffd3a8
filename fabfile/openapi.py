"""Rendered objects checked against the cluster's own OpenAPI v3 schemas, before anything is written.

`helm template --validate` does not do this against a current cluster: kubectl's validator (which
helm uses) skips its schema check when the server takes the `fieldValidation` parameter
(staging/src/k8s.io/kubectl/pkg/validation/schema.go, paramVerifyingSchema), and helm writes
without that parameter, so the server's default, Warn, drops an unknown field with a warning nobody
reads. Here each object is checked strictly against the schema the cluster publishes for its kind:
unknown fields (except under `additionalProperties` or `x-kubernetes-preserve-unknown-fields`),
wrong types (IntOrString, Quantity and `nullable` as Kubernetes reads them; null is absent, as the
apiserver's decoder takes it) and missing required fields. Kinds the cluster publishes no schema
for are left to helm's discovery check.
"""
from __future__ import annotations

from typing import Any, Iterable

from fabric import Connection

from . import probes
from .inventory import Host

SHOWN = 5  # problems listed at most
_KEPT = ("properties", "additionalProperties", "items", "required", "allOf", "anyOf", "oneOf", "$ref")


def problems(documents: dict[str, dict], objects: list[dict]) -> list[str]:
    """What is wrong with each object against its kind's schema, as `Kind/name: path: what`."""
    from jsonschema import Draft202012Validator

    strict_components = {path: {n: strict(s) for n, s in ((d.get("components") or {}).get("schemas") or {}).items()}
                         for path, d in documents.items()}
    found = []
    for obj in objects:
        api_version, kind = str(obj.get("apiVersion", "")), obj.get("kind")
        path = probes.group_version_path(api_version)
        components = ((documents.get(path) or {}).get("components") or {}).get("schemas") or {}
        group, _, version = api_version.rpartition("/")
        gvk = {"group": group, "version": version, "kind": kind}
        name = next((n for n, s in components.items() if gvk in (s.get("x-kubernetes-group-version-kind") or [])),
                    None)
        if name is None:
            continue
        validator = Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                          "components": {"schemas": strict_components[path]}})
        label = f"{kind}/{(obj.get('metadata') or {}).get('name', '')}"
        found += sorted(f"{label}: {where or '(top level)'}: {what}"
                        for error in validator.iter_errors(_without_nulls(obj)) for where, what in _explained(error))
    return found


def summary(found: list[str]) -> str:
    """The first few problems, one `; ` apart, and how many more."""
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(found[:SHOWN]) + more


def check(conn: Connection, host: Host, objects: list[dict]) -> list[str]:
    """`problems` against the cluster `host` reaches."""
    return problems(probes.openapi_documents(conn, host, objects), objects)


def strict(schema: Any, structural: bool = True) -> Any:
    """An OpenAPI v3 schema of Kubernetes as a JSON schema that refuses what the apiserver refuses:
    only structure, types and required fields kept; an object with properties takes no others
    unless it says so (`additionalProperties`, `x-kubernetes-preserve-unknown-fields`). Inside
    `allOf`/`anyOf`/`oneOf` (not `structural`: value checks over the structure, as a CRD may have
    them) properties are not closed."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key in _KEPT:
        if key not in schema:
            continue
        value = schema[key]
        if key == "properties":
            value = {field: strict(sub, structural) for field, sub in value.items()}
        elif key in ("allOf", "anyOf", "oneOf"):
            value = [strict(sub, False) for sub in value]
        elif key in ("items", "additionalProperties"):
            value = strict(value, structural)
        out[key] = value
    if schema.get("x-kubernetes-int-or-string") or schema.get("format") == "int-or-string":
        out["type"] = ["integer", "string"]
        for alternatives in ("oneOf", "anyOf"):
            out.pop(alternatives, None)
    elif "type" in schema:
        out["type"] = schema["type"]
    if structural and "properties" in out and "additionalProperties" not in out \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _path(parts: Iterable[str | int], field: str = "") -> str:
    out = ""
    for part in [*parts, *([field] if field else [])]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}


def _explained(error: Any) -> list[tuple[str, str]]:
    """(path, what) for one validation error of jsonschema's."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = error.schema.get("properties") or {}
        return [(_path(where, k), "unknown field") for k in error.instance if k not in known]
    if error.validator == "required":
        return [(_path(where, f), "required field missing") for f in error.validator_value if f not in error.instance]
    if error.validator in ("type", "oneOf", "anyOf"):
        wanted = error.validator_value if error.validator == "type" else [
            s["type"] for s in error.validator_value if isinstance(s, dict) and "type" in s]
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return [(_path(where), f"{_JSON_TYPES.get(type(error.instance), 'value')} given, {wanted or 'another type'} "
                               "wanted")]
    return [(_path(where), error.message)]
