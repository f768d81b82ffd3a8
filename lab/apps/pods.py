"""What a kubelet hands a pod's container: its environment, its command line and its volumes'
files (https://kubernetes.io/docs/concepts/workloads/pods/, pkg/kubelet/kubelet_pods.go
makeEnvironmentVariables and makeMounts, pkg/volume/{configmap,secret,projected,emptydir}).

- Env, in the kubelet's order: the Services' links of the pod's namespace when `enableServiceLinks`
  (not false; `links`), then each `envFrom` (configMapRef/secretRef, with `prefix`), then `env`
  (`value` with `$(VAR)` expanded against what is defined so far, `valueFrom` secretKeyRef,
  configMapKeyRef, fieldRef of metadata.name/namespace/uid, spec.nodeName/serviceAccountName,
  status.podIP/hostIP, metadata.labels['k'] and annotations['k']). A missing object or key that
  is not `optional` is CreateContainerConfigError (`NotStarting`).
- Command and args: `$(VAR)` expanded against the container's env, `$$` escaping `$`
  (third_party/forked/golang/expansion).
- Volumes, written under the pod's directory (`volumes/NAME`): configMap, secret and projected
  sources (all keys, or `items` with their `path`; modes from `mode`/`defaultMode`, except that
  Secret data is always 0600, the lab's rule for secrets), projected `serviceAccountToken` and
  `downwardAPI` namespace (the token from `token`), emptyDir (an empty directory), hostPath (the
  node's path, when it exists; a missing one is left out), persistentVolumeClaim (`claims` gives
  its directory: the runner keeps one per claim, standing for the volume). `volumeMounts` with
  `subPath` mount that entry of the volume; `readOnly` honoured.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

Source = Callable[[str, str], dict[str, str] | None]  # (configmap|secret, name) -> its data (decoded), None if missing


class NotStarting(Exception):
    """The container cannot start (what `kubectl describe pod` would say)."""


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined VAR replaced, an undefined one left as written, `$$` -> `$`."""
    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return _VAR.sub(one, text)


def links(services: list[dict]) -> dict[str, str]:
    """The Service environment variables (https://kubernetes.io/docs/concepts/services-networking/service/#environment-variables,
    pkg/kubelet/envvars/envvars.go FromServices): per Service with a ClusterIP, NAME_SERVICE_HOST,
    NAME_SERVICE_PORT (the first port), NAME_SERVICE_PORT_PORTNAME, and the Docker-link variables."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        ports = spec.get("ports") or []
        env[f"{name}_SERVICE_HOST"] = ip
        if not ports:
            continue
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        protocol = (ports[0].get("protocol") or "TCP").lower()
        env[f"{name}_PORT"] = f"{protocol}://{ip}:{ports[0]['port']}"
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            proto = (port.get("protocol") or "TCP")
            prefix = f"{name}_PORT_{port['port']}_{proto.upper()}"
            env.update({prefix: f"{proto.lower()}://{ip}:{port['port']}", f"{prefix}_PROTO": proto.lower(),
                        f"{prefix}_PORT": str(port["port"]), f"{prefix}_ADDR": ip})
    return env


def _field(pod: Mapping, path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
              "status.hostIP": status.get("hostIP")}
    if path in simple:
        return simple[path] or ""
    found = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if found:
        return (meta.get(found.group(1)) or {}).get(found.group(2), "")
    raise NotStarting(f"CreateContainerConfigError: unsupported fieldPath {path}")


def _ref(source: Source, kind: str, ref: Mapping, key: str | None) -> str | dict[str, str] | None:
    data = source(kind, ref.get("name", ""))
    if data is not None and (key is None or key in data):
        return data if key is None else data[key]
    if ref.get("optional"):
        return None
    title = "ConfigMap" if kind == "configmap" else "Secret"
    message = f'{kind} "{ref.get("name")}" not found' if data is None else f"couldn't find key {key} in {title}"
    raise NotStarting(f"CreateContainerConfigError: {message}")


def environment(source: Source, pod: Mapping, container: Mapping, services: list[dict]) -> dict[str, str]:
    """The container's environment (see the module docstring)."""
    env = links(services) if (pod.get("spec") or {}).get("enableServiceLinks") is not False else {}
    for entry in container.get("envFrom") or []:
        for field, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if field in entry and (data := _ref(source, kind, entry[field], None)) is not None:
                env.update({entry.get("prefix", "") + key: value for key, value in data.items()})
    for entry in container.get("env") or []:
        value_from = entry.get("valueFrom")
        if not value_from:
            env[entry["name"]] = expand(str(entry.get("value", "")), env)
            continue
        value: str | None = None
        if "fieldRef" in value_from:
            value = _field(pod, value_from["fieldRef"].get("fieldPath", ""))
        for field, kind in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
            if field in value_from:
                found = _ref(source, kind, value_from[field], value_from[field].get("key"))
                value = found if isinstance(found, str) else None
        if value is not None:
            env[entry["name"]] = value
    return env


def command_line(argv: list[str], env: Mapping[str, str]) -> list[str]:
    return [expand(arg, env) for arg in argv]


@dataclasses.dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


def _write(directory: Path, files: dict[str, tuple[str | bytes, int]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, (content, mode) in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        path.chmod(mode)


def _object_files(source: Source, kind: str, spec: Mapping, name_key: str, default_mode: int,
                  volume: str) -> dict[str, tuple[str, int]]:
    data = source(kind, spec.get(name_key, ""))
    if data is None:
        if spec.get("optional"):
            return {}
        raise NotStarting(f'ContainerCreating: MountVolume.SetUp failed for volume "{volume}" : '
                          f'{kind} "{spec.get(name_key)}" not found')
    mode = spec.get("defaultMode", default_mode)
    items = spec.get("items")
    chosen = [(i["key"], i["path"], i.get("mode", mode)) for i in items if i["key"] in data] if items else \
        [(key, key, mode) for key in data]
    return {path: (data[key], 0o600 if kind == "secret" else m) for key, path, m in chosen}


def write_volumes(source: Source, pod: Mapping, pod_dir: Path, token: Callable[[Mapping], str],
                  claims: Callable[[str], Path]) -> dict[str, Path]:
    """Each volume of the pod as a directory (or file) on the node (see the module docstring)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    paths: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        name, directory = volume["name"], pod_dir / "volumes" / volume["name"]
        if "configMap" in volume:
            _write(directory, _object_files(source, "configmap", volume["configMap"], "name", 0o644, name))
        elif "secret" in volume:
            _write(directory, _object_files(source, "secret", volume["secret"], "secretName", 0o644, name))
        elif "projected" in volume:
            files: dict[str, tuple[str, int]] = {}
            mode = volume["projected"].get("defaultMode", 0o644)
            for item in volume["projected"].get("sources") or []:
                if "configMap" in item:
                    files.update(_object_files(source, "configmap", item["configMap"], "name", mode, name))
                elif "secret" in item:
                    files.update(_object_files(source, "secret", item["secret"], "name", mode, name))
                elif "serviceAccountToken" in item:
                    request = item["serviceAccountToken"]
                    files[request.get("path", "token")] = (token(request), 0o600)
                elif "downwardAPI" in item:
                    for entry in item["downwardAPI"].get("items") or []:
                        if "fieldRef" in entry:
                            files[entry["path"]] = (_field(pod, entry["fieldRef"]["fieldPath"]), mode)
            _write(directory, files)
        elif "emptyDir" in volume:
            directory.mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in volume:
            directory = claims(volume["persistentVolumeClaim"]["claimName"])
            directory.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in volume:
            directory = Path(volume["hostPath"]["path"])
            if not directory.exists():
                continue
        else:
            continue  # a volume type the lab has no stand-in for: not mounted
        paths[name] = directory
    if meta and spec.get("automountServiceAccountToken") is not False:
        directory = pod_dir / "volumes" / "kube-api-access"
        _write(directory, {"token": (token({}), 0o600), "namespace": (meta.get("namespace", ""), 0o644)})
        paths[""] = directory
    return paths


def user(pod: Mapping, container: Mapping) -> dict | None:
    """The container's user from the securityContexts (the container's over the pod's): runAsUser,
    runAsGroup (default 0), and fsGroup and supplementalGroups as supplementary groups; None: root."""
    pod_context, context = (pod.get("spec") or {}).get("securityContext") or {}, container.get("securityContext") or {}
    uid = context.get("runAsUser", pod_context.get("runAsUser"))
    if uid is None:
        return None
    groups = [g for g in [pod_context.get("fsGroup"), *(pod_context.get("supplementalGroups") or [])] if g is not None]
    return {"uid": uid, "gid": context.get("runAsGroup", pod_context.get("runAsGroup", 0)), "groups": groups}


def set_ownership(pod: Mapping, volumes: Mapping[str, Path], owner: int | None) -> None:
    """Volume ownership as the kubelet sets it (pkg/volume/volume_linux.go SetVolumeOwnership): with
    an fsGroup, the volumes' directories get that group, group-writable and setgid, and so do the
    files of emptyDir and claim volumes; the files the lab wrote (0600 secrets, tokens) are owned
    by `owner`, the pod's user, so that it reads them. hostPath volumes are left as they are."""
    fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    group = -1 if fs_group is None else fs_group
    kinds = {v["name"]: next((k for k in v if k != "name"), "") for v in (pod.get("spec") or {}).get("volumes") or []}
    for name, root in volumes.items():
        if kinds.get(name) == "hostPath":
            continue
        writable = kinds.get(name) in ("emptyDir", "persistentVolumeClaim")
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            mode = path.stat().st_mode & 0o7777
            if path.is_dir():
                os.chown(path, -1, group)
                if fs_group is not None:
                    path.chmod(mode | 0o2070)
            else:
                os.chown(path, owner if owner is not None and not writable else -1, group)
                if fs_group is not None and writable:
                    path.chmod(mode | 0o060)


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def mounts(container: Mapping, volumes: Mapping[str, Path]) -> list[Mount]:
    """The container's volumeMounts as bind mounts (and the service account's token, as admission adds it)."""
    found = []
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            continue
        source = volumes[mount["name"]] / mount["subPath"] if mount.get("subPath") else volumes[mount["name"]]
        if mount.get("subPath") and not source.exists():
            source.mkdir(parents=True)  # the kubelet makes a missing subPath a directory
        found.append(Mount(str(source), mount["mountPath"].rstrip("/") or "/", bool(mount.get("readOnly"))))
    if "" in volumes and not any(m.target == SERVICE_ACCOUNT_DIR for m in found):
        found.append(Mount(str(volumes[""]), SERVICE_ACCOUNT_DIR, True))
    return found


def decoded(secret: dict | None) -> dict[str, str] | None:
    """A Secret's data, decoded (None when there is no such Secret)."""
    if secret is None:
        return None
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in (secret.get("data") or {}).items()}
