"""API errors as the real kube-apiserver reports them: a `Status` body with a standard reason.

Clients branch on `reason` (kubectl prints `Error from server (AlreadyExists): ...`, helm checks
`IsNotFound`/`IsAlreadyExists`), so reasons, codes and messages follow the apiserver's wording.
"""
from __future__ import annotations

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
