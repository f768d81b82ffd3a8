"""The emulated cluster's write semantics, independent of HTTP: what the apiserver does on
create, update and delete (metadata, namespaces, optimistic concurrency, status subresources),
and the controllers it notifies.
"""
from __future__ import annotations

import asyncio
import copy
import secrets
import time
import uuid
from typing import Any, Callable, Iterable

from lab.cluster import errors
from lab.cluster.discovery import Registry
from lab.cluster.store import ResourceType, Store, now

# Kinds whose metadata.generation counts spec changes (their registry strategies bump it).
_GENERATION_TRACKED = {("apps", "deployments"), ("apps", "daemonsets"), ("apps", "statefulsets"),
                       ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"),
                       ("networking.k8s.io", "ingresses"), ("apiextensions.k8s.io", "customresourcedefinitions")}
_BUILT_IN_GROUPS = {"", "apps", "batch", "networking.k8s.io", "policy", "autoscaling",
                    "rbac.authorization.k8s.io", "storage.k8s.io", "coordination.k8s.io",
                    "discovery.k8s.io", "events.k8s.io", "node.k8s.io", "scheduling.k8s.io"}
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    """Random name suffix as the apiserver's generateName and the controllers make them."""
    return "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(length))


class Controller:
    """A hook around writes; each method is a no-op unless a controller overrides it."""

    def admit(self, cluster: "Cluster", resource: ResourceType, obj: dict, old: dict | None) -> None:
        """Default, validate or allocate fields of `obj` before it is stored (may raise ApiError)."""

    def stored(self, cluster: "Cluster", resource: ResourceType, obj: dict, old: dict | None) -> None:
        """React to an object created or updated through the API."""

    def deleted(self, cluster: "Cluster", resource: ResourceType, obj: dict) -> None:
        """React to an object deleted through the API."""


class Cluster:
    def __init__(self, registry: Registry, store: Store, controllers: Iterable[Controller]):
        self.registry = registry
        self.store = store
        self.controllers = list(controllers)

    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        found = self.registry.get(group, version, plural)
        if found is None:
            raise errors.resource_not_found(f"/{group or 'core'}/{version}/{plural}")
        return found

    def core(self, plural: str) -> ResourceType:
        return self.resource("", "v1", plural)

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.get(resource, namespace, name)
        if obj is None:
            raise errors.not_found(resource.plural, resource.group, name)
        return obj

    def create(self, resource: ResourceType, obj: dict[str, Any], namespace: str | None = None,
               dry_run: bool = False) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta = obj.setdefault("metadata", {})
        self._check_namespace(resource, meta, namespace)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise errors.ApiError(422, "Invalid", f"{resource.kind}.{resource.api_version} is invalid: "
                                      "metadata.name: Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + random_suffix()
        if self.store.get(resource, meta.get("namespace"), meta["name"]) is not None:
            raise errors.already_exists(resource.plural, resource.group, meta["name"])
        for key in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now())
        if (resource.group, resource.plural) in _GENERATION_TRACKED or resource.group not in _BUILT_IN_GROUPS:
            meta["generation"] = 1
        if "status" in resource.subresources:
            obj.pop("status", None)
        self._admit(resource, obj, None)
        if dry_run:
            return obj
        self.store.write(resource, obj)
        self._notify(lambda c: c.stored(self, resource, copy.deepcopy(obj), None))
        return obj

    def update(self, resource: ResourceType, obj: dict[str, Any], namespace: str | None, name: str,
               subresource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Replace an object (PUT); on the `status` subresource only its status changes."""
        old = self.get(resource, namespace, name)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.bad_request(f'the name of the object ({meta["name"]}) does not match the name '
                                     f'on the URL ({name})')
        wanted_version = meta.get("resourceVersion")
        if wanted_version and wanted_version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.plural, resource.group, name)
        if subresource == "status":
            new = copy.deepcopy(old)
            new["status"] = obj.get("status", {})
        else:
            new = obj
            new["apiVersion"], new["kind"] = resource.api_version, resource.kind
            for key in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if "status" in resource.subresources:
                new["status"] = old.get("status", {})
            self._admit(resource, new, old)
            if "generation" in meta and _spec_of(new) != _spec_of(old):
                meta["generation"] += 1
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old  # a no-op update keeps the resourceVersion and notifies no one, as etcd's guarded update
        if dry_run:
            return new
        self.store.write(resource, new)
        self._notify(lambda c: c.stored(self, resource, copy.deepcopy(new), old))
        return new

    def write_status(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A controller's own write (status, allocated fields): stored as is, no admission."""
        return self.store.write(resource, obj)

    def delete(self, resource: ResourceType, namespace: str | None, name: str,
               dry_run: bool = False) -> dict[str, Any]:
        obj = self.get(resource, namespace, name)
        if dry_run:
            return obj
        obj = self.store.remove(resource, namespace, name)
        self._notify(lambda c: c.deleted(self, resource, copy.deepcopy(obj)))
        return obj

    def record_event(self, involved: dict[str, Any], reason: str, message: str, component: str,
                     event_type: str = "Normal") -> None:
        """An Event about `involved`, as a controller's event recorder writes it: a repeat of an
        earlier one (same object, type, reason, message and source) counts up on that Event."""
        meta = involved["metadata"]
        namespace, stamp = meta.get("namespace", "default"), now()
        events = self.core("events")
        key = (meta.get("uid"), reason, message, event_type, component)
        for event in self.store.list(events, namespace):
            if key == ((event.get("involvedObject") or {}).get("uid"), event.get("reason"), event.get("message"),
                       event.get("type"), (event.get("source") or {}).get("component")):
                event.update(count=event.get("count", 1) + 1, lastTimestamp=stamp)
                self.store.write(events, event)
                return
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": namespace,
                         "uid": str(uuid.uuid4()), "creationTimestamp": stamp},
            "involvedObject": {"apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
                               "name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid")},
            "reason": reason, "message": message, "type": event_type, "count": 1,
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
        }
        self.store.write(events, event)

    def later(self, delay: float, action: Callable[[], None]) -> None:
        """Run `action` after `delay` seconds on the event loop (as a controller's work queue would)."""
        asyncio.get_running_loop().call_later(delay, action)

    def _check_namespace(self, resource: ResourceType, meta: dict[str, Any], namespace: str | None) -> None:
        if not resource.namespaced:
            meta.pop("namespace", None)
            return
        if namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                     "sent on the request")
        meta["namespace"] = namespace or meta.get("namespace") or "default"
        if self.store.get(self.core("namespaces"), None, meta["namespace"]) is None:
            raise errors.not_found("namespaces", "", meta["namespace"])

    def _admit(self, resource: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        for controller in self.controllers:
            controller.admit(self, resource, obj, old)

    def _notify(self, call: Callable[[Controller], None]) -> None:
        for controller in self.controllers:
            call(controller)


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
