"""An optional JSON snapshot of the emulator's objects, written on shutdown and read on start."""
from __future__ import annotations

import json
import os
from pathlib import Path

from lab.cluster.cluster import Cluster
from lab.cluster.controllers import CustomResourceController


def save(cluster: Cluster, path: Path) -> None:
    store = cluster.store
    objects = [{"group": res.group, "version": res.version, "plural": res.plural, "object": obj.raw}
               for (res, _, _), obj in store.objects.items()]
    snapshot = {"resourceVersion": store.resource_version, "objects": objects}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(snapshot))
    os.replace(temporary, path)


def load(cluster: Cluster, path: Path) -> None:
    """Restore a snapshot written by `save` (CRDs first, so their resources exist again); objects of a
    resource this emulator's Kubernetes version does not serve are left out."""
    snapshot = json.loads(path.read_text())
    crds = CustomResourceController()
    entries = sorted(snapshot["objects"], key=lambda e: e["plural"] != "customresourcedefinitions")
    for entry in entries:
        resource = (cluster.registry.get(entry["group"], entry["version"], entry["plural"])
                    or cluster.registry.stored_at(entry["group"], entry["plural"]))
        if resource is None:  # saved by an emulator of another Kubernetes version, which served it
            continue
        cluster.store.write(resource, entry["object"])
        if entry["plural"] == "customresourcedefinitions":
            crds.stored(cluster, resource, entry["object"], None)
    cluster.store.resource_version = max(cluster.store.resource_version, snapshot["resourceVersion"])
