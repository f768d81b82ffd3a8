"""The plain-language hints smoke gives for BinderHub's known failures (no hosts needed). Each
message is the one BinderHub b9fad995 (or the JupyterHub it forwards) sends, from the file named."""
from __future__ import annotations

import pytest

from fabfile.smoke import hint

IMAGE = "lab/binder-gh-lab-2dtests-2dx-abc123:0123456789abcdef"


@pytest.mark.parametrize("status, message, expected", [
    # base.py check_rate_limit
    (429, "Rate limit exceeded. Try again in 3600 seconds.", "raise config.RateLimiter.limit"),
    # BinderHub of 2021 (36369a7): tornado's @authenticated redirect; smoke's own message
    (302, "redirected to http://h/jupyterhub/hub/api/oauth2/authorize to log in", "set $BHOPS_HUB_TOKEN"),
    # jupyterhub/services/auth.py HubAuthenticated.get_current_user
    (403, "user bob is not allowed.", "this token's user may not use BinderHub"),
    (403, "service binder is not allowed.", "lacks access:services!service=binder"),
    # base.py check_request_ip (the message is the ban_networks entry's)
    (403, "Requests from a banned network are not allowed", "config.BinderHub.ban_networks"),
    # builder.py BuildHandler.redirect → send_error's default for 403
    (403, "Forbidden", "no token, or one the hub does not know: authentication is on: set $BHOPS_HUB_TOKEN"),
    # builder.py BuildHandler.prepare
    (400, "Missing Accept header: text/event-stream", "a proxy in front of it drops it"),
    # launcher.py Launcher.launch
    (409, "User alice already has a running server.", "this token's user already has a server"),
    (409, "User alice already has the maximum of 2 named servers.  One must be deleted before a new server can be "
          "created", "this token's user already has a server"),
    (500, f"Failed to create temporary user for {IMAGE}", "the binder's hub token must match the hub's"),
    (500, f"Failed to launch image {IMAGE}", "JupyterHub could not start the server"),
    (500, f"Image {IMAGE} for user fake-repo-k7xsdh0d took too long to launch", "Launcher.launch_timeout"),
    (500, f"Image {IMAGE} for user fake-repo-k7xsdh0d failed to launch", "JupyterHub could not start the server"),
    # JupyterHub apihandlers/users.py SpawnProgressAPIHandler, raised again by launcher.py
    (500, "Spawn failed: pod binder/jupyter-x did not start in 300 seconds!", "JupyterHub could not start the server"),
    # builder.py send_error: an exception without a message
    (500, "Internal Server Error", "BinderHub cannot reach JupyterHub"),
    # builder.py BuildHandler.get and quota.py: no status code
    (None, "Could not resolve ref for gh:x/y/nope. Double check your URL and that your repo is public.",
     "the repository or its ref was not found"),
    (None, "Error resolving ref for gh:x/y/HEAD: HTTP 403: rate limit exceeded", "could not ask the repository's"),
    (None, "No provider found for prefix gist", "config.BinderHub.repo_providers"),
    (None, "Sorry, x/y/HEAD is not allowed to launch. Please contact admins for more info!", "banned_specs"),
    (None, "Too many users on this BinderHub! Try again soon.", "config.LaunchQuota.total_quota"),
    (None, "Too many users running https://github.com/x/y! Try again soon.", "per_repo_quota"),
    # smoke's own message for an answer that is not BinderHub's (nginx in front of it)
    (502, "HTTP 502", "is the binder pod running?"),
    (404, "HTTP 404", "BinderHub's base_url"),
])
def test_each_known_failure_gets_its_hint(status, message, expected):
    assert expected in hint(status, message)


def test_an_unknown_failure_gets_no_hint():
    assert hint(None, "The command '/bin/sh -c pip install' returned a non-zero code: 1") == ""  # a build failed
    assert hint(500, "something new") == ""
    assert hint(None, "Internal Server Error") == ""  # the words count only with their status code
