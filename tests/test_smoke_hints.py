"""The plain-language hints smoke gives for BinderHub's known failures (no hosts needed)."""
from __future__ import annotations

import pytest

from fabfile.smoke import hint


@pytest.mark.parametrize("status, message, expected", [
    (429, "Rate limit exceeded. Try again in 3600 seconds.", "raise config.RateLimiter.limit"),
    (302, "redirected to http://h/jupyterhub/hub/api/oauth2/authorize to log in", "set $BHOPS_HUB_TOKEN"),
    (403, "user bob is not allowed.", "this token's user may not use BinderHub"),
    (403, "Requests from 10.0.0.0/8 are not allowed", "config.BinderHub.ban_networks"),
    (403, "Forbidden", "no token, or one the hub does not know: authentication is on: set $BHOPS_HUB_TOKEN"),
    (500, "Failed to launch image lab/binder-x:abc\n", "JupyterHub could not start the server"),
    (500, "Failed to create temporary user for lab/binder-x:abc", "the binder's hub token does not match"),
    (500, "Spawn failed: image did not start", "JupyterHub could not start the server"),
])
def test_each_known_failure_gets_its_hint(status, message, expected):
    assert expected in hint(status, message)


def test_an_unknown_failure_gets_no_hint():
    assert hint(None, "Could not resolve ref for gh:x/y/nope") == ""
    assert hint(500, "something new") == ""
