"""The network of the pods the lab's kubelet plays, on the node it runs on: what a CNI plugin and
kube-proxy (iptables mode) set up on a real node.

- CNI (https://www.cni.dev/docs/spec/, done the way Calico's routed veths do it): each pod gets a
  network namespace `/run/netns/lab-<uid>` with its pod IP (status.podIP, from the emulator's
  10.244.0.0/16) as a /32 on `eth0`, the peer of a veth `lp<uid>` in the node's namespace, and a
  default route through the link-local gateway 169.254.1.1, the address of the node's end of
  each veth (Calico answers it by proxy ARP through the node's default route; the lab's hosts have
  none, so the node holds the address itself); the node routes the pod IP to the veth and
  forwards (`ip_forward`). Traffic from pods to addresses outside the pod network is masqueraded
  behind the node's address (as flannel's and Calico's `ipMasq`/`natOutgoing` do), so the
  other lab hosts need no route to the pods.
- kube-proxy (https://kubernetes.io/docs/reference/networking/virtual-ips/, pkg/proxy/iptables):
  chain `LAB-SERVICES` in the nat table, jumped to from PREROUTING (what other hosts and the pods
  send) and OUTPUT (what the node itself sends), sends each Service port's ClusterIP:port, its
  NodePort on the node's address, and its load-balancer ingress IP:port (only when that IP is on
  this node, where MetalLB's emulation announces it) to one ready endpoint's podIP:targetPort (a
  real kube-proxy spreads connections over all of them; the lab's Services have one). Each
  ClusterIP gets a /32 route on the node's interface so that the node's own connections to it are
  routed at all before DNAT (a real node's default route covers them). `LAB-FORWARD` in the filter
  table accepts the pods' traffic (kube-proxy's KUBE-FORWARD; Docker on the node sets FORWARD's
  policy to DROP). Connections from a pod to its own Service (hairpin) are not masqueraded.
  A Service port with no ready endpoint is rejected (`LAB-NO-ENDPOINTS` in the filter table, from
  INPUT, FORWARD and OUTPUT, `REJECT` with icmp-port-unreachable, as kube-proxy's "has no
  endpoints" rules): a client is refused at once rather than left to time out.
"""
from __future__ import annotations

import dataclasses
import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

POD_CIDR = "10.244.0.0/16"
GATEWAY = "169.254.1.1"
NAT_CHAIN, FILTER_CHAIN, REJECT_CHAIN = "LAB-SERVICES", "LAB-FORWARD", "LAB-NO-ENDPOINTS"
NETNS_DIR = Path("/run/netns")


class NetworkError(Exception):
    """A command setting up the pods' network failed."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def netns_name(uid: str) -> str:
    return f"lab-{uid}"


def _veth(uid: str) -> str:
    return "lp" + uid.replace("-", "")[:12]  # at most 15 characters (IFNAMSIZ)


def netns_path(uid: str) -> Path:
    return NETNS_DIR / netns_name(uid)


def add_pod(uid: str, ip: str) -> Path:
    """The pod's network namespace with `ip` (see the module docstring); its path."""
    name, veth = netns_name(uid), _veth(uid)
    remove_pod(uid)
    _run("ip", "netns", "add", name)
    ns = ("ip", "-n", name)
    _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
    _run(*ns, "link", "set", "lo", "up")
    _run(*ns, "addr", "add", f"{ip}/32", "dev", "eth0")
    _run(*ns, "link", "set", "eth0", "up")
    _run(*ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link")
    _run(*ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0")
    _run("ip", "addr", "add", f"{GATEWAY}/32", "dev", veth, "scope", "link")
    _run("ip", "link", "set", veth, "up")
    _run("ip", "route", "replace", f"{ip}/32", "dev", veth)
    return netns_path(uid)


def remove_pod(uid: str) -> None:
    """Delete the pod's namespace (its veth pair and route go with it)."""
    if netns_path(uid).exists():
        _run("ip", "netns", "del", netns_name(uid), check=False)
    _run("ip", "link", "del", _veth(uid), check=False)


@dataclasses.dataclass(frozen=True, order=True)
class Rule:
    """One Service port's address sent to an endpoint: destination ip:port -> endpoint ip:port
    (no endpoint_ip: the Service has no ready endpoint, and the address is rejected)."""

    ip: str
    port: int
    endpoint_ip: str
    endpoint_port: int
    protocol: str = "tcp"


class ServiceProxy:
    """kube-proxy's rules on this node (see the module docstring); rewritten only when they change."""

    def __init__(self, node_address: str):
        self.node_address = node_address
        self.rules: list[Rule] | None = None
        self.routed: set[str] = set()
        self.device = ""

    def prepare(self) -> None:
        """Forwarding, the chains and their jumps, the pods' masquerade (idempotent)."""
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self.device = next((line.split()[1] for line in _run("ip", "-o", "-4", "addr", "show").stdout.splitlines()
                            if line.split()[3].split("/")[0] == self.node_address), "eth0")
        hooked = (("nat", NAT_CHAIN, ("PREROUTING", "OUTPUT")), ("filter", FILTER_CHAIN, ("FORWARD",)),
                  ("filter", REJECT_CHAIN, ("INPUT", "FORWARD", "OUTPUT")))
        for table, chain, hooks in hooked:
            _run("iptables", "-w", "-t", table, "-N", chain, check=False)
            for hook in hooks:
                if _run("iptables", "-w", "-t", table, "-C", hook, "-j", chain, check=False).returncode:
                    _run("iptables", "-w", "-t", table, "-I", hook, "-j", chain)
        for rule in (("-t", "filter", FILTER_CHAIN, "-d", POD_CIDR, "-j", "ACCEPT"),
                     ("-t", "filter", FILTER_CHAIN, "-s", POD_CIDR, "-j", "ACCEPT"),
                     ("-t", "nat", "POSTROUTING", "-s", POD_CIDR, "!", "-d", POD_CIDR, "-o", self.device,
                      "-j", "MASQUERADE")):
            table, chain, spec = rule[:2], rule[2], rule[3:]
            if _run("iptables", "-w", *table, "-C", chain, *spec, check=False).returncode:
                _run("iptables", "-w", *table, "-A", chain, *spec)

    def sync(self, rules: list[Rule], cluster_ips: set[str]) -> None:
        """Make `LAB-SERVICES` hold exactly `rules`, and route `cluster_ips` to the node's interface."""
        rules = sorted(set(rules))
        if rules == self.rules and cluster_ips == self.routed:
            return
        if self.rules is None:
            self.prepare()
        lines = ["*nat", f":{NAT_CHAIN} - [0:0]"]
        lines += [f"-A {NAT_CHAIN} -d {r.ip}/32 -p {r.protocol} -m {r.protocol} --dport {r.port} "
                  f"-j DNAT --to-destination {r.endpoint_ip}:{r.endpoint_port}" for r in rules if r.endpoint_ip]
        lines += ["COMMIT", "*filter", f":{REJECT_CHAIN} - [0:0]"]
        lines += [f"-A {REJECT_CHAIN} -d {r.ip}/32 -p {r.protocol} -m {r.protocol} --dport {r.port} "
                  "-j REJECT --reject-with icmp-port-unreachable" for r in rules if not r.endpoint_ip]
        done = subprocess.run(["iptables-restore", "-w", "--noflush"], input="\n".join([*lines, "COMMIT", ""]),
                              capture_output=True, text=True)
        if done.returncode:
            raise NetworkError(f"iptables-restore: {done.stderr.strip()}")
        for ip in self.routed - cluster_ips:
            _run("ip", "route", "del", f"{ip}/32", "dev", self.device, check=False)
        for ip in sorted(cluster_ips - self.routed):
            _run("ip", "route", "replace", f"{ip}/32", "dev", self.device)
        self.rules, self.routed = rules, set(cluster_ips)
        log.info("Services: %s", ", ".join(f"{r.ip}:{r.port}->{r.endpoint_ip or 'rejected'}:{r.endpoint_port}"
                                           for r in rules) or "none")

    def clear(self) -> None:
        """Empty the Services' chain and drop the ClusterIP routes (the runner stops)."""
        _run("iptables", "-w", "-t", "nat", "-F", NAT_CHAIN, check=False)
        _run("iptables", "-w", "-t", "filter", "-F", REJECT_CHAIN, check=False)
        for ip in self.routed:
            _run("ip", "route", "del", f"{ip}/32", "dev", self.device, check=False)
        self.rules, self.routed = None, set()
