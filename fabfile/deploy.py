"""The whole runbook on one environment, stage after stage."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from invoke import Exit

from . import cluster, helm, lock, metallb, nginx, nodes, probes, secrets, settings, smoke
from .inventory import InventoryError
from .localfiles import write_private
from .results import Result, Status, records, succeeded
from .session import Run, host_task


def cluster_stage(run: Run, recreate: bool = False) -> list[Result]:
    """Namespace, chart repository, release, rollout: runbook steps 3-6, 11 and 12 (`recreate`:
    see helm.upgrade)."""
    control_plane = run.control_plane()
    results = run.each(control_plane, cluster.namespace)
    for next_step in (_recover_pending, lambda run: helm.release_stage(run, recreate),
                      lambda run: [] if run.dry_run else run.each(control_plane, cluster.wait)):
        if not succeeded(results):
            break
        results += next_step(run)
    return results


def _recover_pending(run: Run) -> list[Result]:
    """A release left pending by a dropped helm client is rolled back to its last deployed
    revision: deploy holds the lock, so no other operation can be under way."""
    control_plane = run.control_plane()
    states = run.gather(control_plane, probes.release_state, of=helm.rollback)
    state = states.get(control_plane[0].name)
    if not state or not state.release or state.release["status"] not in probes.PENDING:
        return states.failures
    run.reporter.note(control_plane[0].name, f"release {state.release['name']} is {state.release['status']}: "
                      "recovering it (this deploy holds the lock)")
    return run.each(control_plane, helm.rollback)


def floating_stage(run: Run) -> list[Result]:
    """MetalLB where missing, its pool, then proxy-public on the floating IP: steps 7-9."""
    results = metallb.stage(run)
    return results + run.each(run.control_plane(), cluster.claim_floating_ip) if succeeded(results) else results


def smoke_stage(run: Run) -> list[Result]:
    """A build and launch through the public URL, diagnostics gathered on failure: step 14."""
    if run.dry_run:
        return [run.report(Result(smoke.STEP, smoke.STEP, Status.SKIPPED, "a dry run does not build"))]
    report = smoke.on_env(run, smoke.Options(), smoke.Report(smoke.DEFAULT_REPO, ""), "; or deploy with --skip-smoke")
    return [Result(smoke.STEP, smoke.STEP, Status.OK if report.verdict == "passed" else Status.FAILED, report.message)]


#: The runbook's stages in order; each returns the results it reported, and fails when any of
#: them failed or was unreachable.
STAGES = {
    "nodes": nodes.converge_mirrors,
    "secrets": secrets.stage,
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


def _write_report(run: Run, path: Path, stages: dict[str, str], results: list[tuple[str, Result]]) -> None:
    write_private(path, json.dumps({"env": run.env.name, "dry_run": run.dry_run, "stages": stages,
                                    "results": records(results, run.reporter.masked)}, indent=2))


def _run_stages(run: Run, outcome: dict[str, str], done: list[tuple[str, Result]],
                options: dict[str, dict]) -> None:
    """Run the stages of `outcome` in order (each with its `options`), recording how each ended
    and what it reported in `done`; stop at a failure."""
    try:
        for name in outcome:
            run.reporter.write(f"== stage {name}")
            outcome[name] = "running"
            try:
                results = STAGES[name](run, **options.get(name, {}))
            except InventoryError as exc:  # a setting only this stage reads
                results = [run.report(Result("local", f"deploy.{name}", Status.FAILED, str(exc)))]
            done += [(name, r) for r in results]
            ok = succeeded(results)
            outcome[name] = "ok" if ok else "failed"
            if not ok and not run.dry_run:
                run.reporter.write(f"stage {name} failed; fix it, then resume with: "
                                   f"{settings.command()} deploy --env {run.env.name} --from {name}")
                return
    except KeyboardInterrupt:
        running = next(n for n, o in outcome.items() if o == "running")
        outcome[running] = "interrupted"
        run.reporter.write(f"interrupted in stage {running}: every step under way finished first; resume "
                           f"with: {settings.command()} deploy --env {run.env.name} --from {running}")
        raise Exit(code=130) from None


def _not_touched(run: Run, done: list[tuple[str, Result]], why: str) -> list[Result]:
    """A skipped result for every host no step reached, so that the recap names every host."""
    reached = {r.host for _, r in done}
    return [run.report(Result(host.name, "deploy", Status.SKIPPED, why))
            for host in run.env.hosts if host.name not in reached]


@host_task("deploy", name="deploy", log="deploy",
           needs=("public_url", "proxy_url", "floating_ip", "metallb_manifest"), help={
               "only": f"run only these stages, comma-separated ({', '.join(STAGES)})",
               "from_": "start at this stage (resume after a failure)", "skip_smoke": "do not run the smoke test",
               "yes": "do not ask for confirmation (environments with `confirm: true`)",
               "break_lock": "take over the deploy lock even though someone holds it",
               "recreate": helm.RECREATE})
def deploy(run: Run, only=None, from_=None, skip_smoke=False, yes=False, break_lock=False, recreate=False):
    """Run the whole runbook on an environment, stage by stage; resumable with --from."""
    outcome = {name: "not run" for name in pick(only, from_, skip_smoke)}
    confirm(run, yes)
    done: list[tuple[str, Result]] = []
    hold = None
    try:
        with lock.held(run, break_lock) as hold:
            if hold.held:
                _run_stages(run, outcome, done, {"cluster": {"recreate": recreate}})
            else:
                run.reporter.write(f"no stage run without the deploy lock; fix it, then resume with: "
                                   f"{settings.command()} deploy --env {run.env.name} --from {next(iter(outcome))}")
    finally:
        done += [("deploy", r) for r in (hold.results if hold else [])]
        if any(o != "ok" for o in outcome.values()):
            done += [("deploy", r) for r in _not_touched(run, done, "not touched: the deploy stopped before "
                                                                   "reaching this host")]
        run.reporter.write("stages: " + ", ".join(f"{n} {o}" for n, o in outcome.items()))
        _write_report(run, Path(f"{run.log_base}.json"), outcome, done)
        run.reporter.write(f"log: {run.log_base}.log, report: {run.log_base}.json")
