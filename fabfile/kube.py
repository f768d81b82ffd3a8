"""kubectl and helm on the control-plane host: argv builders and running them, with clear errors.
The reads built on these are in `probes`."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fabric import Connection

from . import remote
from .inventory import Host
from .remote import Output, RemoteError

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


def missing_tool(host: Host, argv: list[str]) -> RemoteError:
    """The error for a kubectl or helm that is not there, with its fix."""
    return RemoteError(f"{argv[0]} is not installed on {host.name} (or not on the login user's PATH); "
                       "install it there, or give the control-plane role to a host that has it")


def unreachable(host: Host, out: Output) -> RemoteError:
    """The error for a cluster kubectl or helm cannot reach, with its fix."""
    return RemoteError(f"{host.name} cannot reach the cluster: {remote.tail(out.stderr)}; "
                       "check the kubeconfig (vars.kubeconfig, or ~/.kube/config of the login user)")


def probe(conn: Connection, host: Host, probes: dict[str, list[str]]) -> dict[str, Output]:
    """Run kubectl/helm reads at once in one round trip; a missing tool is an error with its fix."""
    out = remote.run_many(conn, host, probes)
    for key, argv in probes.items():
        if out[key].exited == 127:
            raise missing_tool(host, argv)
    return out


def read(conn: Connection, host: Host, argv: list[str], **kw: Any) -> Output:
    """One kubectl/helm read, its output streamed straight back (nothing kept on the host);
    a missing tool is an error with its fix."""
    got = run(conn, host, argv, check=False, **kw)
    if got.exited == 127:
        raise missing_tool(host, argv)
    return Output(got.exited, got.stdout, got.stderr)


def read_at_once(conn: Connection, host: Host, argvs: list[list[str]]) -> list[Output]:
    """Several kubectl/helm reads run at the same time, each on its own channel of the one
    connection, their output streamed straight back (nothing kept on the host)."""
    with ThreadPoolExecutor(len(argvs)) as pool:
        return list(pool.map(lambda argv: read(conn, host, argv), argvs))


def apply(conn: Connection, host: Host, objects: list[dict]) -> str:
    """`kubectl apply` these objects, uploaded as a private file; kubectl's report."""
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    with remote.private_files(conn, host, {"objects.json": document}) as directory:
        return run(conn, host, kubectl(host, "apply", "-f", f"{directory}/objects.json")).stdout.strip()
