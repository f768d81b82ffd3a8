"""Services: IP and port allocation as the apiserver's service registry does it, and the hook
where a load-balancer implementation assigns external IPs.

- ClusterIP: a free address of the service CIDR (10.96.0.0/12, as kubeadm's default), chosen at
  random; `.1` is the `kubernetes` service's. A requested `spec.clusterIP` must be in the range
  and free; it is immutable afterwards; `None` makes a headless service.
- NodePort: every port of a `NodePort` or `LoadBalancer` service gets a free port of 30000-32767,
  chosen at random. A requested `nodePort` out of the range, or held by another service, is
  refused with `422 Invalid` and the apiserver's messages ("provided port is not in the valid
  range...", "provided port is already allocated"). An update that leaves out a nodePort keeps the
  one already allocated for that port; changing the type to ClusterIP releases them.
- LoadBalancer ingress IPs are not the apiserver's business: `LoadBalancerController` is where
  the cloud-provider or MetalLB side plugs in. The base class behaves like a bare-metal cluster
  with no such implementation: EXTERNAL-IP stays `<pending>` (so `helm --wait` waits on
  LoadBalancer services, as it does on a real cluster). The emulator's default is MetalLB
  (`lab.cluster.metallb`), which does nothing either until MetalLB is installed.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any

from lab.cluster import errors
from lab.cluster.cluster import Cluster, Controller
from lab.cluster.store import ResourceType

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
KUBERNETES_SERVICE_IP = str(SERVICE_CIDR[1])
NODE_PORT_RANGE = range(30000, 32768)
_NODE_PORT_TYPES = {"NodePort", "LoadBalancer"}


def _is_service(resource: ResourceType) -> bool:
    return (resource.group, resource.plural) == ("", "services")


def _others(cluster: Cluster, service: dict[str, Any]) -> list[dict[str, Any]]:
    meta = service["metadata"]
    return [s for s in cluster.store.list(cluster.core("services"))
            if (s["metadata"].get("namespace"), s["metadata"]["name"]) != (meta.get("namespace"), meta["name"])]


class ServiceAllocator(Controller):
    """Defaults, ClusterIP and NodePort allocation for Services (apiserver admission)."""

    def admit(self, cluster: Cluster, resource: ResourceType, svc: dict, old: dict | None) -> None:
        if not _is_service(resource):
            return
        spec = svc.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        others = _others(cluster, svc)
        if spec["type"] != "ExternalName":
            self._cluster_ip(svc, old, others)
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in _NODE_PORT_TYPES:
            self._node_ports(svc, old, others)
            spec.setdefault("externalTrafficPolicy", "Cluster")
            if spec["type"] == "LoadBalancer":
                spec.setdefault("allocateLoadBalancerNodePorts", True)
        else:
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
            spec.pop("externalTrafficPolicy", None)
        svc["status"] = (old or {}).get("status") or {"loadBalancer": {}}

    def _cluster_ip(self, svc: dict, old: dict | None, others: list[dict]) -> None:
        spec, name = svc["spec"], svc["metadata"]["name"]
        requested, current = spec.get("clusterIP"), ((old or {}).get("spec") or {}).get("clusterIP")
        if current and not requested:
            requested = current
        elif current and requested != current:
            raise errors.invalid("Service", "", name, "spec.clusterIP",
                                 f'Invalid value: "{requested}": field is immutable')
        used = {s["spec"].get("clusterIP") for s in others}
        if requested and requested != "None" and requested != current:
            if ipaddress.ip_address(requested) not in SERVICE_CIDR:
                raise errors.invalid("Service", "", name, "spec.clusterIPs[0]",
                                     f'Invalid value: "{requested}": failed to allocate IP {requested}: the '
                                     f"provided IP ({requested}) is not in the valid range. The range of "
                                     f"valid IPs is {SERVICE_CIDR}")
            if requested in used:
                raise errors.invalid("Service", "", name, "spec.clusterIPs[0]",
                                     f'Invalid value: "{requested}": failed to allocate IP {requested}: '
                                     "provided IP is already allocated")
        if not requested:
            requested = self._free_ip(used | {KUBERNETES_SERVICE_IP})
        spec["clusterIP"] = requested
        spec["clusterIPs"] = [requested]
        if requested != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")

    @staticmethod
    def _free_ip(used: set[str | None]) -> str:
        while True:
            candidate = str(SERVICE_CIDR[random.randrange(2, SERVICE_CIDR.num_addresses - 1)])
            if candidate not in used:
                return candidate

    def _node_ports(self, svc: dict, old: dict | None, others: list[dict]) -> None:
        name = svc["metadata"]["name"]
        used = {p.get("nodePort") for s in others for p in s["spec"].get("ports") or []}
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in ((old or {}).get("spec") or {}).get("ports") or []}
        taken_here: set[int] = set()
        for index, port in enumerate(svc["spec"].get("ports") or []):
            node_port = port.get("nodePort") or old_ports.get((port.get("port"), port["protocol"]))
            field = f"spec.ports[{index}].nodePort"
            if node_port:
                if node_port not in NODE_PORT_RANGE:
                    raise errors.invalid("Service", "", name, field,
                                         f"Invalid value: {node_port}: provided port is not in the valid range. "
                                         f"The range of valid ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[-1]}")
                if node_port in used:
                    raise errors.invalid("Service", "", name, field,
                                         f"Invalid value: {node_port}: provided port is already allocated")
                if node_port in taken_here:
                    raise errors.invalid("Service", "", name, field, f"Duplicate value: {node_port}")
            else:
                free = [p for p in NODE_PORT_RANGE if p not in used and p not in taken_here]
                if not free:
                    raise errors.ApiError(500, "InternalError", "range is full")
                node_port = random.choice(free)
            port["nodePort"] = node_port
            taken_here.add(node_port)


class LoadBalancerController(Controller):
    """Where a load-balancer implementation plugs in; this base class implements none.

    Like any `Controller` it sees every API write (`stored`, `deleted`) and writes what it assigns
    with `Cluster.write_status`. Besides, `start` runs once the stored objects are loaded, and
    `close` at shutdown, to undo what it did outside the emulator.
    """

    def start(self, cluster: Cluster) -> None:
        """Catch up with the objects there are at start (a real controller's first list)."""

    def close(self) -> None:
        """Undo what was done outside the emulator (called once, at shutdown)."""
