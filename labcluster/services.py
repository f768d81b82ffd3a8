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
- LoadBalancer ingress IPs are not the apiserver's business: `LoadBalancerController` is the
  cloud-provider/MetalLB side. The base class behaves like a bare-metal cluster with no such
  implementation: EXTERNAL-IP stays `<pending>` (so `helm --wait` waits on LoadBalancer services,
  as it does on a real cluster). Subclass it and override `assign` (and `triggers`) to hand out
  IPs, e.g. from MetalLB's ConfigMap `metallb-system/config` or its `IPAddressPool` objects.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any

from labcluster import errors
from labcluster.cluster import Cluster, Controller
from labcluster.store import ResourceType

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
    """Assigns `status.loadBalancer.ingress` to LoadBalancer services; see the module docstring.

    `reconcile` runs after every API write to a resource in `triggers`: it clears the ingress of
    services that are no longer LoadBalancers (as MetalLB and cloud controllers release it) and
    asks `assign` for an ingress for each LoadBalancer service that has none.
    """

    triggers: frozenset[tuple[str, str]] = frozenset({("", "services")})

    def assign(self, cluster: Cluster, service: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The ingress entries (e.g. `[{"ip": "1.2.3.4"}]`) for a service, or None to leave it pending."""
        return None

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) in self.triggers:
            self.reconcile(cluster)

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        if (resource.group, resource.plural) in self.triggers:
            self.reconcile(cluster)

    def reconcile(self, cluster: Cluster) -> None:
        services = cluster.core("services")
        for svc in cluster.store.list(services):
            status = svc.setdefault("status", {}).setdefault("loadBalancer", {})
            if svc["spec"].get("type") != "LoadBalancer":
                if status.get("ingress"):
                    status.pop("ingress")
                    cluster.write_status(services, svc)
            elif not status.get("ingress"):
                ingress = self.assign(cluster, svc)
                if ingress:
                    status["ingress"] = ingress
                    cluster.write_status(services, svc)
