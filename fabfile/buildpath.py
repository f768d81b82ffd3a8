"""Which image builder BinderHub's builds use: the node's docker, docker-in-docker or podman.

Both charts build through the node's docker socket by default (pinned `dind.enabled: false`, current
`imageBuilderType: host`), and their image cleaner mounts it too. A containerd node has no docker
socket: build pods and the cleaner stay in ContainerCreating ("hostPath type check failed:
/var/run/docker.sock is not a socket file", jupyterhub/binderhub#1343). So the builder follows the
nodes' runtimes (`nodes.runtime`): host docker where every node runs dockerd, else dind, which runs its
own dockerd in a privileged pod on any runtime; pink (podman) only when asked, and only the current
chart has it. `vars.image_builder` overrides the choice; one that cannot work on the nodes is refused,
naming them, before the release is touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .inventory import InventoryError
from .results import Result, Status

HOST, DIND, PINK = "host", "dind", "pink"
#: The socket each builder's build pods mount on every node (the charts' defaults: dind.hostSocketDir,
#: pink.hostSocketDir; BinderHub's build_docker_host).
SOCKETS = {HOST: "/var/run/docker.sock", DIND: "/var/run/dind/docker.sock", PINK: "/var/run/pink/podman.sock"}
PINNED_ERA = "z2jh-0.11"


@dataclass(frozen=True)
class Builder:
    """The chosen builder and, in one line, why."""

    name: str
    why: str

    @property
    def socket(self) -> str:
        """The socket path the build pods mount on each node."""
        return SOCKETS[self.name]

    def daemonsets(self, release: str) -> tuple[str, ...]:
        """The DaemonSets that must be ready on every node: the builder's own (none for host), then
        the image cleaner."""
        return ((f"{release}-{self.name}",) if self.name != HOST else ()) + (f"{release}-image-cleaner",)


def _names(nodes: list[str], verb: str = "", plural: str = "") -> str:
    """The nodes, sorted, then `verb` agreeing with how many they are (`plural` for more than one)."""
    return ", ".join(sorted(nodes)) + (f" {verb if len(nodes) == 1 else plural}" if verb else "")


def choose(era: str, runtimes: Mapping[str, str | None], setting: str = "auto", use_registry: bool = True) -> Builder:
    """The builder for chart era `era` on nodes running `runtimes` (node: docker, containerd or None),
    as `setting` (vars.image_builder) asks; InventoryError when it cannot work there. dind and pink keep
    what they build in their own engine, which the kubelet does not run images from: they need
    `use_registry` (builds pushed, then pulled by the node's runtime)."""
    builder = _choose(era, runtimes, setting)
    if builder.name != HOST and not use_registry:
        raise InventoryError(f"vars.use_registry: false works with the host builder only (image builder "
                             f"{builder.name}: {builder.why}): what {builder.name} builds stays in its own engine, "
                             "which the kubelet does not run images from; set use_registry: true with "
                             "registry_url (builds are pushed there and pulled by the nodes)")
    return builder


def _choose(era: str, runtimes: Mapping[str, str | None], setting: str) -> Builder:
    without_docker = [n for n, r in runtimes.items() if r != "docker"]
    if setting == PINK and era == PINNED_ERA:
        raise InventoryError("vars.image_builder: pink needs the current chart (imageBuilderType); the pinned "
                             "chart builds with host docker or dind only: set image_builder: dind")
    if setting == HOST and without_docker:
        raise InventoryError(f"vars.image_builder: host builds through each node's /var/run/docker.sock, which "
                             f"{_names(without_docker, 'lacks', 'lack')} (no dockerd for the kubelet): build pods "
                             "and the image cleaner would stay in ContainerCreating there; set image_builder: dind "
                             "(or auto)")
    if setting != "auto":
        return Builder(setting, "vars.image_builder")
    if without_docker:
        kinds = sorted({r or "another runtime" for n, r in runtimes.items() if n in without_docker})
        return Builder(DIND, f"{_names(without_docker, 'runs', 'run')} {' and '.join(kinds)}, without a docker socket")
    return Builder(HOST, "every node runs dockerd")


def for_run(run) -> Builder:
    """The builder for the run's environment: the control plane's `image_builder` and chart era, and
    (for auto and host) the runtimes of the nodes, probed in parallel; InventoryError naming the nodes
    that did not answer."""
    from . import eras, nodes

    host = run.control_plane()[0]
    era = eras.era_of(host.vars["chart_version"], f"host {host.name}: vars.chart_version").name
    setting = host.vars["image_builder"]
    if setting in ("auto", HOST):
        states = run.gather(run.hosts("node"), nodes.observe, of=LABEL)
        if states.failures:
            raise InventoryError(f"cannot choose the image builder without every node's runtime "
                                 f"({_names([r.host for r in states.failures])} did not answer); bring them back, "
                                 "or set vars.image_builder (dind works on any runtime)")
        runtimes = {name: nodes.runtime(state) for name, state in states.items()}
    else:
        runtimes = {}
    builder = choose(era, runtimes, setting, host.vars["use_registry"])
    run.report(Result("local", LABEL, Status.OK, f"image builder {builder.name}: {builder.why}"))
    return builder


LABEL = "values.builder"
