"""containerd on a node: the Docker Hub mirror in docker.io's hosts.toml (read at each pull), and
config.toml's CRI registry section pointing at the hosts directory (applied by a restart)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from fabric import Connection

from . import containerd_config, remote
from .containerd_config import TomlError
from .inventory import Host
from .probes import NodeState
from .remote import RemoteError
from .results import Result

CONTAINERD_WAIT = 60  # seconds containerd may take to answer after a restart


@dataclass(frozen=True)
class Plan:
    """What converging a containerd node takes: hosts.toml and/or config.toml written (None:
    left as is), then a restart when config.toml changed or containerd is down."""

    manager: str
    hosts_path: str
    config_path: str
    hosts_old: str | None
    hosts_new: str | None
    config_old: str | None
    config_new: str | None
    action: str | None  # restart, start, or None (hosts.toml is read at each pull)

    untouched = "config.toml and hosts.toml untouched, containerd not restarted"

    @property
    def restarts(self) -> bool:
        """Whether the plan stops containerd: such plans roll out in batches."""
        return self.action is not None

    @property
    def diff(self) -> str:
        return "".join(containerd_config.diff(old, new, path) for path, old, new in self._files())

    def _files(self) -> list[tuple[str, str | None, str]]:
        return [(p, old, new) for p, old, new in ((self.hosts_path, self.hosts_old, self.hosts_new),
                                                  (self.config_path, self.config_old, self.config_new))
                if new is not None]

    def _names(self) -> str:
        return " and ".join(p.rsplit("/", 1)[-1] for p, _, _ in self._files())

    def describe(self) -> str:
        what = [f"write {self._names()}"] if self._files() else []
        return ", then ".join(what + ([f"{self.action} containerd"] if self.action else []))

    def drift(self, state: NodeState) -> str:
        """What differs, for a status report."""
        up = "containerd answers" if state.containerd_up else "containerd is not answering"
        files = [f"{p} differs from the inventory" for p, _, _ in self._files()]
        return "; ".join([up, *files])

    def apply(self, conn: Connection, host: Host) -> Result:
        """Write the files that differ (config.toml validated by containerd first), restart
        containerd when config.toml changed and check that it answers; when it does not, put
        the old files back and restart it on them."""
        backups: dict[str, str | None] = {}
        acted = False
        try:
            for path, _, new in self._files():
                validate = (lambda tmp: ["containerd", "--config", tmp, "config", "dump"]) \
                    if path == self.config_path else None
                backups[path] = remote.write(conn, host, path, new, "0644", validate=validate)
            if self.action:
                acted = True
                remote.service(conn, host, self.manager, "containerd", self.action)
                _wait(conn, host)
        except RemoteError as exc:
            return Result.failed(f"{exc}; {self._roll_back(conn, host, backups, acted)}" if backups else str(exc))
        wrote = f"wrote {self._names()}, " if self._files() else ""
        done = f"containerd {self.action}ed and answers" if self.action else \
            "no restart needed (hosts.toml is read at each pull)"
        return Result.changed(f"{wrote}{done}; mirrors {', '.join(host.vars['docker_mirrors'])}")

    def _roll_back(self, conn: Connection, host: Host, backups: dict[str, str | None], acted: bool) -> str:
        """Restore the files written and, when containerd was restarted on them, restart it on the
        old ones; say how that went."""
        restored = "restored " + ", ".join(f"{p} from {b}" if b else f"{p} (removed the new one)"
                                           for p, b in backups.items())
        try:
            for path, backup in backups.items():
                remote.restore(conn, host, path, backup)
            if not acted:
                return f"{restored}; containerd not restarted"
            remote.service(conn, host, self.manager, "containerd", "restart")
            _wait(conn, host)
        except RemoteError as exc:
            return f"{restored}, but containerd is still down: {exc}"
        return f"{restored}; containerd runs again on them"


def _wait(conn: Connection, host: Host) -> None:
    """Return once containerd answers `ctr version`; raise RemoteError with why it does not."""
    remote.await_daemon(conn, host, "containerd", "/var/log/containerd.log",
                        ["ctr", "--connect-timeout", "1s", "version"], CONTAINERD_WAIT)


def paths(host: Host) -> tuple[str, str]:
    """The node's docker.io hosts.toml and config.toml."""
    return containerd_config.hosts_path(host.vars["containerd_hosts_dir"]), host.vars["containerd_config"]


def decide(host: Host, state: NodeState) -> Plan | Result:
    """A Plan when the node's containerd needs a change, else the Result that says why not."""
    wanted, hosts_dir = host.vars["docker_mirrors"], host.vars["containerd_hosts_dir"]
    hosts_path, config_path = paths(host)
    if state.containerd is None:
        return Result.failed("the kubelet uses containerd, but containerd is not installed on this node")
    try:
        hosts_new = containerd_config.hosts_toml(state.hosts_toml, wanted, hosts_path)
        config_new = containerd_config.config_toml(state.config_toml, hosts_dir,
                                                   containerd_config.major_version(state.containerd), config_path)
    except TomlError as exc:
        return Result.failed(str(exc))
    if containerd_config.hosts_match(state.hosts_toml, wanted):
        hosts_new = None
    if state.config_toml is not None and config_new == state.config_toml:
        config_new = None
    action = "restart" if config_new is not None else None if state.containerd_up else "start"
    if hosts_new is None and config_new is None and action is None:
        return Result.ok(f"containerd uses {', '.join(wanted)} ({hosts_path})")
    return Plan(state.manager, hosts_path, config_path, state.hosts_toml, hosts_new, state.config_toml,
                config_new, action)


def reference(image: str) -> str:
    """`image` as Docker would read it, in full: hello-world -> docker.io/library/hello-world:latest."""
    name, at, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if not slash or not (re.search(r"[.:]", first) or first == "localhost"):
        first, rest = "docker.io", name
    if first in ("docker.io", "index.docker.io"):
        first, rest = "docker.io", rest if "/" in rest else f"library/{rest}"
    if not at and ":" not in rest.rsplit("/", 1)[-1]:
        rest += ":latest"
    return f"{first}/{rest}{at}{digest}"


def pull_argv(image: str, hosts_dir: str) -> list[str]:
    """ctr's pull of `image` into the kubelet's namespace, through the hosts directory's mirrors."""
    return ["ctr", "-n", "k8s.io", "images", "pull", "--hosts-dir", hosts_dir, reference(image)]
