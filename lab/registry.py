"""The lab's registry host `lab-registry` (10.77.0.6): Debian's docker-registry (distribution 2.8) on
https://10.77.0.6:5000 with a certificate from the lab CA, holding the images `lab.images` builds,
pushed through the registry's HTTP API at `lab.up`. The lab's nodes reach it as their mirror; they
reach nothing else, so a pull that works came through it.

Its log (`/var/log/docker-registry.log` in the host, written by Debian's init script) holds the
access log in the combined format besides the registry's own `time=... level=...` lines.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from lab import ca, hosts, images

NAME = hosts.REGISTRY
ADDRESS = f"{hosts.SUBNET}.6"
URL = f"https://{ADDRESS}:{hosts.REGISTRY_PORT}"
LOG = "var/log/docker-registry.log"  # in the host (its upper dir, seen from the root namespace)
IMAGES = (images.hello_world,)
TIMEOUT = 10.0


def publish(state: Path) -> list[str]:
    """Push the lab's images that the registry lacks (or holds otherwise); return those pushed."""
    session = _session(state)
    pushed = []
    for build in IMAGES:
        image = build()
        manifest_url = f"{URL}/v2/{image.repository}/manifests/{image.tag}"
        held = session.get(manifest_url, headers={"Accept": images.MANIFEST_TYPE}, timeout=TIMEOUT)
        if held.status_code == 200 and held.content == image.manifest:
            continue
        for digest, blob in image.blobs.items():
            _push_blob(session, image.repository, digest, blob)
        answer = session.put(manifest_url, data=image.manifest, timeout=TIMEOUT,
                             headers={"Content-Type": images.MANIFEST_TYPE})
        _check(answer, 201, f"PUT {manifest_url}")
        pushed.append(f"{image.repository}:{image.tag}")
    return pushed


def access_log(state: Path | None = None) -> str:
    """The registry's access log so far: its log's request lines (`ADDRESS - - [TIME] "GET /v2/..." ...`)."""
    try:
        text = (hosts.host_dir(NAME, state) / "upper" / LOG).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "".join(line for line in text.splitlines(keepends=True) if line[:1].isdigit())


@contextlib.contextmanager
def stopped(state: Path | None = None):
    """Stop the registry process (the host and its address stay: clients get "connection refused"),
    and start it again after, waiting until it answers."""
    hosts.run_in(NAME, ["service", "docker-registry", "stop"], state)
    try:
        yield
    finally:
        hosts.run_in(NAME, ["service", "docker-registry", "start"], state)
        deadline = time.monotonic() + hosts.TIMEOUT
        while not answers(state or hosts.state_dir()):
            if time.monotonic() > deadline:
                raise hosts.LabError(f"the lab's registry did not answer on {URL} after a restart: see "
                                     f"{hosts.host_dir(NAME, state) / 'upper' / LOG}")
            time.sleep(0.05)


def answers(state: Path) -> bool:
    """Whether the registry answers `GET /v2/` over https with a certificate the lab CA signed."""
    try:
        return _session(state).get(f"{URL}/v2/", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _session(state: Path) -> requests.Session:
    session = requests.Session()
    session.verify = str(ca.cert_path(Path(state)))
    session.trust_env = False  # the lab directly, never through a proxy from the environment
    return session


def _push_blob(session: requests.Session, repository: str, digest: str, blob: bytes) -> None:
    """Upload one blob unless the registry has it: POST an upload, then PUT it whole with its digest."""
    blob_url = f"{URL}/v2/{repository}/blobs/{digest}"
    if session.head(blob_url, timeout=TIMEOUT).status_code == 200:
        return
    started = session.post(f"{URL}/v2/{repository}/blobs/uploads/", timeout=TIMEOUT)
    _check(started, 202, f"POST {URL}/v2/{repository}/blobs/uploads/")
    location = urljoin(URL + "/", started.headers["Location"])
    done = session.put(location, params={"digest": digest}, data=blob, timeout=TIMEOUT,
                       headers={"Content-Type": "application/octet-stream"})
    _check(done, 201, f"PUT {blob_url}")


def _check(answer: requests.Response, status: int, what: str) -> None:
    if answer.status_code != status:
        raise hosts.LabError(f"the lab's registry answered {answer.status_code} to {what}: {answer.text[:200]}")
