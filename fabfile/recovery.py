"""After a deploy: drift (`status`), the diagnostics bundle (`diagnose`), and `rollback`."""
from __future__ import annotations

from fabric import Connection

from . import daemon_config as dj
from . import diagnostics, docker, helm, kube, lock, metallb, nginx, remote, secretfile, secrets, values
from .inventory import Host, InventoryError
from .localfiles import LocalFileError
from .results import Result, Status, succeeded
from .session import Run, host_task
from .smoke import last_verdict

_NEWEST_BACKUP = 'ls -1t -- "$1".bhops-*.bak 2>/dev/null | head -n 1'


def newest_backup(conn: Connection, host: Host, path: str) -> tuple[str, str] | None:
    """The newest backup binderhub-ops made of `path` on the host: (its path, its text)."""
    found = remote.run(conn, host, remote.script(_NEWEST_BACKUP, path)).stdout.strip()
    return (found, remote.read(conn, host, found) or "") if found else None


def release_drift(conn: Connection, host: Host, rendered: values.Values) -> Result:
    """The release runs the pinned chart with the rendered values, and proxy-public the IP."""
    state = kube.observe_release(conn, host)
    if not helm.current(host, state, rendered):
        what = "not installed" if not state.release else \
            f"{state.release['chart']} {state.release['status']}, values {'match' if state.values == rendered.merged() else 'differ'}"
        return Result(host.name, "status.release", Status.FAILED, f"drift: release {what}; run helm.upgrade",
                      values.diff(state.values, rendered.merged()))
    ip = host.vars["floating_ip"]
    holders = [metallb.name_of(s) for s in metallb.load_balancers(conn, host) if ip and metallb.external_ip(s) == ip]
    public = f"{host.vars['namespace']}/proxy-public"
    if ip and holders != [public]:
        return Result(host.name, "status.release", Status.FAILED,
                      f"drift: floating IP {ip} held by {', '.join(holders) or 'nobody'}; run cluster.floating-ip")
    return Result(host.name, "status.release", Status.OK, f"revision {state.release['revision']} current"
                  + (f"; {public} holds {ip}" if ip else ""))


def site_drift(conn: Connection, host: Host, run: Run, facts: nginx.ClusterFacts | None) -> Result:
    """The live nginx site is the one the inventory renders."""
    try:
        text = nginx.render("nginx-site.conf.j2", **nginx.site_context(run, host, facts))
    except InventoryError as exc:
        return Result(host.name, "status.site", Status.FAILED, str(exc))
    site = nginx.site_paths(host)
    live = remote.read(conn, host, site.available)
    if live == text:
        return Result(host.name, "status.site", Status.OK, f"{site.available} current")
    return Result(host.name, "status.site", Status.FAILED, f"drift: {site.available} differs; run nginx.reload",
                  remote.file_diff(live, text, site.available))


def status_run(run: Run) -> None:
    """Every stage's drift, read-only."""
    run.each(run.hosts("node"), docker.STATUS_STEP, docker.status)
    control_plane = run.control_plane()
    if secretfile.path_for(run.env.name).exists():
        rendered = values.render(control_plane[0], run.env.name, run.secrets())
        run.each(control_plane, "status.release", release_drift, rendered)
    else:
        run.reporter.emit(Result("local", "status.release", Status.FAILED,
                                 f"no secrets file for {run.env.name}, so no values to compare with the release: "
                                 "restore it, or run secrets.init (it recovers the secrets from the release)"))
    run.each(run.hosts("proxy"), "status.site", site_drift, run, nginx.cluster_facts_of(run))
    verdict = last_verdict(run.env.name)
    run.reporter.emit(Result("smoke", "status.smoke", Status.OK if verdict.startswith("passed") else Status.FAILED,
                             f"last smoke: {verdict}"))


def restore_site(conn: Connection, host: Host, contexts: dict[str, dict], dry_run: bool) -> Result:
    found = newest_backup(conn, host, nginx.site_paths(host).available)
    if not found:
        return Result(host.name, "rollback.site", Status.SKIPPED, "no backup of the site to restore")
    return nginx.install_site(conn, host, found[1], contexts[host.name], dry_run, "rollback.site")


def plan_daemon_json(conn: Connection, host: Host) -> docker.Plan | Result:
    state = docker.observe(conn, host)
    found = newest_backup(conn, host, dj.PATH)
    if not found:
        return Result(host.name, "rollback.docker", Status.SKIPPED, "no backup of daemon.json to restore")
    dj.parse(found[1])  # refuse to put back a file that is not JSON
    if found[1] == state.text:
        return Result(host.name, "rollback.docker", Status.OK, f"daemon.json already equals {found[0]}")
    return docker.Plan(state.text, found[1], True, state.manager, "restart")


def rollback_run(run: Run) -> None:
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


@host_task("status", name="status", changes=False)
def status_task(run: Run):
    """Report drift across every stage (read-only); exit 1 when anything drifted."""
    status_run(run)


def _hide_secrets(run: Run) -> None:
    """Mask the secrets of the file, if there is one (diagnose never asks for it to be made),
    and those the release was given."""
    if secretfile.path_for(run.env.name).exists():
        run.secrets()
    for deployed in run.gather(run.control_plane(), "diagnose", secrets.deployed_secrets).values():
        run.reporter.hide(deployed.values())


@host_task("diagnose", name="diagnose", changes=False)
def diagnose_task(run: Run):
    """Gather the diagnostics bundle (health, pods, events, logs, helm, nginx), secrets masked;
    exit 1 when a host could not be reached."""
    _hide_secrets(run)
    run.gather(run.hosts("proxy")[:1], "diagnose", lambda conn, host: None)  # reports it if unreachable
    try:
        path = diagnostics.collect(run, values.binder_url(run.control_plane()[0]))
    except LocalFileError as exc:
        run.reporter.emit(Result("local", "diagnose", Status.FAILED, str(exc)))
        return
    run.reporter.emit(Result("local", "diagnose", Status.OK, f"bundle written: {path}"))


@host_task("rollback", name="rollback",
           help={"break_lock": "take over the deploy lock even though someone holds it"})
def rollback_task(run: Run, break_lock=False):
    """Roll back the release, the nginx site and daemon.json to before the last deploy."""
    with lock.held(run, break_lock) as holding:
        if holding:
            rollback_run(run)
