"""The four PATCH types of the Kubernetes API, applied to plain JSON objects.

- JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge, `null` deletes,
  anything else replaces.
- JSON patch (RFC 6902, `application/json-patch+json`), through the `jsonpatch` package.
- Strategic merge patch (`application/strategic-merge-patch+json`, what kubectl and helm send
  for built-in kinds): like a merge patch, but lists of named things (containers, env, ports,
  volumes, ...) merge element by element on their merge key, as the Go types' `patchMergeKey`
  tags say, and the directives `$patch`, `$setElementOrder/`, `$deleteFromPrimitiveList/` and
  `$retainKeys` are honoured. Lists without a merge key are replaced.
- Server-side apply (`application/apply-patch+yaml`): the applied configuration is merged into
  the live object like a strategic merge patch. Simplified: no field ownership, so fields a
  manager stops applying are not removed and there are no apply conflicts.
"""
from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from lab.cluster.errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Lists merged element by element, by field name -> merge key (from the k8s API types' tags).
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
    "volumeDevices": "devicePath", "hostAliases": "ip", "conditions": "type",
    "ownerReferences": "uid", "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of primitives merged as sets (patchStrategy "merge" on a []string).
_MERGED_PRIMITIVE_LISTS = {"finalizers"}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def apply_patch(obj: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """The object after the patch; `obj` is not modified."""
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        try:
            return jsonpatch.apply_patch(copy.deepcopy(obj), patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in "
                           f"our request: {exc}") from exc
    if not isinstance(patch, dict):
        raise bad_request(f"{content_type} body must be a JSON object")
    if content_type == MERGE_PATCH:
        return merge_patch(obj, patch)
    if content_type in (STRATEGIC_MERGE_PATCH, APPLY_PATCH):
        return strategic_merge(obj, patch)
    raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown '
                   f'format - accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, '
                   f'{APPLY_PATCH}, {STRATEGIC_MERGE_PATCH}')


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: the result of applying `patch` to `target` (neither is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """A strategic merge patch of a map (neither argument is modified)."""
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return {}
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = strategic_merge(current if isinstance(current, dict) else {}, value, path + (key,))
            if value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, key, path)
        else:
            result[key] = copy.deepcopy(value)
    for key, removed in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in removed]
    for key, order in patch.items():
        if key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = _ordered(result[field], order, _merge_key(field, path))
    if "$retainKeys" in patch:
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_key(field: str, path: tuple[str, ...]) -> str | None:
    if field == "ports":
        # Container ports merge on containerPort, Service ports on port.
        return "containerPort" if any(part in _CONTAINER_LISTS for part in path) else "port"
    return _MERGE_KEYS.get(field)


def _merge_list(current: Any, patch: list, field: str, path: tuple[str, ...]) -> list:
    current = current if isinstance(current, list) else []
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return _strip_directives([item for item in patch if not (isinstance(item, dict) and "$patch" in item)])
    if field in _MERGED_PRIMITIVE_LISTS:
        return current + [item for item in patch if item not in current]
    key = _merge_key(field, path)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return _strip_directives(copy.deepcopy(patch))
    result = copy.deepcopy(current)
    for item in patch:
        index = next((i for i, existing in enumerate(result)
                      if isinstance(existing, dict) and existing.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item, path + (field,))
    return result


def _ordered(items: list, order: list, key: str | None) -> list:
    """Items sorted as `$setElementOrder` lists them; unlisted items keep their order, last."""
    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item
    wanted = [identity(entry) for entry in order]

    def rank(numbered: tuple[int, Any]) -> tuple[int, int]:
        n, item = numbered
        return (wanted.index(identity(item)) if identity(item) in wanted else len(wanted), n)
    return [item for _, item in sorted(enumerate(items), key=rank)]


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value
