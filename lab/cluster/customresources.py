"""Custom resources checked against their CRD's structural schema, as apiextensions-apiserver does.

From staging/src/k8s.io/apiextensions-apiserver and the CRD documentation
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/):
- Decoding (pkg/apiserver/customresource_handler.go, unstructuredDecoder, and
  pkg/apiserver/schema/pruning/algorithm.go): a field the schema does not specify is unknown and
  pruned, unless its object says `x-kubernetes-preserve-unknown-fields: true` (or the field is a
  value of `additionalProperties`); `apiVersion`, `kind` and `metadata` at the root (and of an
  `x-kubernetes-embedded-resource`) are kept. With `fieldValidation=Strict` (kubectl's default) an
  unknown field is a 400 `Kind in version "v1" cannot be handled as a Kind: strict decoding error:
  unknown field "spec.x"` (the handlers' transformDecodeError); with Warn (the default) a warning;
  with Ignore nothing. A `null` where the schema is not `nullable` is dropped before defaulting
  (pkg/apiserver/schema/defaulting/prunenulls.go).
- Defaulting: each absent property's `default` (`controllers.CustomResourceController`).
- Validation (pkg/apiserver/validation/validation.go, kubeOpenAPIResultToFieldErrors, messages from
  k8s.io/kube-openapi/pkg/validation/errors): 422 Invalid with one cause per field: `type`
  (`spec.x: Invalid value: "string": spec.x in body must be of type integer: "string"`), `required`
  (`spec.x: Required value`), `enum` (`Unsupported value`), `pattern`, `minimum`/`maximum`,
  `minLength`, `minItems`, `format` is not checked. Not covered: CEL rules (`x-kubernetes-validations`),
  list types and map keys, `maxLength`/`maxItems`/`maxProperties`, `oneOf`/`anyOf`/`allOf`/`not`,
  ratcheting of unchanged invalid values on update, the metadata's own pruning to ObjectMeta.
"""
from __future__ import annotations

import json
import re
from typing import Any

from lab.cluster import errors, schemas
from lab.cluster.errors import FieldError
from lab.cluster.store import ResourceType

_CRDS = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_ROOT_KEPT = ("apiVersion", "kind", "metadata")
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def schema_of(cluster: Any, resource: ResourceType) -> dict[str, Any] | None:
    """The openAPIV3Schema of the CRD version that serves `resource` (None: not a custom resource)."""
    crds = cluster.registry.get(*_CRDS)
    crd = cluster.store.get(crds, None, f"{resource.plural}.{resource.group}") if crds else None
    if crd is None:
        return None
    version = next((v for v in crd["spec"].get("versions") or [] if v.get("name") == resource.version), {})
    return (version.get("schema") or {}).get("openAPIV3Schema") or {}


def decode(resource: ResourceType, schema: dict[str, Any], obj: dict[str, Any],
           field_validation: str | None, patched: bool = False) -> list[str]:
    """Prune `obj` (in place) of what `schema` does not specify, as the decoder does; raise the strict
    decoding error, or return the warnings, that `field_validation` asks for. `patched`: `obj` is a
    JSON or merge patch's result, whose strict error the patch handler reports as 422 Invalid on the
    field `patch` (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go, applyPatchToCurrentObject)."""
    mode = schemas.validation_mode(field_validation)
    shown = json.dumps(obj, sort_keys=True, separators=(",", ":")) if patched else ""
    unknown: list[str] = []
    _prune(obj, schema, "", unknown, root=True)
    unknown.sort()  # the decoder sorts the pruned paths
    if mode == "Strict" and unknown and patched:
        raise errors.invalid_object("", "", "", [errors.field_invalid("patch", shown, schemas.strict_error(unknown))])
    return schemas.unknown_answer(resource, mode, unknown)


def _prune(value: Any, schema: dict[str, Any], path: str, unknown: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        kept = _ROOT_KEPT if root or schema.get("x-kubernetes-embedded-resource") else ()
        for key in list(value):
            sub = f"{path}.{key}" if path else key
            if key in kept:
                continue
            if key in properties:
                field = properties[key]
                if value[key] is None and not field.get("nullable"):
                    del value[key]
                else:
                    _prune(value[key], field, sub, unknown)
            elif isinstance(extra, dict):
                _prune(value[key], extra, f"{path}[{key}]", unknown)
            elif extra is True or schema.get(PRESERVE):
                continue
            else:
                unknown.append(sub)
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{index}]", unknown)


def _type_name(value: Any) -> str:
    """The JSON type kube-openapi's type validator reports for a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or isinstance(value, float) and value.is_integer():
        return "integer"
    return {float: "number", str: "string", dict: "object", list: "array"}.get(type(value), "object")


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    wanted = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return _type_name(value) in ("integer", "string")
    if not wanted:
        return True
    found = _type_name(value)
    return found == wanted or wanted == "number" and found == "integer" or value is None and schema.get("nullable")


def validate(schema: dict[str, Any], obj: dict[str, Any]) -> list[FieldError]:
    """The schema's errors in `obj` (metadata left to the generic checks)."""
    out: list[FieldError] = []
    _check({k: v for k, v in obj.items() if k not in _ROOT_KEPT},
           {**schema, "properties": {k: v for k, v in (schema.get("properties") or {}).items()
                                     if k not in _ROOT_KEPT},
            "required": [r for r in schema.get("required") or [] if r not in _ROOT_KEPT]}, "", out)
    return out


def _check(value: Any, schema: dict[str, Any], path: str, out: list[FieldError]) -> None:
    where = path or "<root>"
    if not _type_ok(value, schema):
        found = _type_name(value)
        out.append(FieldError("FieldValueTypeInvalid", where, f'Invalid value: "{found}": {where} in body must be '
                              f'of type {schema.get("type") or "integer,string"}: "{found}"'))
        return
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(errors.go_value(v) if isinstance(v, str) else errors.go_value(errors.go_value(v))
                            for v in schema["enum"])
        out.append(FieldError("FieldValueNotSupported", where,
                                     f"Unsupported value: {errors.go_value(value)}: supported values: {allowed}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(errors.field_invalid(where, value, f"{where} in body should be at least "
                                            f"{schema['minLength']} chars long"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(errors.field_invalid(where, value, f"{where} in body should match '{schema['pattern']}'"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(errors.field_invalid(where, value, f"{where} in body should be greater than or equal to "
                                            f"{schema['minimum']:g}"))
        if "maximum" in schema and value > schema["maximum"]:
            out.append(errors.field_invalid(where, value, f"{where} in body should be less than or equal to "
                                            f"{schema['maximum']:g}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(errors.field_invalid(where, value, f"{where} in body should have at least "
                                            f"{schema['minItems']} items"))
        for index, item in enumerate(value):
            _check(item, schema.get("items") or {}, f"{path}[{index}]", out)
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                out.append(errors.field_required(f"{path}.{name}" if path else name))
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            if key in (schema.get("properties") or {}):
                _check(item, schema["properties"][key], sub, out)
            elif isinstance(extra, dict):
                _check(item, extra, sub, out)
