"""Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks for.

kubectl prints whatever columns the server sends (`Accept: ...;as=Table`), so the columns and
cell formats here are the apiserver's own (pkg/printers/internalversion), for the kinds the lab
shows. Custom resources get NAME and their CRD's `additionalPrinterColumns`, or NAME and AGE when it
has none, as the apiextensions server prints them (only simple `.a.b` JSON paths); other kinds
NAME and AGE.
"""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable

from lab.cluster.store import PrinterColumn, ResourceType

Row = list[Any]
_Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery's duration.HumanDuration, as kubectl's AGE column shows it."""
    seconds = int(seconds)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours = seconds // 60, seconds // 3600
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _pod_row(pod: dict[str, Any]) -> Row:
    """printPod (pkg/printers/internalversion/printers.go): STATUS is the pod's reason or phase, then
    the last container's waiting or terminated reason; READY counts containers ready and running;
    RESTARTS adds `(AGE ago)` of the last termination."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    ready = restarts = 0
    last_restart = ""
    for container in reversed(status.get("containerStatuses") or []):
        restarts += container.get("restartCount", 0)
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt") or ""
        last_restart = max(last_restart, finished)
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None:
            reason = terminated.get("reason") or (f"Signal:{terminated['signal']}" if terminated.get("signal")
                                                  else f"ExitCode:{terminated.get('exitCode', 0)}")
        elif container.get("ready") and "running" in state:
            ready += 1
    if _meta(pod).get("deletionTimestamp") and status.get("phase") not in ("Succeeded", "Failed"):
        reason = "Terminating"
    shown = f"{restarts} ({age(last_restart)} ago)" if restarts and last_restart else str(restarts)
    return [f"{ready}/{len(spec.get('containers') or [])}", reason, shown, age(_meta(pod).get("creationTimestamp")),
            status.get("podIP", "<none>"), spec.get("nodeName", "<none>"), "<none>", "<none>"]


def _service_row(svc: dict[str, Any]) -> Row:
    spec = svc.get("spec") or {}
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer" and not external:
        external_ip = "<pending>"
    elif spec.get("type") == "ExternalName":
        external_ip = spec.get("externalName", "<none>")
    else:
        external_ip = ",".join(external) or "<none>"
    ports = ",".join(
        (f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
         else f"{p['port']}/{p.get('protocol', 'TCP')}") for p in spec.get("ports") or []) or "<none>"
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), external_ip, ports,
            age(_meta(svc).get("creationTimestamp")), selector]


def _images(obj: dict[str, Any]) -> tuple[str, str]:
    containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


def _selector_text(obj: dict[str, Any]) -> str:
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def _deployment_row(dep: dict[str, Any]) -> Row:
    status, spec = dep.get("status") or {}, dep.get("spec") or {}
    return [f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0), age(_meta(dep).get("creationTimestamp")), *_images(dep),
            _selector_text(dep)]


def _daemonset_row(ds: dict[str, Any]) -> Row:
    status = ds.get("status") or {}
    node_selector = (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [status.get("desiredNumberScheduled", 0), status.get("currentNumberScheduled", 0),
            status.get("numberReady", 0), status.get("updatedNumberScheduled", 0),
            status.get("numberAvailable", 0),
            ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>",
            age(_meta(ds).get("creationTimestamp")), *_images(ds), _selector_text(ds)]


def _replicaset_row(rs: dict[str, Any]) -> Row:
    status = rs.get("status") or {}
    return [(rs.get("spec") or {}).get("replicas", 1), status.get("replicas", 0), status.get("readyReplicas", 0),
            age(_meta(rs).get("creationTimestamp")), *_images(rs), _selector_text(rs)]


def _statefulset_row(sts: dict[str, Any]) -> Row:
    return [f"{(sts.get('status') or {}).get('readyReplicas', 0)}/{(sts.get('spec') or {}).get('replicas', 1)}",
            age(_meta(sts).get("creationTimestamp")), *_images(sts)]


def _event_row(event: dict[str, Any]) -> Row:
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or _meta(event).get("creationTimestamp")
    return [age(last), event.get("type", ""), event.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}", event.get("message", "")]


def _node_row(node: dict[str, Any]) -> Row:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    roles = sorted(k.split("/", 1)[1] for k in _meta(node).get("labels", {})
                   if k.startswith("node-role.kubernetes.io/"))
    info = (node.get("status") or {}).get("nodeInfo") or {}
    status = "Ready" if ready.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"  # a cordoned node
    return [status, ",".join(roles) or "<none>", age(_meta(node).get("creationTimestamp")),
            info.get("kubeletVersion", "")]


def _custom_cell(column: PrinterColumn, obj: dict[str, Any]) -> Any:
    """A printer column's cell: lists and maps as compact JSON, dates as ages, missing as None."""
    value: Any = obj
    for key in column.json_path.strip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return None
    if column.type == "date":
        return age(value)
    if column.type == "string":
        return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)
    return value


_NAME: _Column = ("Name", "string", 0)
_AGE: _Column = ("Age", "string", 0)
_PRINTERS: dict[tuple[str, str], tuple[list[_Column], Callable[[dict[str, Any]], Row]]] = {
    ("", "pods"): ([_NAME, ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0), _AGE,
                    ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
                    ("Readiness Gates", "string", 1)], _pod_row),
    ("", "services"): ([_NAME, ("Type", "string", 0), ("Cluster-IP", "string", 0), ("External-IP", "string", 0),
                        ("Port(s)", "string", 0), _AGE, ("Selector", "string", 1)], _service_row),
    ("apps", "deployments"): ([_NAME, ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                               ("Available", "integer", 0), _AGE, ("Containers", "string", 1),
                               ("Images", "string", 1), ("Selector", "string", 1)], _deployment_row),
    ("apps", "daemonsets"): ([_NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0),
                              ("Up-to-date", "integer", 0), ("Available", "integer", 0),
                              ("Node Selector", "string", 0), _AGE, ("Containers", "string", 1),
                              ("Images", "string", 1), ("Selector", "string", 1)], _daemonset_row),
    ("apps", "replicasets"): ([_NAME, ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0),
                               _AGE, ("Containers", "string", 1), ("Images", "string", 1),
                               ("Selector", "string", 1)], _replicaset_row),
    ("apps", "statefulsets"): ([_NAME, ("Ready", "string", 0), _AGE, ("Containers", "string", 1),
                                ("Images", "string", 1)], _statefulset_row),
    ("policy", "poddisruptionbudgets"): (
        [_NAME, ("Min Available", "string", 0), ("Max Unavailable", "string", 0),
         ("Allowed Disruptions", "integer", 0), _AGE],
        lambda pdb: [str((pdb.get("spec") or {}).get("minAvailable", "N/A")),
                     str((pdb.get("spec") or {}).get("maxUnavailable", "N/A")),
                     (pdb.get("status") or {}).get("disruptionsAllowed", 0), age(_meta(pdb).get("creationTimestamp"))]),
    ("", "namespaces"): ([_NAME, ("Status", "string", 0), _AGE],
                         lambda ns: [(ns.get("status") or {}).get("phase", "Active"),
                                     age(_meta(ns).get("creationTimestamp"))]),
    ("", "events"): ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
                      ("Object", "string", 0), ("Message", "string", 0)], _event_row),
    ("", "configmaps"): ([_NAME, ("Data", "integer", 0), _AGE],
                         lambda cm: [len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
                                     age(_meta(cm).get("creationTimestamp"))]),
    ("", "secrets"): ([_NAME, ("Type", "string", 0), ("Data", "integer", 0), _AGE],
                      lambda s: [s.get("type", "Opaque"), len(s.get("data") or {}),
                                 age(_meta(s).get("creationTimestamp"))]),
    ("", "nodes"): ([_NAME, ("Status", "string", 0), ("Roles", "string", 0), _AGE, ("Version", "string", 0)],
                    _node_row),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ([_NAME, ("Created At", "date", 0)],
                                                           lambda crd: [_meta(crd).get("creationTimestamp")]),
}


def _printer(resource: ResourceType) -> tuple[list[_Column], Callable[[dict[str, Any]], Row]]:
    if (resource.group, resource.plural) in _PRINTERS:
        return _PRINTERS[resource.group, resource.plural]
    if resource.columns:
        return ([_NAME] + [(c.name, c.type, c.priority) for c in resource.columns],
                lambda obj: [_custom_cell(c, obj) for c in resource.columns])
    return [_NAME, _AGE], lambda obj: [age(_meta(obj).get("creationTimestamp"))]


def table(resource: ResourceType, objects: list[dict[str, Any]], resource_version: str,
          include_object: str = "Metadata") -> dict[str, Any]:
    """A Table of `objects`; `include_object` is the request's `includeObject` (None/Metadata/Object)."""
    columns, cells = _printer(resource)
    has_name = columns[0] is _NAME
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": ([_meta(obj).get("name")] if has_name else []) + cells(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": _meta(obj)}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": [{"name": name, "type": kind, "format": "name" if (name, kind, prio) == _NAME else "",
                                   "description": "", "priority": prio} for name, kind, prio in columns],
            "rows": rows}
