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


def _list_release(host: Host) -> list[str]:
    """argv for `helm list` narrowed to the release (pending ones included)."""
    return helm(host, "list", "--namespace", host.vars["namespace"], "--all", "--filter",
                f"^{host.vars['release']}$", "--output", "json")


def _named(host: Host, rows: list[dict] | None) -> dict | None:
    return next((r for r in rows or [] if r["name"] == host.vars["release"]), None)


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


def probe(conn: Connection, host: Host, probes: dict[str, list[str]]) -> dict[str, Output]:
    """Run kubectl/helm reads at once in one round trip; a missing tool is an error with its fix."""
    out = remote.run_many(conn, host, probes)
    for key, argv in probes.items():
        if out[key].exited == 127:
            raise _missing_tool(host, argv)
    return out


def _read(conn: Connection, host: Host, argv: list[str]) -> Output:
    """One kubectl/helm read, its output streamed straight back (nothing kept on the host);
    a missing tool is an error with its fix."""
    got = run(conn, host, argv, check=False)
    if got.exited == 127:
        raise _missing_tool(host, argv)
    return Output(got.exited, got.stdout, got.stderr)


def observe_release(conn: Connection, host: Host) -> ReleaseState:
    """`helm list` of the release, then its deployed values read off `helm get values`'s
    stdout: they hold the secrets, so never through run_many's files on the host."""
    listed = _read(conn, host, _list_release(host))
    if not listed.ok:
        raise _unreachable(host, listed)
    release = _named(host, json.loads(listed.stdout or "[]"))
    if not release:
        return ReleaseState(None, {})
    got = _read(conn, host, helm(host, "get", "values", host.vars["release"], "--namespace",
                                 host.vars["namespace"], "--output", "json"))
    if not got.ok:
        raise RemoteError(f"helm get values failed on {host.name}: {remote.tail(got.stderr)}")
    return ReleaseState(release, json.loads(got.stdout or "{}") or {})


def observe_repo(conn: Connection, host: Host) -> RepoState:
    """The chart repositories, the pinned chart's presence and the namespace, in one round trip."""
    out = probe(conn, host, {
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
    """Fail with the fix when helm or kubectl is missing or the cluster cannot be reached."""
    _read(conn, host, helm(host, "version", "--short"))
    namespace_exists(conn, host)


def history(conn: Connection, host: Host) -> list[dict]:
    """The release's revisions, oldest first."""
    return read_json(conn, host, helm(host, "history", host.vars["release"], "--namespace",
                                      host.vars["namespace"], "--output", "json")) or []


def release(conn: Connection, host: Host) -> dict | None:
    """The release as `helm list` shows it (name, revision, status, chart), or None."""
    return _named(host, read_json(conn, host, _list_release(host)))


def namespace_exists(conn: Connection, host: Host) -> bool:
    """Whether the release's namespace exists; a missing kubectl or an unreachable cluster
    raises with its fix."""
    got = _read(conn, host, kubectl(host, "get", "namespace", host.vars["namespace"], "-o", "name",
                                    "--request-timeout", "10s"))
    if not got.ok and "NotFound" not in got.stderr:
        raise _unreachable(host, got)
    return got.ok


def apply(conn: Connection, host: Host, objects: list[dict]) -> str:
    """`kubectl apply` these objects, uploaded as a private file; kubectl's report."""
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    with remote.private_files(conn, host, {"objects.json": document}) as directory:
        return run(conn, host, kubectl(host, "apply", "-f", f"{directory}/objects.json")).stdout.strip()
