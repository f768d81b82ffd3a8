"""What a kubelet hands a Deployment's container: its environment and the files of its volumes.

From the Deployment's pod template, as the kubelet resolves them when it starts the pod: `env`
entries (`value`, `valueFrom.secretKeyRef`, `valueFrom.configMapKeyRef`, `valueFrom.fieldRef`
for `metadata.namespace`) and the ConfigMap and Secret volumes at each `volumeMounts` path (every
key a file, or only the volume's `items`; a `subPath` mount is one file and is left out). As on a
cluster, a container whose Secret or ConfigMap (or a key of it) is missing does not start: the
reason is returned instead (a real pod stays in CreateContainerConfigError or ContainerCreating),
unless the reference is `optional`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol


class Objects(Protocol):
    namespace: str

    def secret(self, name: str) -> dict[str, str] | None: ...

    def configmap(self, name: str) -> dict[str, str] | None: ...


@dataclasses.dataclass(frozen=True)
class Container:
    """A container as it would start: its environment and its mounted files."""

    env: dict[str, str] = dataclasses.field(repr=False)  # secrets: never in a repr
    mounts: dict[str, dict[str, str]] = dataclasses.field(repr=False)  # mount path ending in "/" -> {file: content}
    args: list[str]

    def file(self, path: str) -> str | None:
        """The content of `path` inside the container, if one of the mounts holds it."""
        directory, _, name = path.rpartition("/")
        return self.mounts.get(directory + "/", {}).get(name)


class NotStarting(Exception):
    """The container cannot start (what `kubectl describe pod` would say)."""


Source = Callable[[str, str], dict[str, str] | None]  # (kind, name) -> the object's data, None if missing


def _env_value(source: Source, namespace: str, entry: Mapping) -> str | None:
    if "value" in entry or "valueFrom" not in entry:
        return str(entry.get("value", ""))
    value_from = entry["valueFrom"]
    if "fieldRef" in value_from:
        if value_from["fieldRef"].get("fieldPath") != "metadata.namespace":
            return None  # a pod's name, IP, node...: nothing the lab's processes read
        return namespace
    for kind, ref_key in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
        if ref_key in value_from:
            ref = value_from[ref_key]
            data = source(kind, ref["name"])
            if data is not None and ref["key"] in data:
                return data[ref["key"]]
            if ref.get("optional"):
                return None
            what = f'{kind} "{ref["name"]}"' if data is None else f'key {ref["key"]} in {kind} {ref["name"]}'
            raise NotStarting(f"CreateContainerConfigError: {what} not found (env {entry['name']})")
    return None


def _volume_files(source: Source, volume: Mapping) -> dict[str, str] | None:
    for kind, field, name_key in (("secret", "secret", "secretName"), ("configmap", "configMap", "name")):
        if field in volume:
            spec = volume[field]
            data = source(kind, spec[name_key])
            if data is None:
                if spec.get("optional"):
                    return {}
                raise NotStarting(f'ContainerCreating: {kind} "{spec[name_key]}" not found (volume {volume["name"]})')
            items = spec.get("items")
            return {item["path"]: data[item["key"]] for item in items if item["key"] in data} if items else dict(data)
    return None  # hostPath, persistentVolumeClaim, emptyDir: no files from the API


def container(objects: Objects, deployment: Mapping, name: str) -> Container:
    """Container `name` of `deployment`'s pod template, resolved; NotStarting when it cannot start."""
    spec = deployment["spec"]["template"]["spec"]
    found = next((c for c in spec.get("containers") or [] if c.get("name") == name), None)
    if found is None:
        raise NotStarting(f"Deployment {deployment['metadata']['name']} has no container {name}")
    read: dict[tuple[str, str], dict[str, str] | None] = {}

    def source(kind: str, name: str) -> dict[str, str] | None:  # each object read once
        if (kind, name) not in read:
            read[kind, name] = objects.secret(name) if kind == "secret" else objects.configmap(name)
        return read[kind, name]

    env = {}
    for entry in found.get("env") or []:
        value = _env_value(source, objects.namespace, entry)
        if value is not None:
            env[entry["name"]] = value
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = {}
    for mount in found.get("volumeMounts") or []:
        if mount.get("subPath") or mount["name"] not in volumes:
            continue
        files = _volume_files(source, volumes[mount["name"]])
        if files is not None:
            mounts[mount["mountPath"].rstrip("/") + "/"] = files
    return Container(env, mounts, [*(found.get("command") or []), *(found.get("args") or [])])
