"""The lab's image build: BinderHub's own `KubernetesBuildExecutor`, with the lab's outcome switch and
image list.

`LabBuild.submit` is upstream's: it creates the real build pod (repo2docker's image, the configured
`docker_host` socket mounted from the node as hostPath type Socket, restartPolicy Never), watches
it and deletes it once it ends (Succeeded: `built`; Failed: `failed`); `stream_logs` is upstream's
too (the pod's log, followed). The lab's node agent plays the pod on its node with lab.apps.labr2d,
the lab's repo2docker, which builds a tiny image through that socket: a build pod that cannot mount
its socket stays ContainerCreating, and BinderHub waits (its `pending` status sends nothing), as
for a user. What the lab adds:

- the outcome, in the pod's env (labr2d.OUTCOME_ENV, through `extra_envs`): `fail`, `stall` or
  `succeed`, read at each build from ConfigMap `kube-system/lab-build`: keys `fail` and `stall`, one
  fnmatch pattern a line, matched (case-sensitively) against the request's `<provider>/<spec>` as in
  the `/build/` URL, e.g. `gh/lab/fails/*` or `gh/org/repo/HEAD` (BUILD_REQUEST, set by the lab's
  repository providers: lab.apps.labbinder). `fail` is checked first.
- before BinderHub hears `built` (and launches), the image reference is added to ConfigMap
  `kube-system/lab-images` (key `images`, one a line; created if missing, merged under optimistic
  concurrency, retried on 409 Conflict), which the lab's kubelet treats as present on every node,
  as if pushed to a registry every node reaches.
- `api` (when not given) takes `stream_logs`' `_request_timeout=(3, None)` (no read timeout): the
  kubernetes client of the lab's venv (37) refuses a None in it, which the one BinderHub's image
  pins (9.0.1, helm-chart/images/binderhub/requirements.txt) takes (`LogTimeout`).
"""
from __future__ import annotations

import contextvars
import fnmatch

from binderhub.build import KubernetesBuildExecutor, ProgressEvent
from kubernetes.client.rest import ApiException
from tornado.log import app_log
from traitlets import Unicode, default

from lab.apps.labr2d import OUTCOME_ENV

SWITCHES = ("kube-system", "lab-build")   # ConfigMap: keys `fail`, `stall`
IMAGES = ("kube-system", "lab-images")    # ConfigMap: key `images`
# `<provider>/<spec>` of the /build request being handled (a contextvar: each request is its own task).
BUILD_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("lab_build_request", default="")


def matches(patterns: str, request: str) -> bool:
    """Whether `request` matches one of `patterns` (fnmatch, one a line, blank lines ignored)."""
    return any(fnmatch.fnmatchcase(request, p.strip()) for p in patterns.splitlines() if p.strip())


def outcome(switches: dict[str, str], request: str) -> str:
    """`fail`, `stall` or `succeed`: what lab-build's data says for `request`."""
    return next((key for key in ("fail", "stall") if matches(switches.get(key) or "", request)), "succeed")


class LogTimeout:
    """A CoreV1Api whose `read_namespaced_pod_log` takes a (connect, None) timeout as no timeout."""

    def __init__(self, api):
        self._api = api

    def __getattr__(self, name: str):
        return getattr(self._api, name)

    def read_namespaced_pod_log(self, *args, _request_timeout=None, **kwargs):
        if isinstance(_request_timeout, tuple) and None in _request_timeout:
            _request_timeout = None
        return self._api.read_namespaced_pod_log(*args, _request_timeout=_request_timeout, **kwargs)


class LabBuild(KubernetesBuildExecutor):
    """BinderHub's build pod, told its outcome, whose image is listed once built (module docstring)."""

    request = Unicode(help="the /build request's `<provider>/<spec>`")

    def __init__(self, **kwargs):
        # Built by BinderHub's BuildHandler in the request's task; submit and stream_logs run in threads.
        kwargs.setdefault("request", BUILD_REQUEST.get())
        super().__init__(**kwargs)

    @default("api")
    def _default_api(self):
        return LogTimeout(super()._default_api())

    def submit(self):
        """Upstream's, with what lab-build says for this request in the pod's env."""
        chosen = outcome(self._read(SWITCHES) or {}, self.request)
        app_log.info("Lab build %s of %s: %s", self.name, self.request or self.repo_url, chosen)
        self.extra_envs = {**self.extra_envs, OUTCOME_ENV: chosen}
        super().submit()

    def progress(self, kind: ProgressEvent.Kind, payload):
        if payload is ProgressEvent.BuildStatus.BUILT:
            list_image(self.api, self.image_name)  # in submit's thread, before BinderHub hears `built`
        super().progress(kind, payload)

    def _read(self, where: tuple[str, str]) -> dict | None:
        """The data of ConfigMap `where` (namespace, name), None if there is none."""
        namespace, name = where
        try:
            return self.api.read_namespaced_config_map(name, namespace).data or {}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def list_image(api, image: str, attempts: int = 10) -> None:
    """Add `image` to lab-images (create it if missing; on a conflicting write, read and retry)."""
    namespace, name = IMAGES
    for _ in range(attempts):
        try:
            current = api.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            current = None
        listed = ((current.data or {}).get("images") or "") if current else ""
        if image in listed.splitlines():
            return
        data = {"images": listed + ("" if not listed or listed.endswith("\n") else "\n") + image + "\n"}
        try:
            if current is None:
                api.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": data})
            else:
                body = {"metadata": {"name": name, "resourceVersion": current.metadata.resource_version},
                        "data": {**(current.data or {}), **data}}
                api.replace_namespaced_config_map(name, namespace, body)
            return
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists (create) or Conflict (stale resourceVersion)
                raise
    raise RuntimeError(f"could not add {image} to ConfigMap {namespace}/{name}: {attempts} conflicts")
