"""A diagnostics bundle for a failed smoke test (or on demand): what an operator would gather
to find out why, secrets masked, in one tarball."""
from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from . import buildcheck, buildpath, kube, localfiles, remote
from .connections import ConnectError
from .inventory import InventoryError
from .remote import RemoteError
from .session import Run
from .values import hub_url


def _http(url: str, verify: bool | str) -> str:
    import requests  # loaded only when a bundle is gathered

    try:
        response = requests.get(url, timeout=10, verify=verify)
    except requests.RequestException as exc:
        return f"GET {url}: {type(exc).__name__}: {exc}\n"
    return f"GET {url}: HTTP {response.status_code}\n{response.text}\n"


def _remote(run: Run, role: str, commands: dict[str, list[str]], sudo: bool) -> dict[str, str]:
    host = run.hosts(role)[0]
    try:
        out = remote.run_many(run.pool.get(host), host, commands, sudo=sudo)
    except (ConnectError, RemoteError) as exc:
        return {name: f"{host.name}: {exc}\n" for name in commands}
    return {name: f"$ {' '.join(commands[name])}  (on {host.name}, exit {o.exited})\n{o.stdout}{o.stderr}"
            for name, o in out.items()}


def _build_path(run: Run) -> str:
    """Every node's build path (buildcheck), or why the image builder cannot be chosen."""
    try:
        builder = buildpath.for_run(run)
    except InventoryError as exc:
        return f"no image builder: {exc}\n"
    return buildcheck.describe(run, builder, of="diagnose")


def collect(run: Run, binder_url: str, ca_bundle: str | None = None) -> Path:
    """Gather the bundle into the diagnostics directory; return the tarball's path (0600, in a
    0700 directory: it may still hold what masking cannot recognise; localfiles.LocalFileError
    when that cannot be)."""
    out = run.settings.diagnostics_dir
    localfiles.private_dir(out)  # refused before gathering anything
    control_plane = run.control_plane()[0]
    namespace, release = control_plane.vars["namespace"], control_plane.vars["release"]
    hub = hub_url(control_plane)
    logs = run.hosts("proxy")[0].vars["nginx_log_dir"]
    files = {
        "binder-health.txt": _http(f"{binder_url}health", ca_bundle or True),
        "binder-versions.txt": _http(f"{binder_url}versions", ca_bundle or True),
        "hub-health.txt": _http(f"{hub}hub/health", ca_bundle or True),
        **_remote(run, "control-plane", {
            "kubectl-get.txt": kube.kubectl(control_plane, "get", "pods,services,events", "-n", namespace,
                                            "-o", "wide"),
            "logs-binder.txt": kube.kubectl(control_plane, "logs", "deployment/binder", "-n", namespace,
                                            "--tail=200"),
            "logs-hub.txt": kube.kubectl(control_plane, "logs", "deployment/hub", "-n", namespace, "--tail=200"),
            "helm-status.txt": kube.helm(control_plane, "status", release, "-n", namespace),
        }, sudo=False),
        "build-path.txt": _build_path(run),
        **_remote(run, "proxy", {
            "nginx-binderhub-error.log": ["tail", "-n", "100", f"{logs}/binderhub-error.log"],
            "nginx-jupyterhub-error.log": ["tail", "-n", "100", f"{logs}/jupyterhub-error.log"],
        }, sudo=True),
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w:gz") as tar:
        for name, text in files.items():
            data = run.reporter.masked(text).encode()
            info = tarfile.TarInfo(f"{run.env.name}-{stamp}/{name}")
            info.size, info.mtime, info.mode = len(data), time.time(), 0o600
            tar.addfile(info, io.BytesIO(data))
    return localfiles.write_private(out / f"{run.env.name}-{stamp}.tar.gz", bundle.getvalue())
