"""The diagnostics bundle on demand: health, pods, events, logs, helm, nginx and each node's build path,
secrets masked."""
from __future__ import annotations

from . import inventory, secrets, values
from .localfiles import LocalFileError
from .results import Result, Status
from .session import Run, host_task


def _hide_secrets(run: Run) -> None:
    """Mask the secrets of the file, if there is one (diagnose never asks for it to be made),
    and those the release was given."""
    if run.secrets_path.exists():
        run.secrets()
    for deployed in run.gather(run.control_plane(), secrets.deployed_secrets, of=STEP).values():
        run.reporter.masked.hide(deployed.values())


STEP = "diagnose"


@host_task(STEP, name="diagnose", changes=False, needs=("public_url",))
def diagnose(run: Run):
    """Gather the diagnostics bundle (health, pods, events, logs, helm, nginx, build path), secrets
    masked; exit 1 when a host could not be reached."""
    from . import diagnostics  # requests: imported only by the task that uses it

    _hide_secrets(run)
    run.gather(run.hosts("proxy")[:1], lambda conn, host: None, of=STEP)  # reports it if unreachable
    try:
        control_plane = run.control_plane()[0]
        path = diagnostics.collect(run, values.binder_url(control_plane), inventory.ca_bundle(run.env, control_plane))
    except LocalFileError as exc:
        run.report(Result("local", STEP, Status.FAILED, str(exc)))
        return
    run.report(Result("local", STEP, Status.OK, f"bundle written: {path}"))
