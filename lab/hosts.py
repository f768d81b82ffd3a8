"""The lab: local hosts made with Linux namespaces, reachable over SSH.

A host is a network namespace ``bhlab-NAME`` on the bridge ``bhlab0`` (10.77.0.1/24,
no default route) plus its own mount, UTS and PID namespaces, with tini as PID 1
running ``lab/host-init.sh``. That script gives the host its private files, the users
root and deploy, sshd, and the host's service: dockerd or containerd and the node agent (nodes, by
the lab's runtime; ``lab.apps.nodeagent``), nginx (the proxy) or the registry (``lab.registry``). This module is the
root-namespace side: keys, the lab CA (``lab.ca``) and the hosts' certificates, the shared template
layer, the network, starting and killing hosts by their recorded PID, the control plane's cluster
settings (its Kubernetes version, the charts its repository serves: see ``lab.charts``), the nodes'
runtime, and the client files in the state directory (``ssh_config``, ``known_hosts``,
``hosts.yaml``, ``ca.crt``). The hosts' own files (overlay upper and
work dirs, the template layer) sit in the state directory too, unless it is under a directory
hosts get privately: then in a root-only ``/srv/bhops-lab/<hash>``, since an overlay cannot
keep its upper dir inside its lower dir. One lab per machine (the bridge and subnet are
fixed): ``/run/bhops-lab.owner`` names the state directory whose lab it is. Everything here
needs root.
"""
from __future__ import annotations

import grp
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab import ca, charts

LAB_FILES = Path(__file__).resolve().parent  # this package: host-init.sh, template/, ...
REPO = LAB_FILES.parent  # the checkout: .venv, .tools, hosts.yaml, the default state dir .lab/
BRIDGE = "bhlab0"
SUBNET = "10.77.0"
MAX_NODES = 50
CONTROL_PLANE = "node1"  # also runs the lab's cluster: API emulator :6443, chart repository :8879
KUBE_VERSIONS = ("1.24", "1.32")  # what the API emulator can be (`lab.cluster serve --kube-version`)
DEFAULT_KUBE_VERSION = "1.32"
RUNTIMES = ("docker", "containerd", "mixed")  # mixed: lab-node1 and odd nodes docker, even nodes containerd
DEFAULT_RUNTIME = "docker"
REGISTRY = "registry"  # lab-registry, 10.77.0.6: the nodes' mirror (lab.registry); not in the inventory
REGISTRY_PORT = 5000  # https
HELM = REPO / ".tools" / "bin" / "helm"  # for `helm pull` of the charts (scripts/install-k8s-tools)
TIMEOUT = 60.0
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ENV = {"PATH": SYSTEM_PATH, "HOME": "/root", "LANG": "C.UTF-8"}  # for commands and hosts
# Hosts get these directories privately (host-init.sh shows them the checkout wherever it is),
# so the hosts' files must live elsewhere: under HOSTS_ROOT when the state dir is under one.
PRIVATE_DIRS = ("/etc", "/var", "/usr", "/opt", "/run", "/tmp", "/root", "/home")
OVERLAID = ("etc", "var", "usr", "opt")
HOSTS_ROOT = Path("/srv/bhops-lab")
OWNER = Path("/run/bhops-lab.owner")  # the state dir whose lab runs on this machine
PREREQUISITES = {  # binary: Debian package
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "tini": "tini",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "sudo": "sudo",
    "dockerd": "docker.io",
    "docker": "docker.io",
    "iptables": "iptables",
    "nginx": "nginx",
    "containerd": "containerd",
    "ctr": "containerd",
    "docker-registry": "docker-registry",
}

# Leaders (the `unshare` parent of a host's PID 1) started by this process, by PID 1;
# waited for after the kill so they do not linger as zombies.
_LEADERS: dict[int, subprocess.Popen] = {}


class LabError(Exception):
    """The lab cannot do what was asked; the message says how to fix it."""


@dataclass(frozen=True)
class HostInfo:
    """One lab host: running (its PID 1 is alive), ssh_ok (sshd accepts a TCP connection),
    service_ok (its runtime answers on a node, nginx on the proxy, https on the registry) and, for a
    running node, its runtime."""

    name: str
    address: str
    roles: tuple[str, ...]
    running: bool
    ssh_ok: bool
    service_ok: bool
    runtime: str | None = None

    @property
    def alias(self) -> str:
        """The host's name in ssh_config and hosts.yaml."""
        return f"lab-{self.name}"


def state_dir() -> Path:
    """The lab's state directory: $BHOPS_LAB_DIR, else <repo>/.lab."""
    return Path(os.environ.get("BHOPS_LAB_DIR") or REPO / ".lab").absolute()


def hosts_dir(state: Path | None = None) -> Path:
    """Where the hosts' files are (hosts/NAME/, template/): the state dir, or, when that is under
    one of PRIVATE_DIRS, HOSTS_ROOT/<hash of the state dir's path>."""
    state = Path(state or state_dir()).resolve()
    if not any(state.is_relative_to(d) for d in PRIVATE_DIRS):
        return state
    return HOSTS_ROOT / hashlib.sha256(str(state).encode()).hexdigest()[:12]


def host_dir(name: str, state: Path | None = None) -> Path:
    """One host's files: init.log, sshd.log, upper/ (its writes to /etc, /var, /usr, /opt)."""
    return hosts_dir(state) / "hosts" / name


def up(nodes: int = 3, state: Path | None = None, kube_version: str | None = None,
       charts_dir: Path | None = None, runtime: str | None = None) -> list[HostInfo]:
    """Run the proxy, the registry and `nodes` nodes; keep running hosts, start or remove the others.
    The cluster is Kubernetes `kube_version` (default: the lab's current one, else
    DEFAULT_KUBE_VERSION) and its repository serves the real charts (from `charts_dir`, else as
    `lab.charts.archives` finds them). When the nodes, the version or the charts change, the control
    plane restarts so that its cluster has them (and starts empty). The nodes run `runtime` (one of
    RUNTIMES; default: the lab's current one, else DEFAULT_RUNTIME): a node whose runtime changes
    restarts (the control plane too, when it is one of them). The registry gets the lab's images."""
    check_arguments(nodes, kube_version, runtime)
    state = _prepare(state)
    charts_changed = _stage_charts(state, charts_dir)
    _kube_version_file(state).write_text(f"{kube_version or cluster_kube_version(state) or DEFAULT_KUBE_VERSION}\n")
    _runtime_file(state).write_text(f"{runtime or lab_runtime(state) or DEFAULT_RUNTIME}\n")
    wanted = [f"node{i}" for i in range(1, nodes + 1)] + ["proxy", REGISTRY]
    _remove(state, [name for name in _names(state) if name not in wanted])
    _plumb(wanted)
    OWNER.write_text(f"{state}\n")
    for name in wanted:  # every host's directory first: the control plane is told of all nodes
        if not _host_dir(state, name).exists():
            _make_host_dir(state, name)
    if (pid := _pid(state, CONTROL_PLANE)) and (charts_changed or _started_with(pid) != _cluster_args(state)):
        _kill(state, [CONTROL_PLANE])  # its cluster has other nodes, version or charts: restart it (empty)
    # restarted with the new runtime, or with a node agent
    _kill(state, [name for name in wanted if _runtime_changed(state, name) or _agentless(state, name)])
    _wait(state, {name: _start(state, name) for name in wanted if not _pid(state, name)})
    from lab import registry  # it builds on this module
    registry.publish(state)
    _write_client_files(state, wanted)
    return status(state)


def check_arguments(nodes: int, kube_version: str | None, runtime: str | None) -> None:
    """Refuse, before anything is made, a number of nodes, a Kubernetes version or a runtime the lab has not."""
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"the number of nodes must be between 1 and {MAX_NODES}, not {nodes}")
    if kube_version is not None and kube_version not in KUBE_VERSIONS:
        raise LabError(f"unknown Kubernetes version {kube_version!r}: the lab's cluster can be "
                       f"{' or '.join(KUBE_VERSIONS)}")
    if runtime is not None and runtime not in RUNTIMES:
        raise LabError(f"unknown runtime {runtime!r}: the lab's nodes can run {', '.join(RUNTIMES[:-1])} "
                       f"or {RUNTIMES[-1]} (lab-node1 and odd nodes docker, even nodes containerd)")


def node_runtime(name: str, runtime: str | None) -> str | None:
    """What runs a host's containers under the lab's `runtime`: docker or containerd for a node, None
    for the proxy and the registry. mixed: lab-node1 and odd nodes docker, even nodes containerd."""
    if not re.fullmatch(r"node[1-9]\d*", name):
        return None
    runtime = runtime or DEFAULT_RUNTIME
    if runtime == "mixed":
        return "containerd" if int(name[4:]) % 2 == 0 else "docker"
    return runtime


def down(state: Path | None = None) -> None:
    """Stop every host and remove its network, mounts and files (keeps the client key)."""
    _check_root()
    state = Path(state or state_dir()).resolve()
    _check_owner(state)
    _remove(state, _names(state))
    links = [p.name for p in Path("/sys/class/net").glob("bhlab*")]
    netns = [p.name for p in Path("/run/netns").glob("bhlab-*")]
    _ip_batch([f"link del {link}" for link in links] + [f"netns del {ns}" for ns in netns])
    root = hosts_dir(state)
    _unmount_under(root)
    for path in [root] if root != state else [root / "hosts", root / "template", root / "pod-logs",
                                              _served_charts(root)]:
        shutil.rmtree(path, ignore_errors=True)
    for name in ("client.pub", "ssh_config", "known_hosts", "hosts.yaml", _kube_version_file(state).name,
                 _runtime_file(state).name):
        (state / name).unlink(missing_ok=True)
    OWNER.unlink(missing_ok=True)


def status(state: Path | None = None) -> list[HostInfo]:
    """Describe each host of the lab (empty when the lab is down)."""
    state = Path(state or state_dir())
    return [_info(state, name) for name in _names(state)]


def cluster_kube_version(state: Path | None = None) -> str | None:
    """The Kubernetes version of the lab's cluster (None when the lab is down)."""
    try:
        return _kube_version_file(Path(state or state_dir())).read_text().strip() or None
    except FileNotFoundError:
        return None


def lab_runtime(state: Path | None = None) -> str | None:
    """What the lab's nodes run, one of RUNTIMES (None when the lab is down)."""
    try:
        return _runtime_file(Path(state or state_dir())).read_text().strip() or None
    except FileNotFoundError:
        return None


def run_in(name: str, argv: list[str], state: Path | None = None) -> str:
    """Run a command as root inside a running lab host (its mount, UTS, network and PID namespaces);
    return its output, or raise LabError with it when it fails."""
    _check_root()
    if not (pid := _pid(Path(state or state_dir()), name)):
        raise LabError(f"lab host {name} is not running; run `invoke lab.up` first")
    result = subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--", *argv],
                            capture_output=True, text=True, env=ENV, stdin=subprocess.DEVNULL)
    if result.returncode:
        raise LabError(f"`{' '.join(argv)}` failed on lab-{name}: {(result.stdout + result.stderr).strip()}")
    return result.stdout


def stop_host(name: str, state: Path | None = None) -> None:
    """Kill one host's processes; its network and files stay, so connections are refused."""
    _check_root()
    state = Path(state or state_dir()).resolve()
    _check_owner(state)
    _check_host(state, name)
    _kill(state, [name])


def start_host(name: str, state: Path | None = None) -> None:
    """Start one stopped host again with its files as they were."""
    state = _prepare(state)
    _check_host(state, name)
    _plumb([name])
    if not _pid(state, name):
        _wait(state, {name: _start(state, name)})


# Hosts: names, addresses, roles, directories.

def _address(name: str) -> str:
    return {"proxy": f"{SUBNET}.5", REGISTRY: f"{SUBNET}.6"}.get(name) or f"{SUBNET}.{10 + int(name[4:])}"


def _roles(name: str) -> tuple[str, ...]:
    return {"proxy": ("proxy",), REGISTRY: ("registry",),
            CONTROL_PLANE: ("node", "control-plane")}.get(name, ("node",))


def _init_role(name: str) -> str:
    """What host-init.sh runs on the host: node, control-plane, proxy or registry."""
    return _roles(name)[-1]


def _names(state: Path) -> list[str]:
    """Hosts that have a directory in the state dir: nodes by number, then the proxy, the registry."""
    others = ("proxy", REGISTRY)
    names = [p.name for p in (hosts_dir(state) / "hosts").glob("*")
             if re.fullmatch(r"node[1-9]\d*", p.name) or p.name in others]
    return sorted(names, key=lambda n: (others.index(n) + 1, 0) if n in others else (0, int(n[4:])))


def _is_node(name: str) -> bool:
    return "node" in _roles(name)


def _host_dir(state: Path, name: str) -> Path:
    return host_dir(name, state)


def _kube_version_file(state: Path) -> Path:
    return state / "kube-version"


def _runtime_file(state: Path) -> Path:
    return state / "runtime"


def _served_charts(root: Path) -> Path:
    """The charts the control plane's repository serves: a copy in the hosts' dir, which hosts see."""
    return root / "chart-repo"


def _check_host(state: Path, name: str) -> None:
    if name not in _names(state):
        raise LabError(f"no lab host {name!r} in {state}; run `invoke lab.up` first")


# Preparation: prerequisites, client key, template layer, charts.

def _check_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, a bridge): run it as root")


def _check_prerequisites() -> None:
    _check_root()
    for binary, package in PREREQUISITES.items():
        if not shutil.which(binary, path=SYSTEM_PATH):
            raise LabError(f"{binary} is missing: apt-get install {package}")


def _prepare(state: Path | None) -> Path:
    """Check prerequisites and that no other state dir's lab runs; make the state dir, client
    key, lab CA, hosts' dir and template layer (anew, with every host restarted, when lab/template
    or the CA changed since it was made)."""
    _check_prerequisites()
    state = Path(state or state_dir()).resolve()
    _check_owner(state)
    root = hosts_dir(state)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root != state:
        HOSTS_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
        HOSTS_ROOT.chmod(0o700)  # the hosts' keys and files: root only
    (root / "hosts").mkdir(parents=True, exist_ok=True)
    (root / "pod-logs").mkdir(exist_ok=True)  # every node's pods' logs (host-init.sh), read by `kubectl logs`
    if not (state / "id_ed25519").exists():
        _keygen(state / "id_ed25519", "bhops-lab-client")
    shutil.copyfile(state / "id_ed25519.pub", root / "client.pub")  # where the hosts can read it
    ca.ensure(state)
    template, stamp = root / "template", _template_stamp(state)
    made_from = (template / "stamp").read_text() if (template / "stamp").is_file() else None
    if template.exists() and made_from != stamp:
        _kill(state, _names(state))  # hosts see the template as their lower layer: restart them on the new one
        shutil.rmtree(template, ignore_errors=True)
    if not template.exists():
        _make_template(template, state)
        (template / "stamp").write_text(stamp)
    return state


def _template_stamp(state: Path) -> str:
    """What the template layer is made from: lab/template's files and the lab CA."""
    digest = hashlib.sha256(ca.cert_path(state).read_bytes())
    for path in sorted((LAB_FILES / "template").rglob("*")):
        if path.is_file():
            digest.update(f"{path.relative_to(LAB_FILES)} {path.stat().st_mode:o}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def _stage_charts(state: Path, directory: Path | None) -> bool:
    """Put the real charts where the control plane's repository takes them from (fetching them
    the first time when no chart directory is set); return whether that changed anything."""
    try:
        archives = charts.archives(state / "charts", HELM, directory)
    except charts.ChartsError as exc:
        raise LabError(str(exc)) from None
    served = _served_charts(hosts_dir(state))
    served.mkdir(exist_ok=True)
    wanted = {a.name: a.read_bytes() for a in archives}
    present = {p.name: p.read_bytes() for p in served.glob("*.tgz")}
    if present == wanted:
        return False
    for path in served.glob("*.tgz"):
        path.unlink()
    for name, data in wanted.items():
        (served / name).write_bytes(data)
    return True


def _owner() -> Path | None:
    """The state dir whose lab runs on this machine (None: no lab, or one from before owners)."""
    if not Path("/sys/class/net", BRIDGE).exists():
        return None
    try:
        return Path(OWNER.read_text().strip())
    except FileNotFoundError:
        return None


def _check_owner(state: Path) -> None:
    """Refuse to touch the lab of another state dir (another checkout or $BHOPS_LAB_DIR)."""
    owner, taken = _owner(), f"the lab on this machine (bridge {BRIDGE}, {SUBNET}.0/24)"
    if owner is None and Path("/sys/class/net", BRIDGE).exists() and not _names(state):
        raise LabError(f"{taken} was not made from {state}; only one lab runs per machine: take it "
                       "down from its own checkout (`invoke lab.down`) first")
    if owner is not None and owner != state:
        raise LabError(f"{taken} belongs to {owner}, not to {state}; only one lab runs per machine: "
                       f"take it down first (`BHOPS_LAB_DIR={owner} invoke lab.down`, as root)")


def _keygen(path: Path, comment: str) -> None:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _make_template(template: Path, state: Path) -> None:
    """Build the layer shared by all hosts above the machine's /etc, /var, /usr, /opt:
    lab/template, the machine's CA bundle plus the lab CA, a softened /etc/init.d/docker and an
    empty /usr/local."""
    new = template.with_name("template.new")
    shutil.rmtree(new, ignore_errors=True)
    shutil.copytree(LAB_FILES / "template", new)
    for d in OVERLAID:
        (new / d).mkdir(exist_ok=True)
    (new / "etc/sudoers.d/bhlab-deploy").chmod(0o440)
    # Trusted system-wide: Go (dockerd, containerd, the registry), curl and OpenSSL read this file.
    (new / "etc/ssl/certs").mkdir(parents=True)
    (new / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca.bundle(state))
    # Debian's /etc/init.d/docker raises ulimits under `set -e`; that fails without
    # CAP_SYS_RESOURCE, so the hosts get a copy where a failed `ulimit` is ignored.
    script = Path("/etc/init.d/docker").read_text()
    docker_init = new / "etc/init.d/docker"
    docker_init.parent.mkdir(exist_ok=True)
    docker_init.write_text(re.sub(r"^(\s*ulimit .*)$", r"\1 2>/dev/null || true", script,
                                  flags=re.M))
    docker_init.chmod(0o755)
    # An opaque (overlayfs) /usr/local hides the machine's; hosts write to their own.
    local = new / "usr/local"
    for sub in ("bin", "sbin", "lib", "share", "include", "etc", "src"):
        (local / sub).mkdir(parents=True)
    os.setxattr(local, "trusted.overlay.opaque", b"y")
    new.rename(template)


# Network.

def _ip_batch(commands: list[str], netns: str | None = None) -> None:
    if commands:
        _run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], "\n".join(commands))


def _plumb(names: list[str]) -> None:
    """Make the bridge and, for hosts lacking one, a netns with eth0 (a veth) on it."""
    batch = []
    if not Path("/sys/class/net", BRIDGE).exists():
        batch += [f"link add {BRIDGE} type bridge", f"addr add {SUBNET}.1/24 dev {BRIDGE}",
                  f"link set {BRIDGE} up"]
    new = [name for name in names if not Path(f"/sys/class/net/bhlab-{name}").exists()]
    for name in new:
        if not Path(f"/run/netns/bhlab-{name}").exists():
            batch.append(f"netns add bhlab-{name}")
        # A fixed MAC per address: a host made anew is not hidden by others' stale ARP entries.
        mac = "02:77:00:00:00:%02x" % int(_address(name).rsplit(".", 1)[1])
        batch += [f"link add bhlab-{name} type veth peer name eth0 address {mac} netns bhlab-{name}",
                  f"link set bhlab-{name} master {BRIDGE} up"]
    _ip_batch(batch)
    for name in new:
        _ip_batch(["link set eth0 up", "link set lo up"], netns=f"bhlab-{name}")


# Starting, finding and killing hosts.

def _start(state: Path, name: str) -> int:
    """Start a host (making its files the first time); return and record its PID 1."""
    host = _host_dir(state, name)
    _make_host_dir(state, name)
    # Only its own address: not those MetalLB's speaker added while it last ran.
    _ip_batch(["addr flush dev eth0", f"addr add {_address(name)}/24 dev eth0"], netns=f"bhlab-{name}")
    argv = ["nsenter", f"--net=/run/netns/bhlab-{name}", "--",
            "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
            "--propagation", "private",
            "tini", "-s", "--", "/bin/sh", str(LAB_FILES / "host-init.sh"),
            name, _init_role(name), node_runtime(name, lab_runtime(state)) or "-", str(host),
            str(hosts_dir(state) / "template"), str(hosts_dir(state) / "client.pub"),
            *(_cluster_args(state) if name == CONTROL_PLANE else _node_args(name))]
    with open(host / "init.log", "ab") as log:
        leader = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/",
            env=ENV, start_new_session=True)
    children = Path(f"/proc/{leader.pid}/task/{leader.pid}/children")
    while not (pids := children.read_text().split()):  # until unshare has forked PID 1
        if leader.poll() is not None:
            raise LabError(f"lab host {name} did not start: see {host / 'init.log'}")
        time.sleep(0.001)
    pid = int(pids[0])
    _LEADERS[pid] = leader
    (host / "pid").write_text(f"{pid}\n")
    return pid


def _cluster_args(state: Path) -> list[str]:
    """What the control plane's cluster is (fixed at its start), as host-init.sh takes it:
    KUBE_VERSION CHARTS_DIR NODE=IP..."""
    return [cluster_kube_version(state) or DEFAULT_KUBE_VERSION, str(_served_charts(hosts_dir(state))),
            *(f"lab-{n}={_address(n)}" for n in _names(state) if _is_node(n))]


def _init_args(pid: int) -> list[str]:
    """The arguments a running host's host-init.sh was started with: NAME ROLE RUNTIME ..."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    script = str(LAB_FILES / "host-init.sh")
    return argv[argv.index(script) + 1:] if script in argv else []


def _node_args(name: str) -> list[str]:
    """What host-init.sh takes after CLIENT_PUBKEY on a node but the control plane: the API's
    address, for its node agent; nothing on the proxy and the registry."""
    return [_address(CONTROL_PLANE)] if _is_node(name) else []


def _agentless(state: Path, name: str) -> bool:
    """Whether a running node (not the control plane) was started without its node agent's
    arguments (by a checkout from before the agent): restarted so that it runs one."""
    pid = _pid(state, name)
    return bool(pid) and name != CONTROL_PLANE and _started_with(pid) != _node_args(name)


def _started_with(pid: int) -> list[str]:
    """The arguments after CLIENT_PUBKEY a running host was started with (see _cluster_args, _node_args)."""
    return _init_args(pid)[6:]


def _running_runtime(pid: int) -> str | None:
    """What a running host was started to run its containers with (see node_runtime)."""
    args = _init_args(pid)
    return args[2] if len(args) > 2 and args[2] != "-" else None


def _runtime_changed(state: Path, name: str) -> bool:
    """Whether a running host was started with another runtime than the lab's now gives it."""
    pid = _pid(state, name)
    return bool(pid) and _running_runtime(pid) != node_runtime(name, lab_runtime(state))


def _make_host_dir(state: Path, name: str) -> None:
    """Make what a stopped host lacks of its directories, its own ssh host key (in its /etc/ssh) and,
    on the proxy and the registry, its TLS certificate and key from the lab CA."""
    host = _host_dir(state, name)
    for d in OVERLAID:
        (host / "upper" / d).mkdir(parents=True, exist_ok=True)
        (host / "work" / d).mkdir(parents=True, exist_ok=True)
    for d in ("docker", "containerd", "dind", "pink", "home"):
        (host / d).mkdir(exist_ok=True)
    (host / "root").mkdir(mode=0o700, exist_ok=True)
    (host / "upper/etc/ssh").mkdir(exist_ok=True)
    if not (host / "upper/etc/ssh/ssh_host_ed25519_key").exists():
        _keygen(host / "upper/etc/ssh/ssh_host_ed25519_key", f"root@{name}")
    if name in ("proxy", REGISTRY):
        _issue_tls(state, name)


def _issue_tls(state: Path, name: str) -> None:
    """Give the proxy (nginx: /etc/ssl/bhlab/proxy.crt and .key) or the registry (/etc/docker/registry/
    registry.crt and .key, which its user docker-registry reads) a certificate from the lab CA, unless it has
    one from this CA (its chain ends with it)."""
    path = _host_dir(state, name) / "upper" / ("etc/ssl/bhlab/proxy" if name == "proxy"
                                               else "etc/docker/registry/registry")
    if path.with_suffix(".crt").exists() and path.with_suffix(".crt").read_bytes().endswith(
            ca.cert_path(state).read_bytes()):
        return
    chain, key = ca.issue(state, f"lab-{name}", ips=(_address(name),), dns=(f"lab-{name}",))
    gid = grp.getgrnam("docker-registry").gr_gid if name == REGISTRY else 0
    ca.write_private(path.with_suffix(".key"), key, gid=gid, mode=0o640 if gid else 0o600)
    path.with_suffix(".crt").write_bytes(chain)


def _pid(state: Path, name: str) -> int | None:
    """The host's PID 1 if it is alive (checked to be in the host's netns), else None."""
    try:
        pid = int((_host_dir(state, name) / "pid").read_text())
        inside, netns = os.stat(f"/proc/{pid}/ns/net"), os.stat(f"/run/netns/bhlab-{name}")
    except (OSError, ValueError):
        return None
    return pid if (inside.st_dev, inside.st_ino) == (netns.st_dev, netns.st_ino) else None


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while it was read
        return False


def _kill(state: Path, names: list[str]) -> None:
    """Kill each host's PID 1 (the kernel then kills all its processes) and wait for it."""
    pids = [pid for name in names if (pid := _pid(state, name))]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    for pid in pids:
        while _alive(pid):  # PID 1 of a PID namespace exits after all its processes
            if time.monotonic() > deadline:
                raise LabError(f"lab host process {pid} did not exit after SIGKILL")
            time.sleep(0.01)
        if leader := _LEADERS.pop(pid, None):
            leader.wait()
    for name in names:
        (_host_dir(state, name) / "pid").unlink(missing_ok=True)


def _remove(state: Path, names: list[str]) -> None:
    """Kill hosts and delete their network and directories."""
    _kill(state, names)
    _ip_batch([f"link del bhlab-{n}" for n in names if Path(f"/sys/class/net/bhlab-{n}").exists()]
              + [f"netns del bhlab-{n}" for n in names if Path(f"/run/netns/bhlab-{n}").exists()])
    for name in names:
        shutil.rmtree(_host_dir(state, name))


def _unmount_under(state: Path) -> None:
    """Unmount whatever is still mounted under the state dir in this namespace."""
    prefix = f"{state.resolve()}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in reversed(mounts):
        if mount.startswith(prefix):
            _run(["umount", "-l", mount])


# Readiness and status probes.

def _wait(state: Path, pids: dict[str, int]) -> None:
    """Wait until each started host's sshd and service (its runtime, nginx or the registry) answer."""
    deadline = time.monotonic() + TIMEOUT
    pending = dict(pids)
    while pending:
        for name, pid in list(pending.items()):
            logs = f"see {_host_dir(state, name)}/init.log and sshd.log"
            if not _alive(pid):
                raise LabError(f"lab host {name} exited while starting: {logs}")
            if not _tcp_ok(_address(name), 22):
                waiting = "sshd"
            elif not _service_ok(state, name, pid):
                waiting = _service_name(name, pid)
            else:
                del pending[name]
                continue
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab host {name}: {waiting} not answering after {TIMEOUT:.0f} s; {logs}")
        if pending:
            time.sleep(0.05)


def _tcp_ok(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return False
    return True


def _docker_ok(pid: int) -> bool:
    """Whether the host's dockerd answers `docker info`'s API call on its socket."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(f"/proc/{pid}/root/run/docker.sock")
            sock.sendall(b"GET /info HTTP/1.0\r\n\r\n")
            return sock.recv(16).split()[1:2] == [b"200"]
    except OSError:
        return False


def _containerd_ok(pid: int) -> bool:
    """Whether the host's containerd accepts connections on its socket (gRPC: no cheap request)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(f"/proc/{pid}/root/run/containerd/containerd.sock")
            return True
    except OSError:
        return False


def _https_ok(state: Path, address: str, port: int) -> bool:
    """Whether a TLS server there, with a certificate the lab CA signed for `address`, answers `GET /v2/` with 200."""
    context = ssl.create_default_context(cafile=str(ca.cert_path(state)))
    try:
        with socket.create_connection((address, port), timeout=1) as raw, \
                context.wrap_socket(raw, server_hostname=address) as sock:
            sock.sendall(f"GET /v2/ HTTP/1.0\r\nHost: {address}:{port}\r\n\r\n".encode())
            return sock.recv(16).split()[1:2] == [b"200"]
    except OSError:
        return False


def _service_ok(state: Path, name: str, pid: int) -> bool:
    """Whether the host's services answer: nginx on :80 (proxy), the registry over https on :5000,
    dockerd or containerd (nodes, by the runtime they were started with), and on the control plane
    the API emulator (:6443) and the chart repository (:8879)."""
    if name == "proxy":
        return _tcp_ok(_address(name), 80)
    if name == REGISTRY:
        return _https_ok(state, _address(name), REGISTRY_PORT)
    cluster = name != CONTROL_PLANE or (_tcp_ok(_address(name), 6443) and _tcp_ok(_address(name), 8879))
    runtime_ok = _containerd_ok(pid) if _running_runtime(pid) == "containerd" else _docker_ok(pid)
    return runtime_ok and cluster


def _service_name(name: str, pid: int) -> str:
    """What _service_ok waits for on the host, with where its logs are."""
    if name in ("proxy", REGISTRY):
        return {"proxy": "nginx", REGISTRY: "the registry (log: upper/var/log/docker-registry.log)"}[name]
    runtime = ("containerd (log: upper/var/log/containerd.log)" if _running_runtime(pid) == "containerd"
               else "dockerd (log: upper/var/log/docker.log)")
    return f"{runtime} or the cluster (log: upper/var/log/labcluster.log)" if name == CONTROL_PLANE else runtime


def _info(state: Path, name: str) -> HostInfo:
    pid, address = _pid(state, name), _address(name)
    return HostInfo(name, address, _roles(name), running=bool(pid),
                    ssh_ok=bool(pid) and _tcp_ok(address, 22),
                    service_ok=bool(pid) and _service_ok(state, name, pid),
                    runtime=_running_runtime(pid) if pid else None)


# Client side files.

def _write_client_files(state: Path, names: list[str]) -> None:
    """Write ssh_config, known_hosts and hosts.yaml: the committed inventory's `lab`
    environment with exactly these hosts but the registry (not a host the runbook manages), so the
    lab's settings live in one place; its files beside the committed inventory
    (`metallb_manifest`) and the lab CA (`tls_ca_bundle`) where they are."""
    config, known, hosts = [], [], {}
    for name in names:
        alias, address = f"lab-{name}", _address(name)
        config.append(
            f"Host {alias}\n    HostName {address}\n    User deploy\n"
            f"    IdentityFile {state}/id_ed25519\n    UserKnownHostsFile {state}/known_hosts\n"
            "    StrictHostKeyChecking yes\n    IdentitiesOnly yes\n")
        key = (_host_dir(state, name) / "upper/etc/ssh/ssh_host_ed25519_key.pub").read_text()
        known.append(f"{alias},{address} {' '.join(key.split()[:2])}\n")
        if name != REGISTRY:
            hosts[alias] = {"roles": list(_roles(name))}
    (state / "ssh_config").write_text("\n".join(config))
    (state / "known_hosts").write_text("".join(known))
    committed = yaml.safe_load((REPO / "hosts.yaml").read_text())
    lab = {**committed["environments"]["lab"], "ssh_config": "ssh_config", "hosts": hosts}
    manifest = lab.get("vars", {}).get("metallb_manifest")
    if manifest and "://" not in manifest:  # a file beside the committed inventory
        lab["vars"] = {**lab["vars"], "metallb_manifest": str(REPO / manifest)}
    if lab.get("vars", {}).get("tls_ca_bundle"):  # the committed one names .lab/ca.crt: this lab's CA
        lab["vars"] = {**lab["vars"], "tls_ca_bundle": str(ca.cert_path(state))}
    (state / "hosts.yaml").write_text("# generated by `invoke lab.up` from hosts.yaml; do not edit\n" + yaml.safe_dump(
        {"defaults": committed.get("defaults", {}), "environments": {"lab": lab}}, sort_keys=False))


def _run(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV)
    if result.returncode:
        raise LabError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
