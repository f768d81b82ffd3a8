"""The whole runbook on one environment, stage after stage."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from invoke import Exit

from . import cluster, docker, helm, lock, metallb, nginx, probes, secrets, smoke
from .inventory import InventoryError
from .localfiles import LocalFileError, open_private, write_private
from .results import Result, Status, succeeded
from .session import Run, host_task


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
    states = run.gather(control_plane, "helm.rollback", probes.release_state)
    state = states.get(control_plane[0].name)
    if not state or not state.release or state.release["status"] not in probes.PENDING:
        return bool(states)
    run.reporter.note(control_plane[0].name, f"release {state.release['name']} is {state.release['status']}: "
                      "recovering it (this deploy holds the lock)")
    return succeeded(run.each(control_plane, "helm.rollback", helm.rollback, None, run.dry_run))


def floating_stage(run: Run) -> bool:
    """MetalLB where missing, its pool, then proxy-public on the floating IP: steps 7-9."""
    return metallb.stage(run) and succeeded(run.each(
        run.control_plane(), "cluster.floating-ip", cluster.claim_floating_ip, False, run.dry_run, cluster.IP_TIMEOUT))


def smoke_stage(run: Run) -> bool:
    """A build and launch through the public URL, diagnostics gathered on failure: step 14."""
    if run.dry_run:
        run.reporter.emit(Result(smoke.STEP, smoke.STEP, Status.SKIPPED, "a dry run does not build"))
        return True
    report = smoke.Report(smoke.DEFAULT_REPO, "")
    return smoke.on_env(run, smoke.Options(), report, "; or deploy with --skip-smoke").verdict == "passed"


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


def _stage_names(flag: str, text: str) -> list[str]:
    """The stages a flag names; refused when blank or naming an unknown or empty stage."""
    chosen = [s.strip() for s in text.split(",")]
    for name in chosen:
        if name not in STAGES:
            what = f"unknown stage {name!r}" if name else f"--{flag} {text!r} names an empty stage"
            raise Exit(f"{what}; stages, in order: {', '.join(STAGES)}")
    return chosen


def pick(only: str | None, start: str | None, skip_smoke: bool) -> list[str]:
    """The stages to run, in order, from --only, --from and --skip-smoke."""
    names = list(STAGES)
    chosen = _stage_names("only", only) if only is not None else names
    if start is not None:
        first = _stage_names("from", start)
        if len(first) != 1:
            raise Exit(f"--from takes one stage, not {start!r}; stages, in order: {', '.join(STAGES)}")
        chosen = [s for s in chosen if names.index(s) >= names.index(first[0])]
    return [s for s in names if s in chosen and not (skip_smoke and s == "smoke")]


def confirm(run: Run, yes: bool) -> None:
    """Ask for the environment's name where the inventory says so; refuse without a terminal."""
    if not run.env.confirm or yes or run.dry_run:
        return
    if not sys.stdin.isatty():
        raise Exit(f"{run.env.name} needs a confirmation: run in a terminal, or pass --yes")
    if input(f"Deploy to {run.env.name}? Type its name to go on: ").strip() != run.env.name:
        raise Exit("not confirmed; nothing was done")


def _write_report(run: Run, path: Path, stages: dict[str, str]) -> None:
    write_private(path, json.dumps({"env": run.env.name, "dry_run": run.dry_run, "stages": stages,
                                    "results": run.reporter.records()}, indent=2))


def _run_stages(run: Run, outcome: dict[str, str]) -> None:
    """Run the stages of `outcome` in order, recording how each ended; stop at a failure."""
    try:
        for name in outcome:
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
                return
    except KeyboardInterrupt:
        running = next(n for n, o in outcome.items() if o == "running")
        outcome[running] = "interrupted"
        run.reporter.write(f"interrupted in stage {running}: every step under way finished first; resume "
                           f"with: invoke deploy --env {run.env.name} --from {running}")
        raise Exit(code=130) from None


def _log_base(run: Run) -> Path:
    """The log and report's path in the logs directory, without suffix: deploy-ENV-TIME, then -2,
    -3... within a second."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = stem = run.settings.logs_dir / f"deploy-{run.env.name}-{stamp}"
    for n in range(2, 100):
        if not Path(f"{base}.log").exists():
            break
        base = Path(f"{stem}-{n}")
    return base


def _not_touched(run: Run, why: str) -> None:
    """A skipped result for every host no step reached, so that the recap names every host."""
    reached = {r.host for r in run.reporter.results}
    for host in run.env.hosts:
        if host.name not in reached:
            run.reporter.emit(Result(host.name, "deploy", Status.SKIPPED, why))


@host_task("deploy", name="deploy", help={
    "only": f"run only these stages, comma-separated ({', '.join(STAGES)})",
    "from_": "start at this stage (resume after a failure)", "skip_smoke": "do not run the smoke test",
    "yes": "do not ask for confirmation (environments with `confirm: true`)",
    "break_lock": "take over the deploy lock even though someone holds it"})
def deploy(run: Run, only=None, from_=None, skip_smoke=False, yes=False, break_lock=False):
    """Run the whole runbook on an environment, stage by stage; resumable with --from."""
    outcome = {name: "not run" for name in pick(only, from_, skip_smoke)}
    confirm(run, yes)
    base = _log_base(run)
    try:
        run.reporter.log = open_private(Path(f"{base}.log"))
    except LocalFileError as exc:
        raise Exit(str(exc)) from None
    try:
        with lock.held(run, break_lock) as locked:
            if locked:
                _run_stages(run, outcome)
            else:
                run.reporter.write(f"no stage run without the deploy lock; fix it, then resume with: "
                                   f"invoke deploy --env {run.env.name} --from {next(iter(outcome))}")
    finally:
        run.reporter.stage = "deploy"
        if any(o != "ok" for o in outcome.values()):
            _not_touched(run, "not touched: the deploy stopped before reaching this host")
        run.reporter.write("stages: " + ", ".join(f"{n} {o}" for n, o in outcome.items()))
        _write_report(run, Path(f"{base}.json"), outcome)
        run.reporter.write(f"log: {base}.log, report: {base}.json")
