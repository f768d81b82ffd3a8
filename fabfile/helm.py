"""The BinderHub helm release: chart repository, values, install/upgrade, rollback (steps 3-5, 11-12)."""
from __future__ import annotations

import dataclasses
import json
import re

import yaml
from fabric import Connection
from invoke import Exit

from . import buildpath, immutable, kube, lock, manifests, openapi, probes, remote, settings, values
from .inventory import Host
from .results import Change, Result, Status, succeeded
from .session import Run, host_task, step

DELETE_TIMEOUT = 120  # seconds `--recreate` waits for an object it deletes to be gone


@step("helm.repo")
def repo(conn: Connection, host: Host, states: dict[str, probes.RepoState]) -> Result | Change:
    """Add the chart repository (or re-point it), and update it only if the pinned chart is missing."""
    name, url = host.vars["chart_repo_name"], host.vars["chart_repo_url"]
    state = states[host.name]
    add = state.repos.get(name, "").rstrip("/") != url.rstrip("/")
    if not add and state.chart_found:
        return Result.ok(f"{kube.chart(host)} {host.vars['chart_version']} available")

    def add_and_update() -> Result:
        done = []
        if add:
            kube.run(conn, host, kube.helm(host, "repo", "add", "--force-update", name, url))
            done.append(f"added {name} at {url}")
        kube.run(conn, host, kube.helm(host, "repo", "update", name))
        done.append(f"updated {name}")
        if not probes.chart_found(conn, host):
            latest = ", ".join(probes.chart_versions(conn, host)[:5]) or "none"
            return Result.failed(f"chart {kube.chart(host)} version {host.vars['chart_version']} is not in {url} "
                                 f"(newest there: {latest}); fix chart_version in hosts.yaml")
        return Result.changed("; ".join(done))
    return Change(f"add repository {name} at {url}" if add else f"update repository {name}", add_and_update)


def _stuck(conn: Connection, host: Host, release: dict, env: str) -> Result:
    revisions = probes.history(conn, host)
    good = [r["revision"] for r in revisions if r["status"] in ("deployed", "superseded")]
    trail = ", ".join(f"{r['revision']} {r['status']}" for r in revisions[-5:])
    fix = (f"`{settings.command()} helm.rollback --env {env} --revision {good[-1]}`" if good
           else f"`helm uninstall {release['name']} -n {host.vars['namespace']}` (no revision ever deployed)")
    return Result.failed(f"release {release['name']} is stuck in {release['status']} (history: {trail}); "
                  f"nothing was changed; recover with {fix}, then re-run")


def current(host: Host, state: probes.ReleaseState, rendered: values.Values) -> bool:
    """Whether the deployed revision already runs the pinned chart with these values."""
    release = state.release
    return bool(release and release["status"] == "deployed"
                and release["chart"] == f"{kube.CHART}-{host.vars['chart_version']}"
                and state.values == rendered.merged())


@step("helm.upgrade")
def upgrade(conn: Connection, host: Host, states: dict[str, probes.ReleaseState], repos: dict[str, probes.RepoState],
            rendered: values.Values, env: str, recreate: bool = False) -> Result | Change:
    """Install or upgrade the release when the chart version or the values differ from the
    deployed revision. First, with nothing touched: render it with `helm template --validate`
    (the chart's schema checks the values, and helm maps every kind it renders against the
    cluster's API), check every rendered object strictly against the cluster's own OpenAPI
    schemas (`openapi`: helm does not, and the cluster would drop an unknown field), show what
    would change object by object, and refuse when a rendered object changes a field the
    cluster cannot change in place (`immutable`), unless `recreate`: those objects are then
    deleted first and the upgrade recreates them. The values, secrets included, go to helm on
    stdin as one document: no file on the host holds them."""
    name, namespace = host.vars["release"], host.vars["namespace"]
    version = host.vars["chart_version"]
    chart_id = f"{kube.CHART}-{version}"
    state, where = states[host.name], repos.get(host.name)
    release, deployed = state.release, state.values
    if release and release["status"] in probes.PENDING:
        return _stuck(conn, host, release, env)
    wanted = rendered.merged()
    if current(host, state, rendered):
        return Result.ok(f"revision {release['revision']} already runs {kube.CHART} {version} with these values")
    verb = "upgrade" if release else "install"
    patch = values.diff(deployed, wanted)
    if release and release["chart"] != chart_id:
        patch = f"chart: {release['chart']} -> {chart_id}\n" + patch
    chart = [kube.chart(host), "--version", version, "--namespace", namespace, "--values", "-"]
    document = json.dumps(wanted)
    conflicts: list[immutable.Conflict] = []
    if where and where.chart_found:  # else a dry run before helm.repo adds it: no objects to show
        template = kube.read(conn, host, kube.helm(host, "template", name, *chart, "--validate"), stdin=document)
        if not template.ok:
            return Result.failed(_refusal(host, template.stderr), patch)
        objects = manifests.parse(template.stdout)
        if refused := openapi.check(conn, host, objects):
            return Result.failed(_schema_refusal(host, refused), patch)
        patch += manifests.diff(probes.manifest(conn, host) if release else [], objects, namespace)
        if release:
            conflicts = immutable.conflicts(
                objects, {manifests.key(o, namespace): o
                          for o in probes.live_objects(conn, host, immutable.refs(objects, namespace))}, namespace)
    if conflicts and not recreate:
        return Result.failed(_immutable_refusal(conflicts, env), patch)
    if conflicts:
        patch = "".join(f"recreate: {c}: delete it, the upgrade creates it anew{_loses(c)}\n"
                        for c in conflicts) + patch

    def install() -> Result:
        if where and not where.namespace:
            return Result.failed(f"namespace {namespace} does not exist; create it "
                                 f"with `{settings.command()} cluster.namespace --env {env}` (deploy does it first)")
        for ns, refs in _by_namespace(conflicts).items():
            kube.run(conn, host, kube.kubectl(host, "delete", *refs, "--namespace", ns, "--wait",
                                              f"--timeout={DELETE_TIMEOUT}s"), timeout=DELETE_TIMEOUT + 30)
        done = kube.run(conn, host, kube.helm(host, "upgrade", "--install", name, *chart, "--cleanup-on-fail"),
                        stdin=document, timeout=host.command_timeout + 600, check=False)
        if done.failed:
            return Result.failed(_helm_failure(done.stderr, namespace, env))
        after = probes.listed_release(conn, host) or {}
        deleted = f" (recreated {', '.join(f'{c.kind} {c.name}' for c in conflicts)})" if conflicts else ""
        return Result.changed(f"{'upgraded' if release else 'installed'} {name}: revision {after.get('revision')} "
                              f"{after.get('status')}{deleted}")
    what = f"delete {', '.join(str(c) for c in conflicts)}, then " if conflicts else ""
    return Change(f"{what}{verb} {name} with {kube.CHART} {version}", install, patch)


def _by_namespace(conflicts: list[immutable.Conflict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in conflicts:
        out.setdefault(c.namespace, []).append(c.ref)
    return out


def _loses(conflict: immutable.Conflict) -> str:
    """What deleting the object loses, where it holds data."""
    return {"PersistentVolumeClaim": " (its volume and data go with it unless its reclaimPolicy is Retain)",
            "Service": " (it gets a new cluster IP)"}.get(conflict.kind, "")


def _immutable_refusal(conflicts: list[immutable.Conflict], env: str) -> str:
    """The one-line refusal of an upgrade that would change immutable fields, with the fix."""
    them = "it" if len(conflicts) == 1 else "them"
    return (f"nothing was changed: the upgrade changes fields the cluster cannot change in place: "
            f"{'; '.join(f'{c}{_loses(c)}' for c in conflicts)}; re-run with --recreate "
            f"(`{settings.command()} helm.upgrade --env {env} --recreate`, or deploy --recreate) to delete {them} "
            f"first and let the upgrade recreate {them}")


_IMMUTABLE = re.compile(r'cannot patch "([^"]+)" with kind (\w+): .*?is (?:invalid|forbidden): ([\w.\[\]*]+): ')


def _helm_failure(stderr: str, namespace: str, env: str) -> str:
    """Why helm upgrade failed: for fields the cluster cannot change, the objects and the fix;
    else helm's own last words."""
    found = sorted(set(_IMMUTABLE.findall(stderr))) if re.search(r"immutable|are forbidden", stderr) else []
    if not found:
        return f"helm upgrade failed: {remote.tail(stderr)}"
    objects = "; ".join(f"{kind} {name} ({field})" for name, kind, field in found)
    deletes = " && ".join(f"kubectl delete {kind.lower()} {name} -n {namespace}" for name, kind, _ in found)
    return (f"helm upgrade failed: the cluster refused to change immutable fields of {objects}; the release is "
            f"marked failed, those objects unchanged; delete them (`{deletes}`; what they hold goes with them) "
            f"and re-run `{settings.command()} helm.upgrade --env {env}`, which recreates them")


def _schema_refusal(host: Host, problems: list[str]) -> str:
    """Why the rendered objects cannot go to this cluster as they are, with the fix."""
    return (f"nothing was changed: {kube.CHART} {host.vars['chart_version']} renders objects the cluster's own "
            f"schemas refuse: {openapi.summary(problems)}; fix the values that produce them, or use a "
            "chart_version made for this cluster's Kubernetes")


def _refusal(host: Host, stderr: str) -> str:
    """Why `helm template --validate` refused the release: kinds the cluster does not serve
    (with the fix), or the values (the chart's schema, a template's own check)."""
    unserved = sorted(set(re.findall(r'no matches for kind "([^"]+)" in version "([^"]+)"', stderr)))
    if not unserved:
        return f"values rejected before any change: {remote.tail(stderr)}"
    fix = ("set pod_disruption_budgets: false in hosts.yaml (the pinned chart's PodDisruptionBudgets are "
           "policy/v1beta1, which Kubernetes 1.25 removed), or a newer chart_version"
           if any(kind == "PodDisruptionBudget" for kind, _ in unserved) else
           "use a chart_version made for this cluster's Kubernetes")
    kinds = ", ".join(f"{version} {kind}" for kind, version in unserved)
    return (f"nothing was changed: {kube.CHART} {host.vars['chart_version']} renders {kinds}, which this "
            f"cluster does not serve; {fix}")


@step("helm.values")
def show_values(conn: Connection, host: Host, rendered: values.Values) -> Result:
    """Read-only: the rendered values, secrets masked, and the diff against the release."""
    state = probes.release_state(conn, host)
    release, deployed = state.release, state.values
    wanted = rendered.merged()
    state = "match the deployed revision" if deployed == wanted else (
        "differ from the deployed revision" if release else "not deployed yet (no release)")
    text = yaml.safe_dump(values.masked(wanted), sort_keys=False)
    return Result.ok(f"rendered values {state}", text + (values.diff(deployed, wanted) if deployed != wanted else ""))


@step("helm.rollback")
def rollback(conn: Connection, host: Host, revision: int | None = None) -> Result | Change:
    """Roll the release back to `revision` (default: the last deployed one before now)."""
    probes.namespace_exists(conn, host)  # a missing tool or an unreachable cluster raises with its fix
    revisions = probes.history(conn, host)
    if not revisions:
        return Result.failed(f"release {host.vars['release']} does not exist")
    good = [r["revision"] for r in revisions[:-1] if r["status"] in ("deployed", "superseded")]
    target = revision or (good[-1] if good else None)
    if target is None or target not in [r["revision"] for r in revisions]:
        return Result.failed(f"no revision to roll back to (history: {[r['revision'] for r in revisions]}); "
                             "pass --revision N with one of them")

    def roll_back() -> Result:
        kube.run(conn, host, kube.helm(host, "rollback", host.vars["release"], str(target),
                                       "--namespace", host.vars["namespace"]))
        after = probes.listed_release(conn, host) or {}
        return Result.changed(f"rolled back to revision {target}: now revision {after.get('revision')} "
                              f"{after.get('status')}")
    return Change(f"roll back to revision {target}", roll_back)


def release_stage(run: Run, recreate: bool = False) -> list[Result]:
    """helm.repo, then helm.upgrade if the chart is there, on the control-plane host (with
    `recreate`, objects whose immutable fields change are deleted first). A release already
    current needs no repository: it is not consulted."""
    host = run.control_plane()
    builder = buildpath.for_run(run)  # a build path that cannot work is refused before anything else
    rendered = values.render(host[0], run.env.name, run.secrets(), builder)
    releases = run.gather(host, probes.release_state, of=upgrade)
    if not releases:
        return releases.failures
    if current(host[0], releases[host[0].name], rendered):
        skipped = run.report(Result(host[0].name, repo.label, Status.OK,
                                    "not consulted: the release already runs the pinned chart"))
        return [skipped, *run.each(host, upgrade, states=releases, repos={}, rendered=rendered, env=run.env.name,
                                   recreate=recreate)]
    repos = run.gather(host, probes.repo_state, of=repo)
    if not repos:
        return repos.failures
    added = run.each(host, repo, states=repos)
    if not succeeded(added):
        return added
    # helm.repo has made sure the chart is there, unless in a dry run
    found = {name: dataclasses.replace(state, chart_found=state.chart_found or not run.dry_run)
             for name, state in repos.items()}
    return added + run.each(host, upgrade, states=releases, repos=found, rendered=rendered,
                            env=run.env.name, recreate=recreate)


@host_task(repo.label, name="repo")
def repo_task(run: Run):
    """Add and update the chart repository on the control plane, as the pinned chart needs."""
    host = run.control_plane()
    run.each(host, repo, states=run.gather(host, probes.repo_state, of=repo))


_BREAK_LOCK = {"break_lock": "take over the deploy lock even though someone holds it"}


#: --recreate's help, for helm.upgrade and deploy.
RECREATE = ("delete the objects whose immutable fields the upgrade changes (a selector, a PVC's spec...; "
            "listed by --dry-run) so that the upgrade recreates them; without it such an upgrade is refused")


@host_task(upgrade.label, name="upgrade", needs=("public_url",), help={**_BREAK_LOCK, "recreate": RECREATE})
def upgrade_task(run: Run, break_lock=False, recreate=False):
    """Install or upgrade the BinderHub release when its chart or values differ."""
    with lock.held(run, break_lock) as holding:
        if holding.held:
            release_stage(run, recreate)


@host_task(show_values.label, name="values", changes=False, needs=("public_url",))
def values_task(run: Run):
    """Show the rendered chart values, secrets masked, and their diff against the release."""
    host = run.control_plane()
    builder = buildpath.for_run(run)
    run.each(host, show_values, rendered=values.render(host[0], run.env.name, run.secrets(), builder))


def revision_number(text: str | None) -> int | None:
    """--revision as a number; refused unless a whole number from 1 up."""
    if text is None:
        return None
    if not str(text).strip().isdigit() or int(text) < 1:
        raise Exit(f"--revision must be a revision number from 1 up (see `helm history`), not {text!r}")
    return int(text)


@host_task(rollback.label, name="rollback",
           help={"revision": "revision to roll back to (default: the last deployed one)", **_BREAK_LOCK})
def rollback_task(run: Run, revision=None, break_lock=False):
    """Roll the BinderHub release back, e.g. out of a stuck pending-upgrade."""
    target = revision_number(revision)
    with lock.held(run, break_lock) as holding:
        if holding.held:
            run.each(run.control_plane(), rollback, revision=target)
