"""Repository providers: what BinderHub derives from `/build/<provider>/<spec>`.

As BinderHub's GitHubRepoProvider (`gh`), GitLabRepoProvider (`gl`) and GitRepoProvider (`git`)
do, except that refs are not resolved against the repository (the lab reaches no forge): a ref
that already is a full commit SHA is kept, any other becomes a stable made-up SHA of the repo and
ref. Other providers (zenodo, figshare, ...) are unknown here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from urllib.parse import quote, unquote

_SHA = re.compile(r"[0-9a-f]{40}")


class UnknownProvider(LookupError):
    """No provider for the prefix; the message is BinderHub's."""

    def __init__(self, prefix: str):
        super().__init__(f"No provider found for prefix {prefix}")


@dataclasses.dataclass(frozen=True)
class Repo:
    """A resolved `<provider>/<spec>`."""

    prefix: str             # gh, gl, git
    spec: str               # as requested (URL-escaped parts stay escaped)
    repo_url: str
    ref: str                # the resolved commit
    ref_url: str            # binder_ref_url
    resolved_spec: str      # the spec pinned to `ref` (binder_persistent_request)
    build_slug: str         # what the image name is made from

    @property
    def binder_request(self) -> str:
        return f"v2/{self.prefix}/{self.spec}"

    @property
    def binder_persistent_request(self) -> str:
        return f"v2/{self.prefix}/{self.resolved_spec}"


def _resolve(repo_url: str, ref: str) -> str:
    return ref if _SHA.fullmatch(ref) else hashlib.sha1(f"{repo_url}@{ref}".encode()).hexdigest()


def _github(spec: str) -> Repo:
    parts = spec.split("/", 2)  # the ref may contain "/"
    if len(parts) != 3 or not all(parts):
        message = f'Spec is not of the form "user/repo/ref", provided: "{spec}".'
        if len(parts) == 2 and parts[-1] != "master":
            message += f' Did you mean "{spec}/master"?'
        raise ValueError(message)
    user, repo, ref = parts
    repo = repo.removesuffix(".git")
    repo_url = f"https://github.com/{user}/{repo}"
    sha = _resolve(repo_url, ref)
    return Repo("gh", spec, repo_url, sha, f"{repo_url}/tree/{sha}", f"{user}/{repo}/{sha}", f"{user}-{repo}")


def _gitlab(spec: str) -> Repo:
    quoted_namespace, _, ref = spec.partition("/")
    if not ref:
        raise ValueError(f'Spec is not of the form "<url-escaped namespace>/ref", provided: "{spec}".')
    namespace = unquote(quoted_namespace)
    repo_url = f"https://gitlab.com/{namespace}"
    sha = _resolve(repo_url, ref)
    return Repo("gl", spec, repo_url, sha, f"{repo_url}/tree/{sha}", f"{quoted_namespace}/{sha}",
                "-".join(namespace.split("/")))


def _git(spec: str) -> Repo:
    quoted_url, _, ref = spec.partition("/")
    if not ref:
        raise ValueError("`unresolved_ref` must be specified in the url for the basic git provider")
    repo_url = unquote(quoted_url)
    sha = _resolve(repo_url, ref)
    return Repo("git", spec, repo_url, sha, repo_url, f"{quote(repo_url, safe='')}/{sha}", repo_url)


PROVIDERS = {"gh": _github, "gl": _gitlab, "git": _git}


def resolve(prefix: str, spec: str) -> Repo:
    """The repo for `<prefix>/<spec>`; UnknownProvider, or ValueError for a malformed spec."""
    if prefix not in PROVIDERS:
        raise UnknownProvider(prefix)
    return PROVIDERS[prefix](spec.rstrip("/"))
