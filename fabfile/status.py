"""Drift across every stage, read-only: daemon.json, the build path, the release, the nginx site, the last
smoke test."""
from __future__ import annotations

from fabric import Connection

from . import buildcheck, buildpath, helm, nginx, nodes, probes, remote, values
from .inventory import Host, InventoryError
from .results import Result, Status
from .session import Run, host_task, step
from .smoke import last_verdict


@step("status.release")
def release_drift(conn: Connection, host: Host, rendered: values.Values | None, why: str = "") -> Result:
    """The release runs the pinned chart with the rendered values, and proxy-public the IP (no
    values: failed, saying `why`)."""
    if rendered is None:
        return Result.failed(why)
    state = probes.release_state(conn, host)
    if not helm.current(host, state, rendered):
        same = "match" if state.values == rendered.merged() else "differ"
        what = f"{state.release['chart']} {state.release['status']}, values {same}" if state.release \
            else "not installed"
        return Result.failed(f"drift: release {what}; run helm.upgrade", values.diff(state.values, rendered.merged()))
    ip = host.vars["floating_ip"]
    holders = [probes.name_of(s) for s in probes.load_balancers(conn, host) if ip and probes.external_ip(s) == ip]
    public = f"{host.vars['namespace']}/proxy-public"
    if ip and holders != [public]:
        return Result.failed(f"drift: floating IP {ip} held by {', '.join(holders) or 'nobody'}; "
                             "run cluster.floating-ip")
    return Result.ok(f"revision {state.release['revision']} current"
                  + (f"; {public} holds {ip}" if ip else ""))


@step("status.site")
def site_drift(conn: Connection, host: Host, run: Run, facts: probes.ClusterFacts | None) -> Result:
    """The live nginx site is the one the inventory renders."""
    try:
        text = nginx.render_site(nginx.site_context(run, host, facts))
    except InventoryError as exc:
        return Result.failed(str(exc))
    site = nginx.site_paths(host)
    live = remote.read(conn, host, site.available)
    if live == text:
        return Result.ok(f"{site.available} current")
    return Result.failed(f"drift: {site.available} differs; run nginx.reload",
                         remote.file_diff(live, text, site.available))


def drift(run: Run) -> None:
    """Every stage's drift, read-only."""
    run.each(run.hosts("node"), nodes.status)
    control_plane = run.control_plane()
    try:
        builder = buildpath.for_run(run)
        buildcheck.check(run, builder)
    except InventoryError as exc:
        builder = None
        run.report(Result("local", buildcheck.STEP, Status.FAILED, str(exc)))
    if not run.secrets_path.exists():
        run.report(Result("local", release_drift.label, Status.FAILED,
                                 f"no secrets file for {run.env.name}, so no values to compare with the release: "
                                 "restore it, or run secrets.init (it recovers the secrets from the release)"))
    else:
        rendered = values.render(control_plane[0], run.env.name, run.secrets(), builder) if builder else None
        run.each(control_plane, release_drift, rendered=rendered,
                 why=f"no image builder (see {buildcheck.STEP}), so no values to compare with the release")
    facts = nginx.cluster_facts_of(run, site_drift).get(control_plane[0].name)
    run.each(run.hosts("proxy"), site_drift, run=run, facts=facts)
    verdict = last_verdict(run)
    run.report(Result("smoke", "status.smoke", Status.OK if verdict.startswith("passed") else Status.FAILED,
                             f"last smoke: {verdict}"))


@host_task("status", name="status", changes=False, needs=("public_url", "proxy_url"))
def status(run: Run):
    """Report drift across every stage (read-only); exit 1 when anything drifted."""
    drift(run)
