"""The HTTP face of the emulator: a kmock `KubernetesEmulator` that real kubectl and helm accept.

Built on kmock: its handler, DSL and `Request` model (reactions added with kmock's DSL, e.g. to
inject a fault, still answer first), its `ObjectsArray` as the object store (`cluster.objects`
supports kmock's pattern assertions) and its bundled discovery data. Replaced, because real
clients fail on kmock's versions: request parsing (`/api/v1/namespaces` is not a namespaced prefix;
protobuf bodies are decoded, not read as text), discovery (core `groupVersion` is `v1`), OpenAPI,
CRUD (PUT, server-side apply, strategic merge, resourceVersions, standard error reasons) and watch
(JSON content type, resourceVersion replay, selectors, the initial-events-end BOOKMARK).
Only the last `KEPT_REQUESTS` requests are kept for kmock's views, since the emulator runs for long.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from lab.cluster import (
    apis,
    customresources,
    discovery,
    errors,
    nodes,
    patching,
    protobuf,
    schemas,
    tables,
    tokens,
    volumes,
)
from lab.cluster.cluster import Cluster
from lab.cluster.controllers import (
    CustomResourceController,
    DefaultServiceAccount,
    GarbageCollector,
    NamespaceController,
    SecretStrategy,
    bootstrap,
)
from lab.cluster.defaults import Defaulter
from lab.cluster.disruption import DisruptionController
from lab.cluster.metallb import MetalLBController
from lab.cluster.selectors import field_selector, label_selector
from lab.cluster.services import LoadBalancerController, ServiceAllocator
from lab.cluster.store import ResourceType, Store
from lab.cluster.workloads import WorkloadController

log = logging.getLogger("lab.cluster")
KEPT_REQUESTS = 1000
FOLLOW_EVERY = 0.05  # seconds between two reads of a followed log
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class Target:
    """What a resource URL names: `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/{sub}`."""
    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_target(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    return Target(group, version, rest[0] if rest else None, namespace,
                  rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None)


def query_bool(value: str | None) -> bool:
    """A boolean query parameter as the apiserver decodes it (apimachinery pkg/runtime/conversion.go
    Convert_Slice_string_To_bool): absent, "", "0" or "false" in any case is false, anything else
    true (so `watch=True`, as the Python clients send it, is a watch)."""
    return value is not None and value != "" and value != "0" and value.lower() != "false"


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def decode_body(body: bytes, content_type: str) -> Any:
    """The request body as JSON data, whatever encoding the client chose."""
    if not body:
        return None
    if content_type == protobuf.CONTENT_TYPE:
        return protobuf.decode(body)
    try:
        if content_type in ("application/yaml", patching.APPLY_PATCH):
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"error decoding request body: {exc}") from exc


def _json(data: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":")))


def _warn(response: aiohttp.web.StreamResponse, warnings: list[str]) -> aiohttp.web.StreamResponse:
    """Warning headers as the apiserver sends them (RFC 7234 warn-code 299, one header each)."""
    for text in warnings:
        response.headers.add("Warning", f"299 - {json.dumps(text)}")
    return response


ADMIN = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}


def _review(resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """A create-only review (`kubectl auth can-i`, `auth can-i --list`, `auth whoami`), answered and not
    stored, as the apiserver does. Stand-in: the emulator authenticates nobody and authorizes every
    request, so every client is the kubeconfig's admin (`system:masters`) and every review allows."""
    review = {**obj, "apiVersion": resource.api_version, "kind": resource.kind}
    review.setdefault("metadata", {})["creationTimestamp"] = None
    if resource.kind == "SelfSubjectRulesReview":
        review["status"] = {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}
    elif resource.kind == "SelfSubjectReview":
        review["status"] = {"userInfo": ADMIN}
    elif resource.kind == "TokenReview":
        review["status"] = {"authenticated": True, "user": ADMIN}
    else:  # the SubjectAccessReviews
        review["status"] = {"allowed": True}
    return review


def _read_log(path: Path | None, offset: int = 0) -> bytes:
    """A log file's bytes from `offset` on; none when there is no file."""
    if path is None:
        return b""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read()
    except FileNotFoundError:
        return b""


def _workload_of(cluster: Cluster, pod: dict[str, Any]) -> str:
    """The name of the Deployment, DaemonSet or StatefulSet that owns `pod` (through its ReplicaSet), else the pod's."""
    owner = next(iter(pod["metadata"].get("ownerReferences") or []), None)
    if owner and owner.get("kind") == "ReplicaSet":
        replicaset = cluster.store.get(cluster.resource("apps", "v1", "replicasets"), pod["metadata"]["namespace"],
                                       owner["name"])
        owner = next(iter((replicaset or {}).get("metadata", {}).get("ownerReferences") or []), owner)
    return owner["name"] if owner else pod["metadata"]["name"]


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


@attrs.define(kw_only=True)
class LabCluster(kmock.KubernetesEmulator):
    """A Kubernetes API server emulator; see the package docstring for what it emulates."""

    nodes: dict[str, str | None] = attrs.field(factory=lambda: {"lab-node-1": None})
    ready_delay: float = 0.5
    load_balancer: LoadBalancerController = attrs.field(factory=MetalLBController)
    server_address: str = "127.0.0.1:6443"
    pod_logs: Path | None = None  # `kubectl logs`: see `_pod_log`
    kube_version: str = apis.DEFAULT  # the Kubernetes version it is, with that version's APIs (`apis`)
    cluster: Cluster = attrs.field(init=False)
    _disruption: DisruptionController = attrs.field(init=False, factory=DisruptionController)

    def __attrs_post_init__(self) -> None:
        # Deliberately not KubernetesEmulator's: its fallback reactions are replaced by `_serve`.
        controllers = [Defaulter(self.kube_version), ServiceAllocator(), self.load_balancer,
                       nodes.NodeLifecycleController(), WorkloadController(self.nodes, self.ready_delay),
                       NamespaceController(), DefaultServiceAccount(), GarbageCollector(), CustomResourceController(),
                       SecretStrategy(), volumes.VolumeController(), self._disruption]
        self.cluster = Cluster(discovery.Registry(self.kube_version), Store(self.objects), controllers)

    def bootstrap(self) -> None:
        """Create what a fresh cluster has (idempotent: a restored state keeps its objects), then let
        the disruption controller and the load balancer catch up with the objects there are."""
        bootstrap(self.cluster, self.nodes)
        volumes.bootstrap(self.cluster)
        self._disruption.start(self.cluster)
        self.load_balancer.start(self.cluster)

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        started = time.monotonic()
        response: aiohttp.web.StreamResponse
        try:
            request = await self._parse(raw)
            self._requests.append(request)
            del self._requests[:-KEPT_REQUESTS]
            response = await self._handle(request)
        except errors.ApiError as exc:
            response = _json(exc.status(), exc.code)
        except Exception as exc:  # a bug here must reach the client as a Status, like apiserver panics
            log.exception("%s %s failed", raw.method, raw.path_qs)
            response = _json(errors.ApiError(500, "InternalError", f"Internal error occurred: {exc!r}").status(), 500)
        log.info("%s %s -> %s (%.1f ms)", raw.method, raw.path_qs, response.status, (time.monotonic() - started) * 1000)
        return response

    async def _parse(self, raw: aiohttp.web.BaseRequest) -> kmock.Request:
        body = await raw.read()
        target = parse_target(raw.path)
        data = None
        if raw.method in ("POST", "PUT", "PATCH", "DELETE"):
            data = decode_body(body, _media_type(raw.headers.get("Content-Type")))
        return kmock.Request(
            method=raw.method, url=raw.url, params=dict(raw.query), headers=dict(raw.headers),
            cookies=dict(raw.cookies), body=body, text=body.decode("utf-8", "replace"), data=data,
            action=self._action(raw.method, target, raw.query),
            resource=kmock.resource(target.group, target.version, target.plural) if target and target.plural else None,
            namespace=target.namespace if target else None, name=target.name if target else None,
            subresource=target.subresource if target else None, raw_request=raw)

    @staticmethod
    def _action(method: str, target: Target | None, query: Any) -> kmock.action | None:
        if target is None or target.plural is None:
            return None
        if method == "GET":
            return kmock.action.WATCH if query_bool(query.get("watch")) else (
                kmock.action.FETCH if target.name else kmock.action.LIST)
        return {"POST": kmock.action.CREATE, "PUT": kmock.action.UPDATE, "PATCH": kmock.action.UPDATE,
                "DELETE": kmock.action.DELETE}.get(method)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self._payloads:  # reactions added with kmock's DSL come first
            try:
                return await kmock.RawHandler._handle(self, request)
            except NotImplementedError:
                pass
        return await self._serve(request)

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if request.method == "GET":
            document = self._document(path, request.headers.get("Accept", ""))
            if document is not None:
                return document
        target = parse_target(path)
        if target is None or target.plural is None:
            raise errors.resource_not_found(path)
        resource = self.cluster.resource(target.group, target.version, target.plural)
        if target.namespace is not None and not resource.namespaced:
            raise errors.resource_not_found(path)
        if (resource.group, resource.plural, target.subresource, request.method) == ("", "pods", "log", "GET"):
            return await self._pod_log(request, target.namespace, target.name)
        if target.subresource and target.subresource not in resource.subresources & {"status", "scale", "eviction",
                                                                                      "token"}:
            raise errors.resource_not_found(path)
        response = await self._serve_resource(request, resource, target)
        if resource.warning and not response.prepared:  # a deprecated API version
            _warn(response, [resource.warning])
        return response

    def _custom_schemas(self) -> dict[tuple[str, str, str], dict]:
        """Each served custom resource version's openAPIV3Schema, by (group, version, kind)."""
        crds = self.cluster.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        found = {}
        for crd in self.cluster.store.list(crds):
            spec = crd.get("spec") or {}
            for version in spec.get("versions") or []:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema and version.get("served", True) and self.cluster.registry.get(
                        spec.get("group", ""), version.get("name", ""), (spec.get("names") or {}).get("plural", "")):
                    found[spec["group"], version["name"], spec["names"]["kind"]] = schema
        return found

    def _document(self, path: str, accept: str) -> aiohttp.web.StreamResponse | None:
        """Version, discovery and OpenAPI documents (None: not a document path)."""
        registry = self.cluster.registry
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return _json(registry.version_info)
        if path == "/api":
            return _json(discovery.api_versions(self.server_address))
        if path == "/apis":
            return _json(discovery.api_group_list(registry))
        if path == "/openapi/v2":
            if "protobuf" in accept:
                return aiohttp.web.Response(body=discovery.openapi_v2_protobuf(registry),
                                            content_type=discovery.OPENAPI_V2_PROTOBUF)
            return _json(discovery.openapi_v2_document(registry))
        if path == "/openapi/v3":
            return _json(discovery.openapi_v3_index(registry, self._custom_schemas()))
        if parts[:2] == ["openapi", "v3"]:
            target = parse_target("/".join(parts[2:]))
            document = None
            if target and not target.plural:
                document = discovery.openapi_v3_document(registry, target.group, target.version,
                                                         self._custom_schemas())
            if not document:
                raise errors.resource_not_found(path)
            return _json(document)
        if len(parts) == 2 and parts[0] == "api" or len(parts) == 3 and parts[0] == "apis":
            found = discovery.api_resource_list(registry, "" if parts[0] == "api" else parts[1], parts[-1])
        elif len(parts) == 2 and parts[0] == "apis":
            found = discovery.api_group(registry, parts[1])
        else:
            return None
        if found is None:
            raise errors.resource_not_found(path)
        return _json(found)

    async def _serve_resource(self, request: kmock.Request, resource: ResourceType,
                              target: Target) -> aiohttp.web.StreamResponse:
        cluster, params = self.cluster, request.params
        options = self._delete_options(request) if request.method == "DELETE" else {}
        dry_run = params.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        namespace = target.namespace if resource.namespaced else None
        method, name = request.method, target.name
        if target.subresource == "scale":
            return self._scale(request, resource, namespace, name, dry_run)
        if target.subresource == "eviction":  # POST only, as the apiserver routes it
            if method != "POST":
                raise errors.method_not_allowed()
            return _json(nodes.evict(cluster, namespace, name, self._object(request), dry_run), 201)
        if target.subresource == "token":  # POST only: a TokenRequest, answered and not stored
            if method != "POST":
                raise errors.method_not_allowed()
            return _json(tokens.token_request(cluster, namespace, name, self._object(request)), 201)
        if method == "GET" and name is None:
            if query_bool(params.get("watch")):
                return await self._watch(request, resource, namespace)
            return self._list(request, resource, namespace)
        if method == "GET":
            obj = cluster.get(resource, namespace, name)
            if "as=Table" in request.headers.get("Accept", ""):
                return _json(tables.table(resource, [obj], obj["metadata"]["resourceVersion"],
                                          params.get("includeObject", "Metadata")))
            return _json(obj)
        if method == "POST" and name is None and resource.kind.endswith("Review"):
            return _json(_review(resource, self._object(request)), 201)
        if method == "POST" and name is None:
            obj = self._object(request)
            warnings = self._decode(request, resource, obj)
            return _warn(_json(cluster.create(resource, obj, namespace, dry_run, validate=True), 201), warnings)
        if method == "PUT" and name is not None:
            obj = self._object(request)
            warnings = self._decode(request, resource, obj)
            return _warn(_json(cluster.update(resource, obj, namespace, name, target.subresource, dry_run,
                                              validate=True)), warnings)
        if method == "PATCH" and name is not None:
            return self._patch(request, resource, namespace, name, target.subresource, dry_run)
        if method == "DELETE" and name is not None:
            return _json(cluster.delete(resource, namespace, name, dry_run, options))
        if method == "DELETE":
            return self._delete_collection(request, resource, namespace, dry_run, options)
        raise errors.method_not_allowed()

    def _decode(self, request: kmock.Request, resource: ResourceType, obj: dict[str, Any],
                stored: dict[str, Any] | None = None) -> list[str]:
        """Check a body as the apiserver decodes it (`schemas`; a custom resource: `customresources`);
        the warnings to send."""
        custom = customresources.schema_of(self.cluster, resource)
        if custom is not None:
            return customresources.decode(resource, custom, obj, request.params.get("fieldValidation"),
                                          patched=stored is not None)
        known = schemas.unknown_fields(self.kube_version, resource, stored) if stored else frozenset()
        return schemas.decode(self.kube_version, resource, obj, request.params.get("fieldValidation"), known)

    @staticmethod
    def _object(request: kmock.Request) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise errors.bad_request("the request body must be an object")
        return request.data

    def _matching(self, request: kmock.Request, resource: ResourceType, namespace: str | None) -> list[dict]:
        labels = label_selector(request.params.get("labelSelector"))
        fields = field_selector(request.params.get("fieldSelector"), (resource.group, resource.plural))
        objects = [o for o in self.cluster.store.list(resource, namespace) if labels(o) and fields(o)]
        return sorted(objects, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def _list(self, request: kmock.Request, resource: ResourceType, namespace: str | None) -> aiohttp.web.Response:
        items = self._matching(request, resource, namespace)
        version = str(self.cluster.store.resource_version)
        if "as=Table" in request.headers.get("Accept", ""):
            return _json(tables.table(resource, items, version,
                                      request.params.get("includeObject", "Metadata")))
        return _json({"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                      "metadata": {"resourceVersion": version}, "items": items})

    def _patch(self, request: kmock.Request, resource: ResourceType, namespace: str | None, name: str,
               subresource: str | None, dry_run: bool) -> aiohttp.web.Response:
        content_type = _media_type(request.headers.get("Content-Type"))
        existing = self.cluster.store.get(resource, namespace, name)
        if existing is None and content_type == patching.APPLY_PATCH:
            if not request.params.get("fieldManager"):
                raise errors.bad_request("PATCH, application/apply-patch+yaml: "
                                         "fieldManager is required for apply requests")
            applied = self._object(request)
            applied.setdefault("metadata", {})["name"] = name
            warnings = self._decode(request, resource, applied)
            return _warn(_json(self.cluster.create(resource, applied, namespace, dry_run, validate=True), 201),
                         warnings)
        if existing is None:
            raise errors.not_found(resource.plural, resource.group, name)
        patched = patching.apply_patch(existing, request.data, content_type)
        warnings = self._decode(request, resource, patched, existing) if not subresource else []
        return _warn(_json(self.cluster.update(resource, patched, namespace, name, subresource, dry_run,
                                               validate=not subresource)), warnings)

    def _scale(self, request: kmock.Request, resource: ResourceType, namespace: str | None, name: str,
               dry_run: bool) -> aiohttp.web.Response:
        """The `scale` subresource (`kubectl scale`): an autoscaling/v1 Scale view of spec.replicas."""
        obj = self.cluster.get(resource, namespace, name)
        if request.method in ("PUT", "PATCH"):
            wanted = self._object(request) if request.method == "PUT" else patching.apply_patch(
                _scale_of(obj), request.data, _media_type(request.headers.get("Content-Type")))
            obj["spec"]["replicas"] = (wanted.get("spec") or {}).get("replicas", 0)
            obj = self.cluster.update(resource, obj, namespace, name, dry_run=dry_run)
        elif request.method != "GET":
            raise errors.method_not_allowed()
        return _json(_scale_of(obj))

    async def _pod_log(self, request: kmock.Request, namespace: str, name: str) -> aiohttp.web.StreamResponse:
        """A pod's log, as the kubelet serves it: the file `pod_logs/NAMESPACE/POD.log` (written by the
        node agent that plays the pod), else `pod_logs/NAMESPACE/OWNER.log`, OWNER the pod's Deployment
        (or DaemonSet, or the pod itself; written by lab.apps' runner); empty when there is none.
        `tailLines` and `limitBytes` apply. `follow` while the container runs: what is there, then what
        it writes as it comes (the file read every FOLLOW_EVERY s) until it no longer runs (what it
        wrote last included), the pod is gone or the client goes; else what there is now."""
        pod = self.cluster.get(self.cluster.core("pods"), namespace, name)
        containers = [c.get("name") for c in pod["spec"].get("containers") or []]
        container = request.params.get("container")
        if container and container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if not container and len(containers) > 1:
            raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                     f"[{' '.join(containers)}]")
        path = None
        if self.pod_logs:
            own = self.pod_logs / namespace / f"{name}.log"  # a node agent's (a DaemonSet has a pod per node)
            path = own if own.exists() else self.pod_logs / namespace / f"{_workload_of(self.cluster, pod)}.log"
        text = _read_log(path)
        offset = len(text)
        tail = int(request.params.get("tailLines") or -1)
        if tail >= 0:
            text = b"".join(text.splitlines(keepends=True)[-tail:]) if tail else b""
        limit = int(request.params["limitBytes"]) if request.params.get("limitBytes") else None
        running = query_bool(request.params.get("follow")) and self._running(namespace, name, container)
        if not running:
            return aiohttp.web.Response(body=text[:limit], content_type="text/plain")
        raw = request._raw_request
        stream = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        try:
            await stream.prepare(raw)
            sent = 0
            while True:
                text = text if limit is None else text[:limit - sent]
                if text:
                    await stream.write(text)
                    sent += len(text)
                gone = raw.transport is None or raw.transport.is_closing()
                if not running or gone or limit is not None and sent >= limit:
                    break
                await asyncio.sleep(FOLLOW_EVERY)
                running = self._running(namespace, name, container)  # then read: its last words are sent
                text = _read_log(path, offset)
                offset += len(text)
            await stream.write_eof()
        except ConnectionError:
            pass  # the client went away
        return stream

    def _running(self, namespace: str, name: str, container: str | None) -> bool:
        """Whether the pod exists and its container (None: its only one) is running."""
        pod = self.cluster.store.get(self.cluster.core("pods"), namespace, name)
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        return any((container is None or s.get("name") == container) and "running" in (s.get("state") or {})
                   for s in statuses)

    @staticmethod
    def _delete_options(request: kmock.Request) -> dict[str, Any]:
        """DeleteOptions from the body (JSON or protobuf) and the query, as the apiserver merges them."""
        options = dict(request.data) if isinstance(request.data, dict) else {}
        params = request.params
        if params.get("propagationPolicy"):
            options["propagationPolicy"] = params["propagationPolicy"]
        if params.get("orphanDependents"):
            options["orphanDependents"] = params["orphanDependents"] == "true"
        return options

    def _delete_collection(self, request: kmock.Request, resource: ResourceType, namespace: str | None,
                           dry_run: bool, options: dict[str, Any]) -> aiohttp.web.Response:
        deleted = [self.cluster.delete(resource, o["metadata"].get("namespace"), o["metadata"]["name"], dry_run,
                                       options) for o in self._matching(request, resource, namespace)]
        return _json({"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                      "metadata": {"resourceVersion": str(self.cluster.store.resource_version)}, "items": deleted})

    async def _watch(self, request: kmock.Request, resource: ResourceType,
                     namespace: str | None) -> aiohttp.web.StreamResponse:
        """A watch stream: JSON lines of {type, object}, as the apiserver's watch cache serves them.

        No `resourceVersion` (or "0"), or `sendInitialEvents=true`: ADDED for every current object
        first (then, when bookmarks are allowed and initial events asked for, the BOOKMARK with the
        `k8s.io/initial-events-end` annotation that watch-list clients wait for). A resourceVersion:
        the events after it. It ends after `timeoutSeconds` (default: 30 to 60 minutes, as the
        apiserver picks), or when the client goes away.
        """
        params = request.params
        requested = params.get("resourceVersion") or "0"
        initial = query_bool(params.get("sendInitialEvents")) or requested == "0"
        try:
            since = None if initial else int(requested)
        except ValueError:
            raise errors.bad_request(f'invalid resource version "{requested}"') from None
        matches = self._event_filter(request, resource, namespace)
        backlog, subscription = self.cluster.store.subscribe(resource, since)
        timeout = float(params.get("timeoutSeconds") or random.uniform(1800, 3600))
        stream = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await stream.prepare(request._raw_request)
            if initial:
                for obj in self._matching(request, resource, namespace):
                    await stream.write(self._event_line("ADDED", obj))
            if query_bool(params.get("sendInitialEvents")) and query_bool(params.get("allowWatchBookmarks")):
                await stream.write(self._event_line("BOOKMARK", {
                    "kind": resource.kind, "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": str(self.cluster.store.resource_version),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}))
            for event in backlog:
                if matches(event.object):
                    await stream.write(self._event_line(event.type, event.object))
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if matches(event.object):
                    await stream.write(self._event_line(event.type, event.object))
            await stream.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.cluster.store.unsubscribe(subscription)
        return stream

    @staticmethod
    def _event_filter(request: kmock.Request, resource: ResourceType, namespace: str | None):
        labels = label_selector(request.params.get("labelSelector"))
        fields = field_selector(request.params.get("fieldSelector"), (resource.group, resource.plural))
        return lambda obj: ((namespace is None or obj["metadata"].get("namespace") == namespace)
                            and labels(obj) and fields(obj))

    @staticmethod
    def _event_line(event_type: str, obj: dict[str, Any]) -> bytes:
        return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"
