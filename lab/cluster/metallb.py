"""MetalLB, the emulator's load balancer: its controller and layer 2 speaker, as the real ones
behave in the two lines the runbook meets (0.9.x, from its manifest, and 0.13+, e.g. 0.14.8).

Installed: MetalLB acts only while a Deployment in `metallb-system` runs its controller image
(`metallb/controller:vX.Y.Z`, `quay.io/metallb/controller:...`), whose tag is the version;
announcing needs a DaemonSet there running `metallb/speaker` too. A new controller pod (the image
or pod template changed, or the pod deleted) starts afresh. Uninstalled, nothing is announced and
nothing changed any more: services keep whatever status they have, as with the real controller gone.

Configuration, by version, as upstream:
- Before 0.13: the ConfigMap `metallb-system/config`, key `config`: `address-pools` with `name`,
  `protocol` (layer2 pools are announced, bgp ones only allocated), `addresses` (`A-B` ranges or
  CIDRs) and `auto-assign`. IPAddressPool objects mean nothing to it.
- 0.13 and later (they dropped the ConfigMap): `IPAddressPool` objects in `metallb-system`
  (`spec.addresses`, `spec.autoAssign`). A pool's IPs are announced only if an `L2Advertisement`
  selects it (`ipAddressPools`, `ipAddressPoolSelectors`; one with neither selects every pool);
  with none they are assigned but not announced, as upstream.
A configuration that does not parse is ignored and the one in force stays ("config marked stale").
So is, before 0.13, a new one that leaves an assigned IP outside every pool: 0.9's allocator refuses
it until it changes again or the controller restarts. From 0.13 on such a configuration is taken:
the service's IP is cleared (Normal event `ClearAssignment`) and it gets another if a pool has one.

Allocation (the controller): a requested IP (`spec.loadBalancerIP`; from 0.13 also the annotation
`metallb.universe.tf/loadBalancerIPs`, and a service with both is refused) is given if it is in a
pool and no other service holds it; else the lowest free address of the first auto-assign pool
that has one. A service that gets none stays pending with a Warning `AllocationFailed` Event in
upstream's words (`Failed to allocate IP for "ns/name": <reason>`). Pending services are
re-examined after a configuration change and when a service holding an IP is deleted; from 0.13.9
also when one gives up its IP otherwise (e.g. its type changes to NodePort). Before that, a pending
service is retried only when it is itself changed: hence the runbook's step 9 workaround of turning
proxy-public away from LoadBalancer and back. Deterministic where upstream is not: pools are tried
in configuration order (upstream ranges over a Go map), services re-examined in creation order.
Not emulated: IP sharing (`allow-shared-ip`), the `address-pool` annotation, BGP, dual stack,
`avoidBuggyIPs`, IPAddressPool `serviceAllocation`, load-balancer classes, the validating webhook.

The memberlist Secret: from 0.13 the controller creates the Secret its env
`METALLB_ML_SECRET_NAME` names (`memberlist`) when it is missing, key `secretkey` (128 random bytes,
base64), owned by its Deployment (`METALLB_DEPLOYMENT`), and leaves one that exists alone
(metallb/metallb controller/main.go, `--ml-secret-name`, and internal/k8s/k8s.go, CreateMlSecret).
Before 0.13 nobody does: 0.9's install has the operator create it by hand, once.

Announcing (the speaker): the lab's speaker runs on the control-plane host, the first node, and
announces every announced IP from there (upstream elects one node per IP): it records the
`nodeAssigned` Event and, given an `AddressAnnouncer` (`serve --announce-dev`), adds the IP to the
host's device.
"""
from __future__ import annotations

import base64
import copy
import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Iterator

import yaml

from lab.cluster.announce import AddressAnnouncer
from lab.cluster.cluster import Cluster
from lab.cluster.selectors import matches_label_selector
from lab.cluster.services import LoadBalancerController
from lab.cluster.store import ResourceType

log = logging.getLogger("lab.cluster.metallb")

NAMESPACE = "metallb-system"
CONFIG_MAP = "config"
LOAD_BALANCER_IPS = "metallb.universe.tf/loadBalancerIPs"
ALLOCATED_FROM_POOL = "metallb.universe.tf/ip-allocated-from-pool"
CRDS = (0, 13)  # IPAddressPool configuration, the loadBalancerIPs annotation, ClearAssignment events
RELEASE_REPROCESSES = (0, 13, 9)  # a service giving up its IP re-examines the pending ones (PR 1645)
POOL_ANNOTATION = (0, 13, 9)  # services record their pool in ALLOCATED_FROM_POOL
_IMAGE = re.compile(r"(?:^|/)metallb/(controller|speaker):v?(\d+)\.(\d+)\.(\d+)")

Version = tuple[int, ...]


@dataclass(frozen=True)
class Pool:
    name: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]  # a range as the CIDRs covering it
    auto_assign: bool = True

    def __contains__(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def ipv4_addresses(self) -> Iterator[str]:
        """In order, network and broadcast addresses included, as MetalLB hands them out."""
        for network in self.networks:
            if network.version == 4:
                yield from map(str, network)


@dataclass(frozen=True)
class Config:
    pools: tuple[Pool, ...]
    announced: frozenset[str]  # the pools whose IPs the layer 2 speaker announces


def _networks(entries: Any, pool: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in entries or []:
        try:
            if "-" in str(entry):
                first, last = (ipaddress.ip_address(part.strip()) for part in str(entry).split("-", 1))
                networks += ipaddress.summarize_address_range(first, last)
            else:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except (ValueError, TypeError):
            raise ValueError(f'invalid CIDR "{entry}" in pool "{pool}"') from None
    return tuple(networks)


def _checked(pools: list[Pool]) -> tuple[Pool, ...]:
    """Pools as MetalLB accepts them: unique names, no address twice."""
    names: set[str] = set()
    seen: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for pool in pools:
        if pool.name in names:
            raise ValueError(f'duplicate definition of pool "{pool.name}"')
        names.add(pool.name)
        for network in pool.networks:
            clash = next((other for other in seen if other.version == network.version and other.overlaps(network)),
                         None)
            if clash:
                raise ValueError(f'CIDR "{network}" in pool "{pool.name}" overlaps with already defined CIDR "{clash}"')
            seen.append(network)
    return tuple(pools)


def configmap_config(configmap: dict[str, Any]) -> Config:
    """MetalLB < 0.13's configuration: the ConfigMap's `config` key (raises ValueError)."""
    try:
        data = yaml.safe_load((configmap.get("data") or {}).get("config") or "") or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"could not parse config: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("could not parse config: not a mapping")
    pools, layer2 = [], set()
    for index, entry in enumerate(data.get("address-pools") or [], 1):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not name:
            raise ValueError(f"parsing address pool #{index}: missing pool name")
        if entry.get("protocol") not in ("layer2", "bgp"):
            raise ValueError(f'parsing address pool #{index}: unknown protocol "{entry.get("protocol")}"')
        pools.append(Pool(name, _networks(entry.get("addresses"), name), entry.get("auto-assign", True) is not False))
        if entry["protocol"] == "layer2":
            layer2.add(name)
    return Config(_checked(pools), frozenset(layer2))


def resource_config(pools: list[dict[str, Any]], advertisements: list[dict[str, Any]]) -> Config:
    """MetalLB 0.13+'s configuration: IPAddressPool and L2Advertisement objects (raises ValueError)."""
    parsed, announced = [], set()
    for obj in pools:
        name, spec, labels = obj["metadata"]["name"], obj.get("spec") or {}, obj["metadata"].get("labels") or {}
        parsed.append(Pool(name, _networks(spec.get("addresses"), name), spec.get("autoAssign", True) is not False))
        for advertisement in advertisements:
            wanted = advertisement.get("spec") or {}
            names, selectors = wanted.get("ipAddressPools") or [], wanted.get("ipAddressPoolSelectors") or []
            if (not names and not selectors) or name in names or any(
                    matches_label_selector(selector, labels) for selector in selectors):
                announced.add(name)
    return Config(_checked(parsed), frozenset(announced))


def _runs(obj: dict[str, Any]) -> tuple[str | None, Version | None]:
    """The MetalLB component (controller or speaker) and version a workload or pod runs, if any."""
    spec = obj.get("spec") or {}
    for container in ((spec.get("template") or {}).get("spec") or spec).get("containers") or []:
        if match := _IMAGE.search(container.get("image") or ""):
            return match.group(1), tuple(int(part) for part in match.groups()[1:])
    return None, None


def _running(cluster: Cluster, plural: str, component: str) -> list[Version]:
    """The versions of a MetalLB component that workloads of this kind in metallb-system run."""
    found = [_runs(obj) for obj in cluster.store.list(cluster.resource("apps", "v1", plural), NAMESPACE)]
    return [version for name, version in found if name == component and version]


def _key(svc: dict[str, Any]) -> str:
    return f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"


def _ingress_ip(svc: dict[str, Any]) -> str | None:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return next((entry["ip"] for entry in ingress if entry.get("ip")), None)


def _is_load_balancer(svc: dict[str, Any]) -> bool:
    return (svc.get("spec") or {}).get("type") == "LoadBalancer"


def _watched(resource: ResourceType, obj: dict[str, Any]) -> bool:
    """MetalLB's own workloads and configuration (what it watches besides Services)."""
    meta = obj["metadata"]
    return meta.get("namespace") == NAMESPACE and (
        (resource.group == "apps" and resource.plural in ("deployments", "daemonsets"))
        or (resource.group, resource.plural, meta["name"]) == ("", "configmaps", CONFIG_MAP)
        or resource.group == "metallb.io")


class MetalLBController(LoadBalancerController):
    """MetalLB's controller and speaker; see the module docstring."""

    def __init__(self, announcer: AddressAnnouncer | None = None):
        self.announcer = announcer
        self.version: Version | None = None  # of the running controller; None: not installed
        self.speaker = False  # the speaker DaemonSet runs
        self.config: Config | None = None  # in force; None: none read since the controller started
        self._announced: dict[str, str] = {}  # IP -> the service it is announced for

    def start(self, cluster: Cluster) -> None:
        self._sync(cluster)

    def close(self) -> None:
        if self.announcer:
            self.announcer.close()

    def stored(self, cluster: Cluster, resource: ResourceType, obj: dict, old: dict | None) -> None:
        if (resource.group, resource.plural) == ("", "services"):
            if self.config is not None:
                self._service_changed(cluster, obj)
        elif _watched(resource, obj):
            if old and resource.plural == "deployments" and _runs(old)[0] == "controller" and (
                    old["spec"].get("template") != obj["spec"].get("template")):
                self.version = None  # a new controller pod starts afresh
            self._sync(cluster)

    def deleted(self, cluster: Cluster, resource: ResourceType, obj: dict) -> None:
        if (resource.group, resource.plural) == ("", "services"):
            if self.config is not None and _ingress_ip(obj):
                log.info("controller: %s: service deleted, services will be reprocessed", _key(obj))
                self._reprocess(cluster)
                self._announce(cluster)
        elif (resource.group, resource.plural) == ("", "pods") and obj["metadata"].get("namespace") == NAMESPACE \
                and _runs(obj)[0] == "controller":
            self.version = None  # its replacement starts afresh
            self._sync(cluster)
        elif _watched(resource, obj):
            self._sync(cluster)

    def _sync(self, cluster: Cluster) -> None:
        """Follow MetalLB's install and configuration; re-examine every service if the pools changed."""
        version = next(iter(_running(cluster, "deployments", "controller")), None)
        self.speaker = bool(_running(cluster, "daemonsets", "speaker"))
        if version != self.version:
            log.info("controller: %s", f"version {'.'.join(map(str, version))} started" if version else "gone")
            self.version, self.config = version, None
        if self.version and self.version >= CRDS:
            _create_memberlist(cluster)
        if self.version and self._load(cluster):
            self._reprocess(cluster)
        self._announce(cluster)

    def _load(self, cluster: Cluster) -> bool:
        """Read the configuration in this version's format; whether the pools in force changed."""
        try:
            if self.version < CRDS:
                configmap = cluster.store.get(cluster.core("configmaps"), NAMESPACE, CONFIG_MAP)
                if configmap is None:
                    return False  # "configuration is missing, MetalLB will not function": the old one stays
                config = configmap_config(configmap)
            else:
                found = [cluster.registry.get("metallb.io", "v1beta1", plural)
                         for plural in ("ipaddresspools", "l2advertisements")]
                config = resource_config(*(cluster.store.list(r, NAMESPACE) if r else [] for r in found))
        except ValueError as exc:
            log.warning("controller: config (re)load failed, config marked stale: %s", exc)
            return False
        if self.config is not None and config.pools == self.config.pools:
            self.config = config  # only what is announced changed
            return False
        if self.config is not None and self.version < CRDS and (unfit := self._unfit(cluster, config)):
            log.warning("controller: applying new configuration failed, config marked stale: "
                        "new config not compatible with assigned IPs: %s", unfit)
            return False
        self.config = config
        log.info("controller: config (re)loaded: %s", ", ".join(
            f"{pool.name} {[str(n) for n in pool.networks]}" for pool in config.pools) or "no pools")
        return True

    @staticmethod
    def _unfit(cluster: Cluster, config: Config) -> str | None:
        """Why 0.9's allocator refuses `config`: a service holds an IP it leaves out (None: it does not)."""
        for svc in cluster.store.list(cluster.core("services")):
            ip = _ingress_ip(svc)
            if _is_load_balancer(svc) and ip and not any(ip in pool for pool in config.pools):
                return f'service "{_key(svc)}" cannot own "{ip}" under new config'
        return None

    def _service_changed(self, cluster: Cluster, svc: dict[str, Any]) -> None:
        if self._converge(cluster, svc) and self.version >= RELEASE_REPROCESSES:
            log.info("controller: %s: removed loadbalancer from service, services will be reprocessed", _key(svc))
            self._reprocess(cluster)
        self._announce(cluster)

    def _reprocess(self, cluster: Cluster) -> None:
        for svc in cluster.store.list(cluster.core("services")):
            self._converge(cluster, svc)

    def _converge(self, cluster: Cluster, svc: dict[str, Any]) -> bool:
        """MetalLB's convergeBalancer for one service; whether it gave up an IP a pool still holds."""
        key, current = _key(svc), _ingress_ip(svc)
        released = current is not None and self._pool_of(current) is not None
        if not _is_load_balancer(svc) or not self.config.pools:
            self._write(cluster, svc, None)
            return released
        used = {ip: _key(other) for other in cluster.store.list(cluster.core("services"))
                if _is_load_balancer(other) and (ip := _ingress_ip(other)) and _key(other) != key}
        try:
            requested, refusal = self._requested(svc), None
        except ValueError as exc:
            requested, refusal = None, str(exc)
        ip = current
        if ip and (problem := self._unassignable(ip, key, used)):
            if self.version >= CRDS:
                self._event(cluster, svc, "ClearAssignment", f'current IP for "{key}" not allowed by config, '
                                                             f"will attempt for new IP assignment: {problem}")
            ip = None
        elif ip and refusal and self.version >= CRDS:  # it keeps its IP, and is told why its request is ignored
            self._event(cluster, svc, "LoadBalancerFailed", f"invalid requested loadbalancer IPs: {refusal}", "Warning")
            return False
        elif ip and (refusal or requested not in (None, ip)):
            ip = None  # it asks for another IP (0.9: an unusable spec.loadBalancerIP is another one)
        if ip is None:
            try:
                ip = self._allocate(requested, refusal, key, used)
            except ValueError as exc:
                self._event(cluster, svc, "AllocationFailed", f'Failed to allocate IP for "{key}": {exc}', "Warning")
                log.info("controller: %s: IP allocation failed: %s", key, exc)
                self._write(cluster, svc, None)
                return released
            self._event(cluster, svc, "IPAllocated", f"Assigned IP {self._quote(ip)}")
            log.info("controller: %s: assigned %s", key, ip)
        self._write(cluster, svc, ip)
        return False

    def _allocate(self, requested: str | None, refusal: str | None, key: str, used: dict[str, str]) -> str:
        """The IP MetalLB's allocator gives the service (raises ValueError with its reason)."""
        if refusal:
            raise ValueError(refusal)
        if requested:
            if problem := self._unassignable(requested, key, used):
                raise ValueError(problem)
            return requested
        for pool in self.config.pools:
            if pool.auto_assign:
                for ip in pool.ipv4_addresses():
                    if ip not in used:
                        return ip
        raise ValueError("no available IPs")

    def _unassignable(self, ip: str, key: str, used: dict[str, str]) -> str | None:
        if self._pool_of(ip) is None:
            return f"{self._quote(ip)} is not allowed in config"
        if ip in used:  # no sharing keys: an IP serves one service
            return f'can\'t change sharing key for "{key}", address also in use by {used[ip]}'
        return None

    def _requested(self, svc: dict[str, Any]) -> str | None:
        """The IP the service asks for, if any (raises ValueError with upstream's reason)."""
        spec_ip = svc["spec"].get("loadBalancerIP") or ""
        annotations = svc["metadata"].get("annotations") or {}
        annotated = annotations.get(LOAD_BALANCER_IPS, "") if self.version >= CRDS else ""
        if annotated and spec_ip:
            raise ValueError(f"service can not have both {LOAD_BALANCER_IPS} and svc.Spec.LoadBalancerIP")
        if annotated:
            ips = [part.strip() for part in annotated.split(",")]
            if not all(_is_ip(ip) for ip in ips):
                raise ValueError(f'invalid {LOAD_BALANCER_IPS}: "{annotated}"')
            if len(ips) > 1:  # two addresses are dual stack; the lab's services are IPv4 only
                quoted = " ".join(f'"{ip}"' for ip in ips)
                raise ValueError(f"requested loadBalancer IP(s) [{quoted}] does not match the ipFamily of the service")
            return ips[0]
        if spec_ip and not _is_ip(spec_ip):
            raise ValueError(f'invalid spec.loadBalancerIP "{spec_ip}"')
        return spec_ip or None

    def _pool_of(self, ip: str) -> Pool | None:
        return next((pool for pool in self.config.pools if ip in pool), None)

    def _quote(self, ip: str) -> str:
        """As Go's %q prints the IP: 0.13+ passes a list of IPs, 0.9 one."""
        return f'["{ip}"]' if self.version >= CRDS else f'"{ip}"'

    def _write(self, cluster: Cluster, svc: dict[str, Any], ip: str | None) -> None:
        """Set the service's ingress (and pool annotation) to `ip`, or clear them; written if changed."""
        new = copy.deepcopy(svc)
        new.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]} if ip else {}
        annotations = dict(new["metadata"].get("annotations") or {})
        annotations.pop(ALLOCATED_FROM_POOL, None)
        pool = self._pool_of(ip) if ip else None
        if pool and self.version >= POOL_ANNOTATION:
            annotations[ALLOCATED_FROM_POOL] = pool.name
        if annotations:
            new["metadata"]["annotations"] = annotations
        else:
            new["metadata"].pop("annotations", None)
        if new != svc:
            cluster.write_status(cluster.core("services"), new)

    @staticmethod
    def _event(cluster: Cluster, svc: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        cluster.record_event(svc, reason, message, "metallb-controller", kind)

    def _announce(self, cluster: Cluster) -> None:
        """The speaker: announce each assigned IP of an announced pool; withdraw the others."""
        wanted: dict[str, dict[str, Any]] = {}
        if self.speaker and self.config is not None:
            for svc in cluster.store.list(cluster.core("services")):
                ip = _ingress_ip(svc)
                pool = self._pool_of(ip) if ip and _is_load_balancer(svc) else None
                if ip and pool and pool.name in self.config.announced:
                    wanted[ip] = svc
        nodes = cluster.store.list(cluster.core("nodes"))
        node = nodes[0]["metadata"]["name"] if nodes else ""
        for ip, svc in wanted.items():
            if self._announced.get(ip) != _key(svc):
                log.info("speaker: %s: announcing %s from node %s", _key(svc), ip, node)
                protocol = ' with protocol "layer2"' if self.version >= CRDS else ""
                cluster.record_event(svc, "nodeAssigned", f'announcing from node "{node}"{protocol}', "metallb-speaker")
        for ip in sorted(self._announced.keys() - wanted.keys()):
            log.info("speaker: %s: withdrawing %s", self._announced[ip], ip)
        self._announced = {ip: _key(svc) for ip, svc in wanted.items()}
        if self.announcer:
            self.announcer.update(set(wanted))


def _create_memberlist(cluster: Cluster) -> None:
    """The 0.13+ controller's CreateMlSecret: the speakers' memberlist key, unless there is one."""
    namespace = cluster.store.get(cluster.core("namespaces"), None, NAMESPACE) or {}
    if (namespace.get("status") or {}).get("phase") != "Active":
        return  # gone or terminating: the apiserver refuses new content (403)
    deployments = cluster.resource("apps", "v1", "deployments")
    for deployment in cluster.store.list(deployments, NAMESPACE):
        env = {e.get("name"): e.get("value") for c in deployment["spec"]["template"]["spec"].get("containers") or []
               for e in c.get("env") or []}
        name = env.get("METALLB_ML_SECRET_NAME")
        if _runs(deployment)[0] != "controller" or not name or \
                cluster.store.get(cluster.core("secrets"), NAMESPACE, name) is not None:
            continue
        meta = deployment["metadata"]
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"]}
        key = base64.b64encode(base64.b64encode(secrets.token_bytes(128))).decode("ascii")
        cluster.create(cluster.core("secrets"), {"metadata": {"name": name, "ownerReferences": [owner]},
                                                 "data": {"secretkey": key}}, NAMESPACE)
        log.info("controller: created secret %s/%s", NAMESPACE, name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
