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

from lab.cluster import customresources, errors, validation
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
               dry_run: bool = False, validate: bool = False) -> dict[str, Any]:
        """Create an object; `validate`: a client's write, checked as the apiserver does (`validation`)."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta = obj.setdefault("metadata", {})
        self._check_namespace(resource, meta, namespace, validate)
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
        if validate:
            validation.validate(resource, obj, None, customresources.schema_of(self, resource))
        if dry_run:
            return obj
        self.store.write(resource, obj)
        self._notify(lambda c: c.stored(self, resource, copy.deepcopy(obj), None))
        return obj

    def update(self, resource: ResourceType, obj: dict[str, Any], namespace: str | None, name: str,
               subresource: str | None = None, dry_run: bool = False, validate: bool = False) -> dict[str, Any]:
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
            for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                        "deletionGracePeriodSeconds"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if "status" in resource.subresources:
                new["status"] = old.get("status", {})
            self._admit(resource, new, old)
            if validate:
                validation.validate(resource, new, old, customresources.schema_of(self, resource))
            self._check_finalizers(resource, new, old)
            if "generation" in meta and _spec_of(new) != _spec_of(old):
                meta["generation"] += 1
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old  # a no-op update keeps the resourceVersion and notifies no one, as etcd's guarded update
        if dry_run:
            return new
        self.store.write(resource, new)
        self._notify(lambda c: c.stored(self, resource, copy.deepcopy(new), old))
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") \
                and resource.plural != "namespaces":
            return self._remove(resource, namespace, name)  # the last finalizer is gone
        return new

    @staticmethod
    def _check_finalizers(resource: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
        """An object being deleted may lose finalizers but not get new ones (ValidateObjectMetaUpdate)."""
        if not old["metadata"].get("deletionTimestamp"):
            return
        added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
        if added:
            raise errors.invalid_object(resource.kind, resource.group, new["metadata"]["name"], [
                errors.field_forbidden("metadata.finalizers", "no new finalizers can be added if the object is "
                                       "being deleted, found new finalizers " + errors.go_value(sorted(added)))])

    def write_status(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """A controller's own write (status, allocated fields): stored as is, no admission."""
        return self.store.write(resource, obj)

    def delete(self, resource: ResourceType, namespace: str | None, name: str, dry_run: bool = False,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Delete an object as the apiserver's registry store does, with `options` (DeleteOptions):
        `preconditions` (uid, resourceVersion: else 409 Conflict), `propagationPolicy` (Background,
        the default: the garbage collector deletes the dependents afterwards; Foreground: the object
        gets the `foregroundDeletion` finalizer until its dependents are gone; Orphan, or
        `orphanDependents`: the dependents lose their ownerReference and stay). An object with
        finalizers only gets its deletionTimestamp and goes once an update empties them; a namespace
        goes `Terminating`, its content is deleted, and it goes once empty. Dry run: nothing changes,
        the object is returned as it would be."""
        options = options or {}
        obj = self.get(resource, namespace, name)
        meta = obj["metadata"]
        self._check_preconditions(resource, obj, options.get("preconditions") or {})
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "Background")
        if policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid_object("DeleteOptions", "", "", [errors.field_invalid(
                "propagationPolicy", policy, 'must be one of: "Orphan", "Background", "Foreground"')])
        finalizers = list(meta.get("finalizers") or [])
        namespaced = (resource.group, resource.plural) == ("", "namespaces")
        if namespaced or finalizers or policy == "Foreground":
            meta.setdefault("deletionTimestamp", now())
            meta.setdefault("deletionGracePeriodSeconds", 0)
        if dry_run:
            return obj
        if namespaced:
            if obj.get("status", {}).get("phase") != "Terminating":
                obj["status"] = {"phase": "Terminating"}
                obj = self.store.write(resource, obj)
                self.later(0, lambda: self._finish_namespace(name))
            return obj
        if policy == "Orphan":
            self._orphan(meta.get("uid"))
        if policy == "Foreground":
            obj["metadata"]["finalizers"] = finalizers + ["foregroundDeletion"]
            self.store.write(resource, obj)
            for dependent, dep_ns, dep_name in self._dependents(meta.get("uid")):
                self.delete(dependent, dep_ns, dep_name)
            obj["metadata"]["finalizers"] = finalizers
            obj = self.store.write(resource, obj) if finalizers else obj
        elif finalizers:
            return self.store.write(resource, obj)
        if finalizers:
            return obj
        return self._remove(resource, namespace, name)

    def _remove(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.store.remove(resource, namespace, name)
        self._notify(lambda c: c.deleted(self, resource, copy.deepcopy(obj)))
        return obj

    def _check_preconditions(self, resource: ResourceType, obj: dict[str, Any], wanted: dict[str, Any]) -> None:
        meta = obj["metadata"]
        for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if wanted.get(field) and wanted[field] != meta.get(field):
                raise errors.ApiError(409, "Conflict", f"Operation cannot be fulfilled on "
                                      f'{f"{resource.plural}.{resource.group}" if resource.group else resource.plural}'
                                      f' "{meta["name"]}": Precondition failed: {label} in precondition: '
                                      f"{wanted[field]}, {label} in object meta: {meta.get(field)}",
                                      {"name": meta["name"], "kind": resource.plural,
                                       **({"group": resource.group} if resource.group else {})})

    def _dependents(self, uid: str | None) -> list[tuple[ResourceType, str | None, str]]:
        found = []
        for key, namespace, name in self.store.keys():
            resource = self.registry.get(key.group, key.version, key.plural)
            obj = self.store.get(resource, namespace, name) if resource else None
            if obj and any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                found.append((resource, namespace, name))
        return found

    def _orphan(self, uid: str | None) -> None:
        """The garbage collector's orphaning: dependents lose their ownerReference to `uid`."""
        for resource, namespace, name in self._dependents(uid):
            dependent = self.store.get(resource, namespace, name)
            dependent["metadata"]["ownerReferences"] = [
                ref for ref in dependent["metadata"]["ownerReferences"] if ref.get("uid") != uid]
            if not dependent["metadata"]["ownerReferences"]:
                del dependent["metadata"]["ownerReferences"]
            self.store.write(resource, dependent)

    def _finish_namespace(self, namespace: str) -> None:
        """The namespace controller: delete what the namespace holds; remove it once it is empty."""
        namespaces = self.core("namespaces")
        if self.store.get(namespaces, None, namespace) is None:
            return
        left = False
        for key, ns, name in self.store.keys():
            resource = self.registry.get(key.group, key.version, key.plural)
            if ns != namespace or resource is None or self.store.get(resource, ns, name) is None:
                continue
            self.delete(resource, ns, name)
            left = left or self.store.get(resource, ns, name) is not None
        if left:
            self.later(1, lambda: self._finish_namespace(namespace))
        else:
            self._remove(namespaces, None, namespace)

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

    def _check_namespace(self, resource: ResourceType, meta: dict[str, Any], namespace: str | None,
                         client: bool = False) -> None:
        """The object's namespace: the request's; it must exist and, for a client, not be terminating
        (the NamespaceLifecycle admission plugin's 403)."""
        if not resource.namespaced:
            meta.pop("namespace", None)
            return
        if namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                     "sent on the request")
        meta["namespace"] = namespace or meta.get("namespace") or "default"
        found = self.store.get(self.core("namespaces"), None, meta["namespace"])
        if found is None:
            raise errors.not_found("namespaces", "", meta["namespace"])
        if client and (found.get("status") or {}).get("phase") == "Terminating":
            raise errors.ApiError(403, "Forbidden", f'{resource.plural} "{meta.get("name") or ""}" is forbidden: '
                                  f'unable to create new content in namespace {meta["namespace"]} because it is '
                                  "being terminated", {"name": meta.get("name") or "", "kind": resource.plural})

    def _admit(self, resource: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        for controller in self.controllers:
            controller.admit(self, resource, obj, old)

    def _notify(self, call: Callable[[Controller], None]) -> None:
        for controller in self.controllers:
            call(controller)


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
