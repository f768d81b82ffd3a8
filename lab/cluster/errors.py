"""API errors as the real kube-apiserver reports them: a `Status` body with a standard reason.

Clients branch on `reason` (kubectl prints `Error from server (AlreadyExists): ...`, helm checks
`IsNotFound`/`IsAlreadyExists`), so reasons, codes and messages follow the apiserver's wording.
"""
from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """An error answered to the client as a `v1 Status` with `code` as the HTTP status."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(plural, group)} "{name}" not found',
                    {"name": name, "group": group, "kind": plural} if group else
                    {"name": name, "kind": plural})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(plural, group)} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural} if group else
                    {"name": name, "kind": plural})


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(plural, group)} '
                    f'"{name}": the object has been modified; please apply your changes to the '
                    "latest version and try again",
                    {"name": name, "group": group, "kind": plural} if group else
                    {"name": name, "kind": plural})


def invalid(kind: str, group: str, name: str, field: str, detail: str) -> ApiError:
    """422 Invalid for one field, e.g. `spec.ports[0].nodePort: Invalid value: 30080: ...`."""
    cause = f"{field}: {detail}"
    details = {"name": name, "kind": kind, "causes": [
        {"reason": "FieldValueInvalid", "message": detail, "field": field}]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {cause}', details)


def forbidden(kind: str, group: str, name: str, field: str, detail: str) -> ApiError:
    """422 Invalid for a field that may not change, e.g. `spec: Forbidden: updates to ... are forbidden`."""
    details = {"name": name, "kind": kind, "causes": [
        {"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}", "field": field}]}
    if group:
        details["group"] = group
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {field}: Forbidden: {detail}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested "
                       "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: application/json, application/yaml (got "{content_type}")')


def expired(requested: str, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def resource_not_found(path: str) -> ApiError:
    """404 for a URL naming no known resource (kubectl: `the server doesn't have a resource type`)."""
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    {"causes": [{"reason": "UnexpectedServerResponse", "message": f"404 page not found: {path}"}]})


class FieldError:
    """One field's error as k8s.io/apimachinery/pkg/util/validation/field formats it: `FIELD: BODY`."""

    def __init__(self, reason: str, field: str, body: str):
        self.reason, self.field, self.body = reason, field, body

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def go_value(value: Any) -> str:
    """A value as field.Invalid prints it (Go's %#v for maps and lists, quoted strings)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "map[string]string{" + ", ".join(f"{json.dumps(k)}:{json.dumps(v)}"
                                                 for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[]string{" + ", ".join(json.dumps(v) for v in value) + "}"
    return json.dumps(value)


def field_required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def field_invalid(field: str, value: Any, detail: str, shown: str | None = None) -> FieldError:
    return FieldError("FieldValueInvalid", field, f"Invalid value: {shown or go_value(value)}: {detail}")


def field_forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, f"Forbidden: {detail}")


def invalid_object(kind: str, group: str, name: str, errs: list[FieldError]) -> ApiError:
    """422 Invalid with one cause per field error (apimachinery errors.NewInvalid)."""
    joined = str(errs[0]) if len(errs) == 1 else "[" + ", ".join(str(e) for e in errs) + "]"
    details: dict[str, Any] = {"name": name, "kind": kind,
                               "causes": [{"reason": e.reason, "message": e.body, "field": e.field} for e in errs]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{kind}.{group} "{name}" is invalid: {joined}' if group else
                    f'{kind} "{name}" is invalid: {joined}', details)
