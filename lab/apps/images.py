"""The images the lab's kubelet (lab.apps.runner) can run, and how: no image is pulled or unpacked
here, so each one the lab knows is played by the software the image ships, installed in the lab's
venv (`.venv`) or tools (`.tools`). A container's argv is its `command` (else the image's
ENTRYPOINT) followed by its `args` (else, without a `command`, the image's CMD), as Kubernetes documents it
(https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/);
the lab then looks its first word up where the image would have it:

- `*/k8s-binderhub:*`: the image's entrypoint `python3 -m binderhub` is replaced by
  `<venv python> -m lab.apps.labbinder` (the real BinderHub with the lab's build, registry and
  repository providers), followed by the container's args.
- `*/k8s-hub:*`, `*/k8s-singleuser-sample:*` (and the built images): ENTRYPOINT `tini -g --` is
  an init the lab does without; the singleuser images' CMD is `jupyter-notebook`.
- `*/k8s-hub:*`: the container's command (`jupyterhub --config ...`), from the venv (JupyterHub 6
  and KubeSpawner 7, as z2jh 4 ships them), with what the image has and the venv lacks on its
  PYTHONPATH (lab/apps/hubimage: `nullauthenticator`). The pinned era's `k8s-hub:0.*` runs that
  image's own versions (JupyterHub 1.3.0, KubeSpawner 0.15.0, oauthenticator 0.12.3, ...) from
  the venv `.venv-hub-0.11`, with Python 3.8's `collections` aliases (hubimage/py38/sitecustomize.py),
  which its z2jh.py imports and Python 3.11 lacks. The venv's bin comes first on PATH, as the
  image's Python does (the chart's culler service runs `python3 -m jupyterhub_idle_culler`).
- `*/configurable-http-proxy:*`: the container's command, from `.tools/node_modules/.bin`.
- `*/k8s-singleuser-sample:*` and the images the lab built (ConfigMap `kube-system/lab-images`,
  key `images`, one reference a line; written by lab.apps.labbuild): a repo2docker image of the
  lab, `python3`, `jupyter-notebook`, `jupyterhub-singleuser` and the rest from the venv.
- `*/k8s-network-tools:*` (z2jh's init container that blocks the cloud metadata address with
  iptables): the host's iptables, run in the pod's network namespace.
What a container writes in its image's own directories (`writable`: the singleuser images' home)
goes to a directory of its own, standing for its container's writable layer.
Any other image is not the lab's to run: its pods are left to the emulator's kubelet.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TOOLS_BIN = REPO / ".tools" / "node_modules" / ".bin"
LAB_IMAGES = ("kube-system", "lab-images")  # ConfigMap (key `images`) of the images the lab built


@dataclasses.dataclass(frozen=True)
class Image:
    """How the lab runs an image's containers."""

    kind: str                             # binder, hub, proxy, singleuser, tools
    entrypoint: tuple[str, ...] = ()      # the image's ENTRYPOINT, as the lab runs it
    cmd: tuple[str, ...] = ()             # the image's CMD
    path: tuple[Path, ...] = (VENV_BIN,)  # where a command's first word is looked up
    workdir: str = "/"                    # the image's WORKDIR
    env_pairs: tuple[tuple[str, str], ...] = ()  # the image's ENV that the lab's copy needs
    writable: tuple[str, ...] = ()        # the image's own directories a container writes (its layer)

    @property
    def env(self) -> dict[str, str]:
        return dict(self.env_pairs)

    def argv(self, container: dict) -> list[str] | str:
        """The argv the container runs, or why it cannot run: `command` replaces the ENTRYPOINT and
        `args` the CMD; with a `command` and no `args` the CMD is not used."""
        command, args = container.get("command") or [], container.get("args") or []
        argv = list(command or self.entrypoint) + list(args or ([] if command else self.cmd))
        if not argv:
            return f"image {container.get('image')}: no command, and the lab knows no entrypoint for it"
        first = argv[0]
        if "/" not in first:
            name = "python" if first in ("python", "python3") else first
            found = next((str(d / name) for d in self.path if (d / name).exists()), None)
            if found is None:
                return f"{first}: not found in the lab's copy of image {container.get('image')}"
            argv[0] = found
        return argv


_BINDER = Image("binder", (sys.executable, "-m", "lab.apps.labbinder"), workdir="/home",
                env_pairs=(("PYTHONPATH", str(REPO)),))
HUB_IMAGE = REPO / "lab" / "apps" / "hubimage"
PINNED_HUB_BIN = REPO / ".venv-hub-0.11" / "bin"  # scripts/install-lab-apps, lab/apps/hub-0.11-requirements.txt
_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_HUB = Image("hub", workdir="/srv/jupyterhub", env_pairs=(
    ("HOME", "/home/jovyan"), ("PYTHONPATH", str(HUB_IMAGE)), ("PATH", f"{VENV_BIN}:{_SYSTEM_PATH}")))
_HUB_0_11 = Image("hub", path=(PINNED_HUB_BIN,), workdir="/srv/jupyterhub", env_pairs=(
    ("HOME", "/home/jovyan"), ("PYTHONPATH", f"{HUB_IMAGE}/py38"), ("PATH", f"{PINNED_HUB_BIN}:{_SYSTEM_PATH}")))
_PROXY = Image("proxy", path=(TOOLS_BIN,), workdir="/srv/configurable-http-proxy")
_SINGLEUSER = Image("singleuser", cmd=("jupyter-notebook",), workdir="/home/jovyan", writable=("/home/jovyan",),
                    env_pairs=(("HOME", "/home/jovyan"), ("NB_USER", "jovyan"), ("SHELL", "/bin/bash")))
_TOOLS = Image("tools", path=tuple(Path(d) for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")))
CATALOGUE = (("*/k8s-binderhub:*", _BINDER), ("*/k8s-hub:0.*", _HUB_0_11), ("*/k8s-hub:*", _HUB),
             ("*/configurable-http-proxy:*", _PROXY),
             ("*/k8s-singleuser-sample:*", _SINGLEUSER), ("*/k8s-network-tools:*", _TOOLS))


def find(image: str, built: frozenset[str] = frozenset()) -> Image | None:
    """How the lab runs `image` (`built`: the images the lab built), or None."""
    if image in built:
        return _SINGLEUSER
    return next((how for pattern, how in CATALOGUE if fnmatch.fnmatchcase(image, pattern)), None)


def built_images(data: dict[str, str] | None) -> frozenset[str]:
    """The references listed in ConfigMap `LAB_IMAGES`'s data."""
    return frozenset(line.strip() for line in ((data or {}).get("images") or "").splitlines() if line.strip())
