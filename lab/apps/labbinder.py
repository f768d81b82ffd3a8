"""The real BinderHub, as the lab runs it for the chart's `Deployment/binder`.

`python -m lab.apps.labbinder ARGS...` is `python3 -m binderhub ARGS...` (the image's entrypoint;
the chart's args are `--config /etc/binderhub/config/binderhub_config.py`): BinderHub's own
`launch_instance`, which loads the chart's config file unchanged. Then, and only then, `OVERLAY`
replaces what the lab lacks (it has no registry for builds and no internet):

- `BinderHub.build_class` = lab.apps.labbuild.LabBuild: BinderHub's own KubernetesBuildExecutor
  (the real build pod through the configured docker socket, played on its node by the lab's node
  agent with the lab's repo2docker) plus the lab's fail/stall switch and its list of built images.
- `BinderHub.registry_class` = upstream's `FakeRegistry` (it holds no image: every launch builds),
  used only with `use_registry: true`, where BinderHub would ask the registry of the values,
  which the lab cannot reach. With `use_registry: false` (the lab's values) BinderHub asks no
  registry but the docker daemon of its node (the socket the chart mounts from the node), which
  has an image once a build through that daemon made it; an image found there is listed in
  lab-images again (`listing_found_images`), as the kubelet would run it on that node: the list
  is the emulator's, gone when the lab's cluster restarts, while the daemon keeps its images.
- `BinderHub.repo_providers` = `gh`, `gist`, `gl`, `git`: BinderHub's own provider classes
  (spec parsing, URLs, build slugs, banned/allowed specs and their config sections unchanged)
  except `get_resolved_ref`, which asks no forge (`offline_ref`): a ref that is a 40-hex commit
  SHA is that commit; a ref whose name starts with `does-not-exist` resolves to nothing, so
  BinderHub fails the build with its own "Could not resolve ref for gh:org/repo/does-not-exist.
  Double check your URL and that your repo is public."; any other ref is a made-up commit, the
  SHA-1 of `<repo url>@<ref>` (stable). The providers that ask a web service (zenodo, figshare,
  hydroshare, dataverse, ckan) are left out: "No provider found for prefix zenodo".
Everything else (launcher, rate limiter, auth, health, quotas, event stream) is BinderHub's.
"""
from __future__ import annotations

import hashlib
import sys

import kubernetes.client
from binderhub.app import BinderHub
from binderhub.repoproviders import GistRepoProvider, GitHubRepoProvider, GitLabRepoProvider, GitRepoProvider
from docker.models.images import ImageCollection
from traitlets.config import Config

from lab.apps.labbuild import BUILD_REQUEST, list_image

UNRESOLVABLE = "does-not-exist"  # refs named so (or starting so) exist in no repository


def offline_ref(repo_url: str, ref: str) -> str | None:
    """The commit `ref` of `repo_url` resolves to without asking its forge (module docstring)."""
    if ref.startswith(UNRESOLVABLE):
        return None
    if GitHubRepoProvider.is_valid_sha1(ref):
        return ref
    return hashlib.sha1(f"{repo_url}@{ref or 'HEAD'}".encode()).hexdigest()


class _Offline:
    """A BinderHub provider whose refs are resolved by `offline_ref`; it also tells the lab's build
    the request's `<provider>/<spec>` (lab.apps.labbuild.BUILD_REQUEST)."""

    prefix = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        BUILD_REQUEST.set(f"{self.prefix}/{self.spec}")

    async def get_resolved_ref(self):
        if not hasattr(self, "resolved_ref"):
            self.resolved_ref = offline_ref(self.get_repo_url(), self.unresolved_ref)
        return self.resolved_ref


class LabGitHubRepoProvider(_Offline, GitHubRepoProvider):
    prefix = "gh"


class LabGistRepoProvider(_Offline, GistRepoProvider):
    prefix = "gist"


class LabGitLabRepoProvider(_Offline, GitLabRepoProvider):
    prefix = "gl"


class LabGitRepoProvider(_Offline, GitRepoProvider):
    prefix = "git"


OVERLAY = Config({"BinderHub": {
    "build_class": "lab.apps.labbuild.LabBuild",
    "registry_class": "binderhub.registry.FakeRegistry",
    "repo_providers": {p.prefix: p for p in (LabGitHubRepoProvider, LabGistRepoProvider, LabGitLabRepoProvider,
                                             LabGitRepoProvider)},
}})


class LabBinderHub(BinderHub):
    """BinderHub with `OVERLAY` applied right after its config file."""

    def load_config_file(self, *args, **kwargs):
        super().load_config_file(*args, **kwargs)
        self.update_config(OVERLAY)


def listing_found_images(get):
    """docker's `ImageCollection.get`, listing in lab-images each image it finds."""
    def found(self, name, *args, **kwargs):
        image = get(self, name, *args, **kwargs)  # docker.errors.ImageNotFound: BinderHub builds it
        list_image(kubernetes.client.CoreV1Api(), name)
        return image
    return found


def main(argv: list[str] | None = None) -> None:
    ImageCollection.get = listing_found_images(ImageCollection.get)  # binderhub.builder's local image check
    LabBinderHub.launch_instance(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
