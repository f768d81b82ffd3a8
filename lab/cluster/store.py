"""The emulator's storage: objects in kmock's `ObjectsArray`, with resourceVersions and a watch log.

Like etcd behind the apiserver's watch cache: every write takes the next resourceVersion, lists
report the current one, and a watch started from a resourceVersion replays the events after it
(from a bounded log; older than the log is `410 Expired`, as the real watch cache answers).
"""
from __future__ import annotations

import asyncio
import collections
import copy
import datetime
from dataclasses import dataclass, field
from typing import Any, Iterator

import kmock

from lab.cluster.errors import expired


def now() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PrinterColumn:
    """A CRD's `additionalPrinterColumns` entry: a column of `kubectl get` (priority > 0: `-o wide` only)."""
    name: str
    type: str  # string, integer, number, boolean or date
    json_path: str  # a simple path, e.g. `.spec.addresses`
    priority: int = 0


@dataclass(frozen=True)
class ResourceType:
    """One served resource: `apps/v1 deployments` with its kind, scope and verbs."""
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    verbs: frozenset[str] = frozenset()
    short_names: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    subresources: frozenset[str] = frozenset()
    columns: tuple[PrinterColumn, ...] = ()  # a custom resource's printer columns
    storage_version: str = ""  # the version its objects are stored at, when served at several (`apis`)
    warning: str = ""  # what the apiserver warns on each request to it, when deprecated (`apis`)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> kmock.resource:
        """Where its objects are stored: the same for every version of a resource served at several."""
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    def served(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A stored object as read at this version (see `apis` on conversion)."""
        if "apiVersion" in obj:
            obj["apiVersion"] = self.api_version
        return obj


@dataclass
class Event:
    resource_version: int
    resource: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    """A live feed of one resource's events, for one watch request."""
    resource: ResourceType
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


class Store:
    def __init__(self, objects: kmock.ObjectsArray, log_size: int = 2000):
        self.objects = objects
        self.resource_version = 1
        self._log: collections.deque[Event] = collections.deque(maxlen=log_size)
        self._subscriptions: set[Subscription] = set()

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource.key, namespace if resource.namespaced else None, name)
        return resource.served(copy.deepcopy(self.objects[key].raw)) if key in self.objects else None

    def list(self, resource: ResourceType, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource in a namespace (None: all namespaces), oldest first."""
        return [resource.served(copy.deepcopy(obj.raw)) for (res, ns, _), obj in self.objects.items()
                if res == resource.key and (namespace is None or ns == namespace)]

    def keys(self) -> Iterator[tuple[kmock.resource, str | None, str]]:
        return iter(list(self.objects.keys()))

    def write(self, resource: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object (create or replace) under a new resourceVersion; return it."""
        meta = obj["metadata"]
        key = (resource.key, meta.get("namespace") if resource.namespaced else None, meta["name"])
        event_type = "MODIFIED" if key in self.objects else "ADDED"
        self.resource_version += 1
        meta["resourceVersion"] = str(self.resource_version)
        self.objects[key] = copy.deepcopy(obj)
        self._publish(Event(self.resource_version, resource, event_type, copy.deepcopy(obj)))
        return obj

    def remove(self, resource: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        key = (resource.key, namespace if resource.namespaced else None, name)
        obj = resource.served(copy.deepcopy(self.objects[key].raw))
        del self.objects[key]
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        self._publish(Event(self.resource_version, resource, "DELETED", copy.deepcopy(obj)))
        return obj

    def subscribe(self, resource: ResourceType, since: int | None) -> tuple[list[Event], Subscription]:
        """Events after resourceVersion `since` (None: none) and a feed of the later ones."""
        backlog: list[Event] = []
        if since is not None and since < self.resource_version:
            if self._log and since < self._log[0].resource_version - 1:
                raise expired(str(since), self._log[0].resource_version)
            backlog = [Event(e.resource_version, resource, e.type, resource.served(copy.deepcopy(e.object)))
                       for e in self._log if e.resource_version > since and e.resource.key == resource.key]
        subscription = Subscription(resource)
        self._subscriptions.add(subscription)
        return backlog, subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def _publish(self, event: Event) -> None:
        self._log.append(event)
        for subscription in self._subscriptions:
            if subscription.resource.key == event.resource.key:
                subscription.queue.put_nowait(Event(event.resource_version, subscription.resource, event.type,
                                                    subscription.resource.served(copy.deepcopy(event.object))))
