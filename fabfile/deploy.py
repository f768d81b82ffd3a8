"""The whole runbook on one environment, stage after stage."""
from invoke import task

from . import cluster, docker, helm, secrets
from .results import succeeded
from .session import HELP, Run, session


def cluster_stage(run: Run) -> None:
    """Namespace, chart repository, release, rollout: runbook steps 3-6, 11 and 12."""
    control_plane = run.control_plane()
    if not succeeded(run.each(control_plane, "cluster.namespace", cluster.namespace, run.dry_run)):
        return
    if helm.release_stage(run) and not run.dry_run:
        run.each(control_plane, "cluster.wait", cluster.wait, cluster.ROLLOUT_TIMEOUT)


#: The runbook's stages in order, each a function of a Run; later stages join as they land.
STAGES = {
    "nodes": docker.converge_mirrors,
    "secrets": secrets.stage,
    "cluster": cluster_stage,
}


@task(help=HELP)
def deploy(c, env=None, limit=None, dry_run=False, parallel=10, inventory=None,
           accept_new_host_keys=False):
    """Run the runbook's stages in order on an environment (so far: nodes, secrets, cluster)."""
    with session(c, env, "deploy", limit=limit, dry_run=dry_run, parallel=parallel,
                 inventory_path=inventory, accept_new_host_keys=accept_new_host_keys) as run:
        for stage in STAGES.values():
            stage(run)
            if run.reporter.failed:
                break
