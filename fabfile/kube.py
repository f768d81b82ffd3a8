"""kubectl and helm on the control-plane host: argv builders, one-round-trip probes, clear errors."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fabric import Connection

from . import remote
from .inventory import Host
from .remote import Output, RemoteError

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
CHART = "binderhub"


def kubectl(host: Host, *args: str) -> list[str]:
    """argv for kubectl with the inventory's kubeconfig, if any."""
    config = host.vars["kubeconfig"]
    return ["kubectl", *(["--kubeconfig", config] if config else []), *args]


def helm(host: Host, *args: str) -> list[str]:
    """argv for helm with the inventory's kubeconfig, if any."""
    config = host.vars["kubeconfig"]
    return ["helm", *(["--kubeconfig", config] if config else []), *args]


def chart(host: Host) -> str:
    """The chart as helm names it in its repository: REPO/binderhub."""
    return f"{host.vars['chart_repo_name']}/{CHART}"


def run(conn: Connection, host: Host, argv: list[str], **kw: Any):
    """Run a kubectl or helm argv as the login user (whose kubeconfig it uses)."""
    return remote.run(conn, host, argv, sudo=False, **kw)


def read_json(conn: Connection, host: Host, argv: list[str]) -> Any:
    """The parsed JSON a kubectl or helm command prints."""
    return json.loads(run(conn, host, argv).stdout or "null")


def _missing_tool(host: Host, argv: list[str]) -> RemoteError:
    return RemoteError(f"{argv[0]} is not installed on {host.name} (or not on the login user's PATH); "
                       "install it there, or give the control-plane role to a host that has it")


def _unreachable(host: Host, out: Output) -> RemoteError:
    return RemoteError(f"{host.name} cannot reach the cluster: {remote.tail(out.stderr)}; "
                       "check the kubeconfig (vars.kubeconfig, or ~/.kube/config of the login user)")


@dataclass(frozen=True)
class ReleaseState:
    """The release as helm lists it (None: not installed) and its deployed values."""

    release: dict | None
    values: dict = field(repr=False)  # the deployed values hold secrets


@dataclass(frozen=True)
class RepoState:
    """The chart repositories helm knows, whether the pinned chart is there, and the namespace."""

    repos: dict[str, str]
    chart_found: bool
    namespace: bool


def _probe(conn: Connection, host: Host, probes: dict[str, list[str]]) -> dict[str, Output]:
    out = remote.run_many(conn, host, probes)
    for key, argv in probes.items():
        if out[key].exited == 127:
            raise _missing_tool(host, argv)
    return out


def observe_release(conn: Connection, host: Host) -> ReleaseState:
    """`helm list` and `helm get values` of the release, at once, in one round trip."""
    name, namespace = host.vars["release"], host.vars["namespace"]
    out = _probe(conn, host, {
        "release": helm(host, "list", "--namespace", namespace, "--all", "--filter", f"^{name}$",
                        "--output", "json"),
        "values": helm(host, "get", "values", name, "--namespace", namespace, "--output", "json"),
    })
    if not out["release"].ok:
        raise _unreachable(host, out["release"])
    release = next((r for r in json.loads(out["release"].stdout or "[]") or [] if r["name"] == name), None)
    if release and not out["values"].ok:
        raise RemoteError(f"helm get values failed on {host.name}: {remote.tail(out['values'].stderr)}")
    return ReleaseState(release, (json.loads(out["values"].stdout or "{}") or {}) if release else {})


def observe_repo(conn: Connection, host: Host) -> RepoState:
    """The chart repositories, the pinned chart's presence and the namespace, in one round trip."""
    out = _probe(conn, host, {
        "namespace": kubectl(host, "get", "namespace", host.vars["namespace"], "-o", "name",
                             "--request-timeout", "10s"),
        "repos": helm(host, "repo", "list", "--output", "json"),
        "chart": helm(host, "search", "repo", chart(host), "--version", host.vars["chart_version"],
                      "--devel", "--output", "json"),
    })
    if not out["namespace"].ok and "NotFound" not in out["namespace"].stderr:
        raise _unreachable(host, out["namespace"])
    found = json.loads(out["chart"].stdout or "[]") if out["chart"].ok else []
    return RepoState(
        repos={r["name"]: r["url"] for r in json.loads(out["repos"].stdout or "[]")} if out["repos"].ok else {},
        chart_found=any(r["version"] == host.vars["chart_version"] for r in found or []),
        namespace=out["namespace"].ok,
    )


def preflight(conn: Connection, host: Host) -> None:
    """Fail with the fix when kubectl is missing or the cluster cannot be reached."""
    argv = kubectl(host, "get", "namespaces", "-o", "name", "--request-timeout", "10s")
    probe = run(conn, host, argv, check=False)
    if probe.exited == 127:
        raise _missing_tool(host, argv)
    if probe.failed:
        raise _unreachable(host, Output(probe.exited, probe.stdout, probe.stderr))


def history(conn: Connection, host: Host) -> list[dict]:
    """The release's revisions, oldest first."""
    return read_json(conn, host, helm(host, "history", host.vars["release"], "--namespace",
                                      host.vars["namespace"], "--output", "json")) or []


def release(conn: Connection, host: Host) -> dict | None:
    """The release as `helm list` shows it (name, revision, status, chart), or None."""
    name = host.vars["release"]
    rows = read_json(conn, host, helm(host, "list", "--namespace", host.vars["namespace"], "--all",
                                      "--filter", f"^{name}$", "--output", "json"))
    return next((r for r in rows or [] if r["name"] == name), None)


def namespace_exists(conn: Connection, host: Host) -> bool:
    """Whether the release's namespace exists; other kubectl errors raise."""
    probe = run(conn, host, kubectl(host, "get", "namespace", host.vars["namespace"], "-o", "name"), check=False)
    if probe.failed and "NotFound" not in probe.stderr:
        raise RemoteError(remote.tail(probe.stderr))
    return probe.ok


def apply(conn: Connection, host: Host, objects: list[dict]) -> str:
    """`kubectl apply` these objects, uploaded as a private file; kubectl's report."""
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    with remote.private_files(conn, host, {"objects.json": document}) as directory:
        return run(conn, host, kubectl(host, "apply", "-f", f"{directory}/objects.json")).stdout.strip()
