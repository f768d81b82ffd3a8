"""Undo the last deploy: the release back one revision, then the newest backups of the nginx
site and daemon.json put back."""
from __future__ import annotations

from fabric import Connection

from . import daemon_config, docker, helm, lock, nginx, nodes, remote
from .inventory import Host
from .results import Change, Result, succeeded
from .session import Run, host_task, step

_NEWEST_BACKUP = 'ls -1t -- "$1".bhops-*.bak 2>/dev/null | head -n 1'


def newest_backup(conn: Connection, host: Host, path: str) -> tuple[str, str] | None:
    """The newest backup binderhub-ops made of `path` on the host: (its path, its text)."""
    found = remote.run(conn, host, remote.script(_NEWEST_BACKUP, path)).stdout.strip()
    return (found, remote.read(conn, host, found) or "") if found else None


@step("rollback.site")
def restore_site(conn: Connection, host: Host, contexts: dict[str, dict]) -> Result | Change:
    """Put the newest backup of the nginx site back (see nginx.install_site)."""
    found = newest_backup(conn, host, nginx.site_paths(host).available)
    if not found:
        return Result.skipped("no backup of the site to restore")
    return nginx.install_site(conn, host, found[1], contexts[host.name])


@step("rollback.docker")
def restore_daemon_json(conn: Connection, host: Host) -> Result | Change:
    """Put the newest backup of daemon.json back and restart docker on it."""
    state = nodes.observe(conn, host)
    found = newest_backup(conn, host, daemon_config.PATH)
    if not found:
        return Result.skipped("no backup of daemon.json to restore")
    daemon_config.parse(found[1])  # refuse to put back a file that is not JSON
    if found[1] == state.text:
        return Result.ok(f"daemon.json already equals {found[0]}")
    plan = docker.Plan(state.text, found[1], True, state.manager, "restart")
    return nodes.converge(conn, host, {host.name: plan})


def roll_back(run: Run) -> None:
    """The release back one revision, then the newest backups of the nginx site and daemon.json."""
    if not succeeded(run.each(run.control_plane(), helm.rollback)):
        return
    facts = nginx.cluster_facts_of(run, restore_site).get(run.control_plane()[0].name)
    contexts = {h.name: nginx.site_context(run, h, facts) for h in run.hosts("proxy")}
    if succeeded(run.each(run.hosts("proxy"), restore_site, contexts=contexts)):
        run.in_batches(run.hosts("node"), 1, restore_daemon_json)


@host_task("rollback", name="rollback", needs=("public_url", "proxy_url"),
           help={"break_lock": "take over the deploy lock even though someone holds it"})
def rollback(run: Run, break_lock=False):
    """Roll back the release, the nginx site and daemon.json to before the last deploy."""
    with lock.held(run, break_lock) as holding:
        if holding.held:
            roll_back(run)
