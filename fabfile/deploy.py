"""The whole runbook on one environment, stage after stage."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from invoke import Exit

from . import cluster, docker, helm, kube, lock, metallb, nginx, secrets, smoke, values
from .connections import ConnectError
from .inventory import InventoryError
from .remote import RemoteError
from .results import Result, Status, succeeded
from .session import Run, host_task

LOGS = smoke.LOGS


def cluster_stage(run: Run) -> bool:
    """Namespace, chart repository, release, rollout: runbook steps 3-6, 11 and 12."""
    control_plane = run.control_plane()
    if not succeeded(run.each(control_plane, "cluster.namespace", cluster.namespace, run.dry_run)):
        return False
    if not _recover_pending(run):
        return False
    if not helm.release_stage(run):
        return False
    return run.dry_run or succeeded(run.each(control_plane, "cluster.wait", cluster.wait, cluster.ROLLOUT_TIMEOUT))


def _recover_pending(run: Run) -> bool:
    """A release left pending by a dropped helm client is rolled back to its last deployed
    revision: deploy holds the lock, so no other operation can be under way."""
    control_plane = run.control_plane()
    states = run.gather(control_plane, "helm.rollback", kube.observe_release)
    state = states.get(control_plane[0].name)
    if not state or not state.release or state.release["status"] not in kube.PENDING:
        return bool(states)
    run.reporter.note(control_plane[0].name, f"release {state.release['name']} is {state.release['status']}: "
                      "recovering it (this deploy holds the lock)")
    return succeeded(run.each(control_plane, "helm.rollback", helm.rollback, None, run.dry_run))


def floating_stage(run: Run) -> bool:
    """MetalLB where missing, its pool, then proxy-public on the floating IP: steps 7-9."""
    return metallb.stage(run) and succeeded(run.each(
        run.control_plane(), "cluster.floating-ip", cluster.floating_ip, False, run.dry_run, cluster.IP_TIMEOUT))


def smoke_stage(run: Run) -> bool:
    """A build and launch through the public URL: step 14."""
    if run.dry_run:
        run.reporter.emit(Result(smoke.STEP, smoke.STEP, Status.SKIPPED, "a dry run does not build"))
        return True
    host = run.control_plane()[0]
    url = values.binder_url(host)
    token = smoke.user_token(run)
    if smoke.needs_token(run, host, token, "; or deploy with --skip-smoke"):
        return False
    return smoke.smoke_run(run, smoke.DEFAULT_REPO, url, 900, 120, 60, token, smoke.hub_access(run)).verdict == "passed"


#: The runbook's stages in order; each returns whether it succeeded (a stage also fails when any
#: of the results it reported failed or was unreachable).
STAGES = {
    "nodes": lambda run: succeeded(docker.converge_mirrors(run)),
    "secrets": lambda run: succeeded(secrets.stage(run)),
    "cluster": cluster_stage,
    "metallb": floating_stage,
    "proxy": nginx.reload_stage,
    "smoke": smoke_stage,
}


def pick(only: str | None, start: str | None, skip_smoke: bool) -> list[str]:
    """The stages to run, in order, from --only, --from and --skip-smoke."""
    names = list(STAGES)
    chosen = [s.strip() for s in only.split(",")] if only else names
    for name in chosen + ([start] if start else []):
        if name not in STAGES:
            raise Exit(f"unknown stage {name!r}; stages, in order: {', '.join(STAGES)}")
    if start:
        chosen = [s for s in chosen if names.index(s) >= names.index(start)]
    return [s for s in names if s in chosen and not (skip_smoke and s == "smoke")]


def confirm(run: Run, yes: bool) -> None:
    """Ask for the environment's name where the inventory says so; refuse without a terminal."""
    if not run.env.confirm or yes or run.dry_run:
        return
    if not sys.stdin.isatty():
        raise Exit(f"{run.env.name} needs a confirmation: run in a terminal, or pass --yes")
    if input(f"Deploy to {run.env.name}? Type its name to go on: ").strip() != run.env.name:
        raise Exit("not confirmed; nothing was done")


def _take_lock(run: Run, break_lock: bool) -> str | None:
    host = run.control_plane()[0]
    try:
        conn = run.pool.get(host)
        if run.dry_run:
            run.reporter.emit(Result(host.name, "deploy.lock", Status.OK, lock.peek(conn, host)))
            return None
        token, note = lock.acquire(conn, host, run.env.name, break_lock)
    except (lock.LockError, ConnectError, RemoteError) as exc:
        run.reporter.emit(Result(host.name, "deploy.lock", Status.FAILED, str(exc)))
        raise Exit(code=1) from None
    run.reporter.emit(Result(host.name, "deploy.lock", Status.OK, note))
    return token


def _write_report(run: Run, path: Path, stages: dict[str, str]) -> None:
    path.write_text(json.dumps({"env": run.env.name, "dry_run": run.dry_run, "stages": stages,
                                "results": run.reporter.records()}, indent=2))


@host_task("deploy", name="deploy", help={
    "only": f"run only these stages, comma-separated ({', '.join(STAGES)})",
    "from_": "start at this stage (resume after a failure)", "skip_smoke": "do not run the smoke test",
    "yes": "do not ask for confirmation (environments with `confirm: true`)",
    "break_lock": "take over the deploy lock even though someone holds it"})
def deploy(run: Run, only=None, from_=None, skip_smoke=False, yes=False, break_lock=False):
    """Run the whole runbook on an environment, stage by stage; resumable with --from."""
    stages = pick(only, from_, skip_smoke)
    confirm(run, yes)
    LOGS.mkdir(exist_ok=True)
    base = LOGS / f"deploy-{run.env.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    run.reporter.log = open(f"{base}.log", "w")
    outcome = {name: "not run" for name in stages}
    token = _take_lock(run, break_lock)
    try:
        for name in stages:
            run.reporter.stage = name
            run.reporter.write(f"== stage {name}")
            outcome[name] = "running"
            before = len(run.reporter.results)
            try:
                ok = STAGES[name](run) and succeeded(run.reporter.results[before:])
            except InventoryError as exc:  # a setting only this stage reads
                ok = not run.reporter.emit(Result("local", f"deploy.{name}", Status.FAILED, str(exc)))
            outcome[name] = "ok" if ok else "failed"
            if not ok and not run.dry_run:
                run.reporter.write(f"stage {name} failed; fix it, then resume with: "
                                   f"invoke deploy --env {run.env.name} --from {name}")
                break
    except KeyboardInterrupt:
        running = next(n for n, o in outcome.items() if o == "running")
        outcome[running] = "interrupted"
        run.reporter.write(f"interrupted in stage {running}: every step under way finished first; resume "
                           f"with: invoke deploy --env {run.env.name} --from {running}")
        raise Exit(code=130) from None
    finally:
        run.reporter.stage = "deploy"
        if token:
            try:
                lock.release(run.pool.get(run.control_plane()[0]), run.control_plane()[0], token)
            except (ConnectError, RemoteError) as exc:
                run.reporter.write(f"could not release the deploy lock: {exc}")
        run.reporter.write("stages: " + ", ".join(f"{n} {o}" for n, o in outcome.items()))
        _write_report(run, Path(f"{base}.json"), outcome)
        run.reporter.write(f"log: {base}.log, report: {base}.json")
