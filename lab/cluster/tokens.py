"""The `serviceaccounts/token` subresource (TokenRequest, `kubectl create token SA`), as the apiserver's
TokenREST answers it (pkg/registry/core/serviceaccount/storage/token.go, validation from
pkg/apis/authentication/validation/validation.go ValidateTokenRequest, defaults from
pkg/apis/authentication/v1/defaults.go): the body's name and namespace, if given, must be the URL's
(422), the ServiceAccount must exist (404), `expirationSeconds` defaults to 3600 and must lie within
10 minutes and 2^32 seconds (422), empty `audiences` become the apiserver's (kubeadm's default issuer
`https://kubernetes.default.svc.cluster.local`); nothing is stored, and the answer is the request
with `status.token` and `status.expirationTimestamp` (201).

Stand-in: the emulator authenticates nobody, so the token is an opaque random string, not a signed
JWT, and the emulator accepts it no more and no less than any other bearer token.
"""
from __future__ import annotations

import copy
import datetime
import secrets
from typing import Any

from lab.cluster import errors
from lab.cluster.cluster import Cluster

API_AUDIENCES = ["https://kubernetes.default.svc.cluster.local"]
DEFAULT_SECONDS, MIN_SECONDS, MAX_SECONDS = 3600, 600, 1 << 32
_KIND, _GROUP = "TokenRequest", "authentication.k8s.io"


def token_request(cluster: Cluster, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """The TokenRequest answered for ServiceAccount `namespace/name`, with its token."""
    request = copy.deepcopy(body)
    meta = request.get("metadata") or {}
    for field, wanted, what in (("name", name, "name"), ("namespace", namespace, "namespace")):
        if meta.get(field) and meta[field] != wanted:
            raise errors.invalid_object(_KIND, _GROUP, name, [errors.field_invalid(
                f"metadata.{field}", meta[field], f"must match the service account {what} if specified")])
    account = cluster.get(cluster.core("serviceaccounts"), namespace, name)
    spec = request.get("spec") or {}
    seconds = spec.get("expirationSeconds")
    seconds = DEFAULT_SECONDS if seconds is None else seconds
    if seconds < MIN_SECONDS:
        problem = "may not specify a duration less than 10 minutes"
    elif seconds > MAX_SECONDS:
        problem = "may not specify a duration larger than 2^32 seconds"
    else:
        problem = ""
    if problem:
        raise errors.invalid_object(_KIND, _GROUP, "", [errors.field_invalid("spec.expirationSeconds", seconds,
                                                                             problem)])
    issued = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expires = (issued + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": _KIND, "apiVersion": f"{_GROUP}/v1",
            "metadata": {"name": account["metadata"]["name"], "namespace": namespace, "creationTimestamp": None},
            "spec": {**spec, "audiences": spec.get("audiences") or list(API_AUDIENCES), "expirationSeconds": seconds,
                     "boundObjectRef": spec.get("boundObjectRef")},
            "status": {"token": secrets.token_urlsafe(48), "expirationTimestamp": expires}}
