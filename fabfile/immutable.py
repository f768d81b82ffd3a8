"""Which rendered objects an upgrade cannot patch over the live ones: fields the API server
refuses to change after creation (kubernetes/kubernetes, as of 1.32):

- Deployment, DaemonSet `spec.selector`: pkg/registry/apps/deployment/strategy.go and
  pkg/registry/apps/daemonset/strategy.go (ValidateUpdate: immutable in apps/v1).
- StatefulSet: every spec field but replicas, ordinals, template, updateStrategy,
  revisionHistoryLimit, persistentVolumeClaimRetentionPolicy and minReadySeconds, so `selector`,
  `serviceName`, `volumeClaimTemplates`, `podManagementPolicy`: pkg/apis/apps/validation/
  validation.go (ValidateStatefulSetUpdate).
- Job `spec.selector` and `spec.template`: pkg/apis/batch/validation/validation.go
  (ValidateJobSpecUpdate).
- Service `spec.clusterIP` once set: pkg/apis/core/validation/validation.go (ValidateServiceUpdate).
- PersistentVolumeClaim `spec` but `resources.requests`: pkg/apis/core/validation/validation.go
  (ValidatePersistentVolumeClaimUpdate).

A field is compared where the rendered object sets it, as a subset of the live value (the API
server fills in defaults); selectors are compared whole, since helm's patch drops the labels the
chart no longer renders."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .manifests import Key, key

#: (kind: (field path, compared whole)), the fields above; `spec.*` is the PVC's spec but requests.
FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    "Deployment": (("spec.selector", True),),
    "DaemonSet": (("spec.selector", True),),
    "StatefulSet": (("spec.selector", True), ("spec.serviceName", False), ("spec.volumeClaimTemplates", False),
                    ("spec.podManagementPolicy", False)),
    "Job": (("spec.selector", True), ("spec.template", False)),
    "Service": (("spec.clusterIP", False),),
    "PersistentVolumeClaim": (("spec.*", False),),
}
#: What the API server defaults a field to when the object leaves it out.
DEFAULTS = {("StatefulSet", "spec.podManagementPolicy"): "OrderedReady"}


@dataclass(frozen=True)
class Conflict:
    """A rendered object whose immutable fields differ from the live object's."""

    kind: str
    namespace: str
    name: str
    fields: tuple[str, ...]
    ref: str  # RESOURCE.GROUP/NAME, as kubectl names it

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name} ({', '.join(self.fields)})"


def watched(obj: dict) -> bool:
    """Whether `obj`'s kind has immutable fields checked here."""
    return obj.get("kind") in FIELDS


def ref(obj: dict) -> str:
    """`obj` as kubectl names it unambiguously: kind.group/name (kind/name in the core group)."""
    group = obj.get("apiVersion", "v1").rpartition("/")[0]
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


def refs(rendered: list[dict], namespace: str) -> dict[str, list[str]]:
    """The watched objects of `rendered`, by namespace, as kubectl names them."""
    out: dict[str, list[str]] = {}
    for obj in rendered:
        if watched(obj):
            out.setdefault(key(obj, namespace)[1], []).append(ref(obj))
    return out


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def covered(wanted: Any, live: Any) -> bool:
    """Whether `live` holds everything `wanted` sets: dicts key by key, lists item by item
    (same length), anything else equal. Numbers compare as the API server stores them."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(covered(v, live.get(k)) for k, v in wanted.items() if v is not None)
    if isinstance(wanted, list):
        return isinstance(live, list) and len(wanted) == len(live) and all(map(covered, wanted, live))
    return wanted == live or (wanted is not None and live is not None and str(wanted) == str(live))


def changed_fields(wanted: dict, live: dict) -> list[str]:
    """The immutable fields of `wanted` that the live object does not already have."""
    kind, out = wanted["kind"], []
    for path, whole in FIELDS.get(kind, ()):
        if path == "spec.*":
            spec = {k: v for k, v in (wanted.get("spec") or {}).items() if k != "resources"}
            out += [f"spec.{k}" for k, v in spec.items() if not covered(v, _get(live, f"spec.{k}"))]
            limits = (_get(wanted, "spec.resources") or {}).get("limits")
            if limits is not None and not covered(limits, _get(live, "spec.resources.limits")):
                out.append("spec.resources.limits")
            continue
        value = _get(wanted, path)
        if value is None:
            value = DEFAULTS.get((kind, path))
        if value is None or (kind == "Service" and value == ""):
            continue
        if whole and value != _get(live, path) or not whole and not covered(value, _get(live, path)):
            out.append(path)
    return out


def conflicts(rendered: list[dict], live: dict[Key, dict], namespace: str) -> list[Conflict]:
    """The rendered objects whose immutable fields differ from their live counterparts (`live`:
    by manifests.key); objects not live yet are created, not patched: no conflict."""
    out = []
    for obj in rendered:
        k = key(obj, namespace)
        if watched(obj) and k in live and (fields := changed_fields(obj, live[k])):
            out.append(Conflict(*k, tuple(fields), ref(obj)))
    return out
