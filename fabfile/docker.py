"""Docker on a node: the Docker Hub mirror in daemon.json (runbook steps 1-2), applied by a
reload or restart of docker and verified with `docker info`."""
from __future__ import annotations

import json
from dataclasses import dataclass

from fabric import Connection

from . import daemon_config, remote
from .inventory import Host
from .probes import NodeState
from .remote import RemoteError
from .results import Result

DOCKER_WAIT = 60  # seconds docker may take to answer after a start or restart

_VALIDATE = r'''if dockerd --help 2>&1 | grep -q -- --validate; then exec dockerd --validate --config-file "$1"; fi'''


@dataclass(frozen=True)
class Plan:
    """What converging a docker node takes: maybe a new daemon.json, then a service action."""

    old_text: str | None
    new_text: str
    write: bool
    manager: str
    action: str  # reload, restart or start

    untouched = "daemon.json untouched, docker not restarted"

    @property
    def restarts(self) -> bool:
        """Whether the plan stops docker (a reload does not): such plans roll out in batches."""
        return self.action != "reload"

    @property
    def diff(self) -> str:
        return daemon_config.diff(self.old_text, self.new_text) if self.write else ""

    def describe(self) -> str:
        return f"{'write daemon.json and ' if self.write else ''}{self.action} docker"

    def drift(self, state: NodeState) -> str:
        """What differs, for a status report."""
        reported = "docker is not answering" if state.mirrors is None else \
            f"docker reports {', '.join(state.mirrors) or 'no mirror'}"
        return f"{reported}; {'daemon.json differs from the inventory' if self.write else 'daemon.json matches'}"

    def apply(self, conn: Connection, host: Host) -> Result:
        """Write the file if needed, reload or restart docker, and verify with docker info; when
        docker does not come back, put the old file back and bring docker up again."""
        wanted = host.vars["docker_mirrors"]
        backup = None
        if self.write:
            backup = remote.write(conn, host, daemon_config.PATH, self.new_text, "0644",
                                  validate=lambda path: remote.script(_VALIDATE, path))
        try:
            remote.service(conn, host, self.manager, "docker", self.action)
            mirrors = _wait(conn, host)
            if not daemon_config.same_mirrors(mirrors, wanted):
                raise RemoteError(f"docker info reports mirrors {mirrors} after the {self.action}")
        except RemoteError as exc:
            return Result.failed(f"{exc}; {self._roll_back(conn, host, backup)}" if self.write else str(exc))
        return Result.changed(f"{'wrote daemon.json, ' if self.write else ''}docker {self.action}ed, "
                              f"docker info shows {', '.join(mirrors)}")

    def _roll_back(self, conn: Connection, host: Host, backup: str | None) -> str:
        """Restore the previous daemon.json and restart docker on it; say how that went."""
        restored = f"restored the previous daemon.json{f' from {backup}' if backup else ' (removed the new one)'}"
        try:
            remote.restore(conn, host, daemon_config.PATH, backup)
            up = remote.run(conn, host, ["docker", "info", "--format", "{{.ID}}"], check=False).ok
            remote.service(conn, host, self.manager, "docker", "restart" if up else "start")
            _wait(conn, host)
        except RemoteError as exc:
            return f"{restored}, but docker is still down: {exc}"
        return f"{restored}; docker runs again on it"


def _wait(conn: Connection, host: Host) -> list[str]:
    """docker's mirrors once it answers `docker info`."""
    out = remote.await_daemon(conn, host, "dockerd", "/var/log/docker.log",
                              ["docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}"], DOCKER_WAIT)
    return json.loads(out.strip().splitlines()[-1]) or []


def decide(host: Host, state: NodeState) -> Plan | Result:
    """A Plan when the node's docker needs a change, else the Result that says why not."""
    wanted = host.vars["docker_mirrors"]
    if not state.has_dockerd:
        return Result.failed("the kubelet uses docker, but docker is not installed on this node")
    try:
        current = daemon_config.parse(state.text)
    except daemon_config.DaemonJsonError as exc:
        return Result.failed(str(exc))
    merged = daemon_config.merge(current, wanted)
    write = merged != current
    if not write and daemon_config.same_mirrors(state.mirrors, wanted):
        return Result.ok(f"docker uses {', '.join(wanted)}")
    if state.mirrors is None:
        action = "start"
    elif state.manager == "systemd" and not daemon_config.needs_restart(current, merged):
        action = "reload"
    else:
        action = "restart"
    return Plan(state.text, daemon_config.render(merged), write, state.manager, action)


def pull_argv(image: str) -> list[str]:
    """The docker client's pull of `image` (docker applies its registry-mirrors to docker.io)."""
    return ["docker", "pull", image]

