"""The lab's image build: a BinderHub build executor that builds nothing (the lab cannot build images).

`LabBuild` stands where BinderHub's `KubernetesBuildExecutor` runs repo2docker in a build pod. It
keeps that class's traits (so BinderHub's `/versions` `builder_info` and its Kubernetes `/health`
pod quota check are its own) and works like upstream's `FakeBuild`: `submit` reports the build
running, `stream_logs` sends repo2docker's `--json-logs` lines in its phases (`fetching`,
`building`, `pushing` when repo2docker would push: `--push` in `get_r2d_cmd_options`), then:

- success: the image reference is added to ConfigMap `kube-system/lab-images` (key `images`, one
  a line; created if missing, merged under optimistic concurrency, retried on 409 Conflict), which
  the lab's kubelet treats as present on every node; then the build is `built`, as the deleted
  Succeeded build pod reports it.
- fail: repo2docker's error lines, its `failed` log event (no status_code), then the `failed`
  status a Failed build pod gives; BinderHub keeps the stream open (keepalives) after that.
- stall: the first log lines, then nothing until the client goes (BinderHub's keepalives only).

What it does is read at each build from ConfigMap `kube-system/lab-build`: keys `fail` and
`stall`, one fnmatch pattern a line, matched (case-sensitively) against the request's
`<provider>/<spec>` as in the `/build/` URL, e.g. `gh/lab/fails/*` or `gh/org/repo/HEAD`
(BUILD_REQUEST, set by the lab's repository providers: lab.apps.labbinder). `fail` is checked first.
"""
from __future__ import annotations

import contextvars
import fnmatch
import json
import secrets

from binderhub.build import KubernetesBuildExecutor, ProgressEvent
from kubernetes.client.rest import ApiException
from tornado.log import app_log
from traitlets import Float, Unicode

SWITCHES = ("kube-system", "lab-build")   # ConfigMap: keys `fail`, `stall`
IMAGES = ("kube-system", "lab-images")    # ConfigMap: key `images`
# `<provider>/<spec>` of the /build request being handled (a contextvar: each request is its own task).
BUILD_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("lab_build_request", default="")
_PIP_INSTALL = '${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "requirements.txt"'


def matches(patterns: str, request: str) -> bool:
    """Whether `request` matches one of `patterns` (fnmatch, one a line, blank lines ignored)."""
    return any(fnmatch.fnmatchcase(request, p.strip()) for p in patterns.splitlines() if p.strip())


def outcome(switches: dict[str, str], request: str) -> str:
    """`fail`, `stall` or `succeed`: what lab-build's data says for `request`."""
    return next((key for key in ("fail", "stall") if matches(switches.get(key) or "", request)), "succeed")


def log_lines(ref: str, image: str, push: bool) -> list[tuple[str, str]]:
    """(phase, message) of a successful repo2docker build of commit `ref` into `image`."""
    lines = [
        ("fetching", "Picked Git content provider.\n"),
        ("fetching", f"Cloning into '/tmp/repo2docker{secrets.token_hex(4)}'...\n"),
        ("fetching", f"HEAD is now at {ref[:7]}\n"),
        ("building", "Lab build: repo2docker does not run in the binderhub-ops lab; no image is built, the lab's "
                     "kubelet runs the image with the lab's own Jupyter.\n"),
        ("building", "Using PythonBuildPack builder\n"),
        ("building", "Step 1/3 : FROM buildpack-deps:jammy\n"),
        ("building", "Step 2/3 : COPY --chown=1000:1000 src/ ${REPO_DIR}/\n"),
        ("building", f"Step 3/3 : RUN {_PIP_INSTALL}\n"),
        ("building", f"Successfully built {secrets.token_hex(6)}\n"),
        ("building", f"Successfully tagged {image}\n"),
    ]
    if push:
        lines.append(("pushing", f"Pushing image {image}\n"))
    return lines


FAILURE = [
    ("building", "ERROR: Could not find a version that satisfies the requirement lab-build-fails\n"),
    ("failed", f"The command '/bin/sh -c {_PIP_INSTALL}' returned a non-zero code: 1\n"),
]
STALL_AFTER = 6  # log lines sent before a stalled build goes silent


class LabBuild(KubernetesBuildExecutor):
    """A build that takes `step_delay` s a log line, and fails, stalls or lists its image (module docstring)."""

    step_delay = Float(0.1, config=True, help="seconds between two log lines of a lab build")
    request = Unicode(help="the /build request's `<provider>/<spec>`")

    def __init__(self, **kwargs):
        # Built by BinderHub's BuildHandler in the request's task; submit and stream_logs run in threads.
        kwargs.setdefault("request", BUILD_REQUEST.get())
        super().__init__(**kwargs)

    def submit(self):
        """Read what lab-build says for this request; the build is then running."""
        self._outcome = outcome(self._read(SWITCHES) or {}, self.request)
        app_log.info("Lab build %s of %s: %s", self.name, self.request or self.repo_url, self._outcome)
        self.progress(ProgressEvent.Kind.BUILD_STATUS_CHANGE, ProgressEvent.BuildStatus.RUNNING)

    def stream_logs(self):
        push = "--push" in self.get_r2d_cmd_options()
        lines = log_lines(self.ref, self.image_name, push)
        if self._outcome == "fail":
            lines = lines[:STALL_AFTER] + FAILURE
        elif self._outcome == "stall":
            lines = lines[:STALL_AFTER]
        for phase, message in lines:
            if self.stop_event.wait(self.step_delay):
                return
            self.progress(ProgressEvent.Kind.LOG_MESSAGE, json.dumps({"phase": phase, "message": message}))
        if self._outcome == "stall":
            self.stop_event.wait()  # silent until BinderHub stops watching (the client went)
        elif self._outcome == "fail":
            self.progress(ProgressEvent.Kind.BUILD_STATUS_CHANGE, ProgressEvent.BuildStatus.FAILED)
        else:
            self._add_image()
            self.progress(ProgressEvent.Kind.BUILD_STATUS_CHANGE, ProgressEvent.BuildStatus.BUILT)

    def _read(self, where: tuple[str, str]) -> dict | None:
        """The data of ConfigMap `where` (namespace, name), None if there is none."""
        namespace, name = where
        try:
            return self.api.read_namespaced_config_map(name, namespace).data or {}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _add_image(self, attempts: int = 10) -> None:
        """Add the image to lab-images (create it if missing; on a conflicting write, read and retry)."""
        namespace, name = IMAGES
        for _ in range(attempts):
            try:
                current = self.api.read_namespaced_config_map(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                current = None
            listed = ((current.data or {}).get("images") or "") if current else ""
            if self.image_name in listed.splitlines():
                return
            data = {"images": listed + ("" if not listed or listed.endswith("\n") else "\n") + self.image_name + "\n"}
            try:
                if current is None:
                    self.api.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": data})
                else:
                    body = {"metadata": {"name": name, "resourceVersion": current.metadata.resource_version},
                            "data": {**(current.data or {}), **data}}
                    self.api.replace_namespaced_config_map(name, namespace, body)
                return
            except ApiException as exc:
                if exc.status != 409:  # AlreadyExists (create) or Conflict (stale resourceVersion)
                    raise
        raise RuntimeError(f"could not add {self.image_name} to ConfigMap {namespace}/{name}: {attempts} conflicts")
