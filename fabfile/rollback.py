"""Undo the last deploy: the release back one revision, then the newest backups of the nginx
site and daemon.json put back."""
from __future__ import annotations

from fabric import Connection

from . import daemon_config, docker, helm, lock, nginx, remote
from .inventory import Host
from .results import Result, Status, succeeded
from .session import Run, host_task

_NEWEST_BACKUP = 'ls -1t -- "$1".bhops-*.bak 2>/dev/null | head -n 1'


def newest_backup(conn: Connection, host: Host, path: str) -> tuple[str, str] | None:
    """The newest backup binderhub-ops made of `path` on the host: (its path, its text)."""
    found = remote.run(conn, host, remote.script(_NEWEST_BACKUP, path)).stdout.strip()
    return (found, remote.read(conn, host, found) or "") if found else None


def restore_site(conn: Connection, host: Host, contexts: dict[str, dict], dry_run: bool) -> Result:
    found = newest_backup(conn, host, nginx.site_paths(host).available)
    if not found:
        return Result(host.name, "rollback.site", Status.SKIPPED, "no backup of the site to restore")
    return nginx.install_site(conn, host, found[1], contexts[host.name], dry_run, "rollback.site")


def plan_daemon_json(conn: Connection, host: Host) -> docker.Plan | Result:
    state = docker.observe(conn, host)
    found = newest_backup(conn, host, daemon_config.PATH)
    if not found:
        return Result(host.name, "rollback.docker", Status.SKIPPED, "no backup of daemon.json to restore")
    daemon_config.parse(found[1])  # refuse to put back a file that is not JSON
    if found[1] == state.text:
        return Result(host.name, "rollback.docker", Status.OK, f"daemon.json already equals {found[0]}")
    return docker.Plan(state.text, found[1], True, state.manager, "restart")


def roll_back(run: Run) -> None:
    """The release back one revision, then the newest backups of the nginx site and daemon.json."""
    if not succeeded(run.each(run.control_plane(), "helm.rollback", helm.rollback, None, run.dry_run)):
        return
    facts = nginx.cluster_facts_of(run)
    contexts = {h.name: nginx.site_context(run, h, facts) for h in run.hosts("proxy")}
    if not succeeded(run.each(run.hosts("proxy"), "rollback.site", restore_site, contexts, run.dry_run)):
        return
    plans = run.gather(run.hosts("node"), "rollback.docker", plan_daemon_json)
    todo = {name: p for name, p in plans.items() if isinstance(p, docker.Plan)}
    for name, outcome in plans.items():
        if isinstance(outcome, Result):
            run.reporter.emit(outcome)
        elif run.dry_run:
            run.reporter.emit(Result(name, "rollback.docker", Status.CHANGED, "restore daemon.json, restart docker",
                                     outcome.diff))
    if not run.dry_run:
        run.serially([h for h in run.hosts("node") if h.name in todo], "rollback.docker", docker.apply, todo)


@host_task("rollback", name="rollback",
           help={"break_lock": "take over the deploy lock even though someone holds it"})
def rollback(run: Run, break_lock=False):
    """Roll back the release, the nginx site and daemon.json to before the last deploy."""
    with lock.held(run, break_lock) as holding:
        if holding:
            roll_back(run)
