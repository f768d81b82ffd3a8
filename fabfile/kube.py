"""kubectl and helm on the control-plane host: argv builders, JSON reads, clear errors."""
from __future__ import annotations

import json
from typing import Any

from fabric import Connection

from . import remote
from .inventory import Host
from .remote import RemoteError

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")

_PREFLIGHT = r'''for tool in kubectl helm; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing=$tool"; exit 0; }
done
echo ok'''


def kubectl(host: Host, *args: str) -> list[str]:
    """argv for kubectl with the inventory's kubeconfig, if any."""
    config = host.vars["kubeconfig"]
    return ["kubectl", *(["--kubeconfig", config] if config else []), *args]


def helm(host: Host, *args: str) -> list[str]:
    """argv for helm with the inventory's kubeconfig, if any."""
    config = host.vars["kubeconfig"]
    return ["helm", *(["--kubeconfig", config] if config else []), *args]


def run(conn: Connection, host: Host, argv: list[str], **kw: Any):
    """Run a kubectl or helm argv as the login user (whose kubeconfig it uses)."""
    return remote.run(conn, host, argv, sudo=False, **kw)


def read_json(conn: Connection, host: Host, argv: list[str]) -> Any:
    """The parsed JSON a kubectl or helm command prints."""
    return json.loads(run(conn, host, argv).stdout or "null")


def require_tools(conn: Connection, host: Host) -> None:
    """Fail with the fix when kubectl or helm is missing on the host."""
    out = run(conn, host, remote.script(_PREFLIGHT)).stdout.strip()
    if out.startswith("missing="):
        tool = out.split("=", 1)[1]
        raise RemoteError(f"{tool} is not installed on {host.name} (or not on the login user's PATH); "
                          f"install it there, or give the control-plane role to a host that has it")


def preflight(conn: Connection, host: Host) -> None:
    """Fail with the fix when kubectl or helm is missing or the cluster cannot be reached."""
    require_tools(conn, host)
    probe = run(conn, host, kubectl(host, "get", "namespaces", "-o", "name", "--request-timeout", "10s"),
                check=False)
    if probe.failed:
        raise RemoteError(f"kubectl on {host.name} cannot reach the cluster: {remote.tail(probe.stderr)}; "
                          "check the kubeconfig (vars.kubeconfig, or ~/.kube/config of the login user)")


def release(conn: Connection, host: Host) -> dict | None:
    """The release as `helm list` shows it (name, revision, status, chart), or None."""
    name, namespace = host.vars["release"], host.vars["namespace"]
    rows = read_json(conn, host, helm(host, "list", "--namespace", namespace, "--all",
                                      "--filter", f"^{name}$", "--output", "json"))
    return next((r for r in rows or [] if r["name"] == name), None)


def history(conn: Connection, host: Host) -> list[dict]:
    """The release's revisions, oldest first."""
    return read_json(conn, host, helm(host, "history", host.vars["release"], "--namespace",
                                      host.vars["namespace"], "--output", "json")) or []


def deployed_values(conn: Connection, host: Host) -> dict:
    """The user-supplied values of the deployed revision (they hold secrets: never print)."""
    return read_json(conn, host, helm(host, "get", "values", host.vars["release"], "--namespace",
                                      host.vars["namespace"], "--output", "json")) or {}


def namespace_exists(conn: Connection, host: Host) -> bool:
    """Whether the release's namespace exists; other kubectl errors raise."""
    probe = run(conn, host, kubectl(host, "get", "namespace", host.vars["namespace"], "-o", "name"), check=False)
    if probe.failed and "NotFound" not in probe.stderr:
        raise RemoteError(remote.tail(probe.stderr))
    return probe.ok
