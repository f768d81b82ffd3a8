"""The whole runbook on one environment, stage after stage."""
from invoke import task

from . import docker
from .session import HELP, session

#: The runbook's stages in order, each a function of a Run; later stages join as they land.
STAGES = {
    "nodes": docker.converge_mirrors,
}


@task(help=HELP)
def deploy(c, env=None, limit=None, dry_run=False, parallel=10, inventory=None,
           accept_new_host_keys=False):
    """Run the runbook's stages in order on an environment (so far: nodes)."""
    with session(c, env, "deploy", limit=limit, dry_run=dry_run, parallel=parallel,
                 inventory_path=inventory, accept_new_host_keys=accept_new_host_keys) as run:
        for stage in STAGES.values():
            stage(run)
            if run.reporter.failed:
                break
