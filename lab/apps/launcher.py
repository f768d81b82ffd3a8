"""Launching an image through JupyterHub's REST API, as BinderHub's Launcher does.

One launch attempt, as the JupyterHub service `binder` with its API token:
1. `POST users/<name>`: a temporary user, its name made from the repo URL plus 8 random
   characters (not with authentication, where the launch is for the user who asked). A refusal
   (e.g. 403 for a wrong token) fails the attempt with "Failed to create temporary user for
   <image>".
2. `POST users/<name>/server` with user_options {image, repo_url, token, binder_*}; the token is
   a fresh random one that opens the server. An HTTP error fails it with "Failed to launch image
   <image>".
3. If the hub answers 202 (spawn pending), follow `GET users/<name>/server/progress` (SSE),
   handing every event to the caller, until the `ready` event; a `failed` event fails the attempt
   with the hub's message ("Spawn failed: ..."); `launch_timeout` seconds at most.

Hub API requests answered with a 5xx are retried `retries` times with `retry_delay` seconds of
back-off, doubled after each try, and a 409 on a retry counts as success (the first try got
through). Connection errors are not retried here: they end the attempt. Retrying whole attempts
is the build handler's business (lab.apps.binder).
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import secrets
import string
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp

log = logging.getLogger(__name__)

_SSH_REPO = re.compile(r".*@.*:")  # user@host:path, when the URL has no "://"
_SUFFIX_CHARS = string.ascii_lowercase + string.digits


class LaunchFailed(Exception):
    """A launch attempt failed; the message is BinderHub's (sent with status_code 500)."""


class HubError(Exception):
    """The hub answered an API request with an HTTP error."""

    def __init__(self, method: str, url: str, status: int, body: str):
        super().__init__(f"{method} {url}: HTTP {status}: {body[:200]}")


def temporary_username(repo_url: str) -> str:
    """BinderHub's name for a temporary user: e.g. `minrk-binder-example-k7xsdh0d`."""
    path = repo_url.split(":", 1)[1] if "://" not in repo_url and _SSH_REPO.match(repo_url) else urlparse(repo_url).path
    prefix = path.strip("/").replace("/", "-").lower().removesuffix(".git")
    if len(prefix) > 32:
        prefix = f"{prefix[:15]}-{prefix[-15:]}"
    return f"{prefix}-{''.join(random.choices(_SUFFIX_CHARS, k=8))}"


class Launcher:
    """Launches servers on one JupyterHub: `hub_url` is its public URL (for the users' URLs),
    `api_url` where its REST API is reached (`.../hub/api/`)."""

    def __init__(self, session: aiohttp.ClientSession, hub_url: str, api_url: str, token: str, *,
                 retries: int = 4, retry_delay: float = 4, launch_timeout: float = 600):
        self.session, self.hub_url, self.api_url, self.token = session, hub_url, api_url, token
        self.retries, self.retry_delay, self.launch_timeout = retries, retry_delay, launch_timeout

    async def api_request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body) of a hub API request, retried on 5xx; HubError on an HTTP error."""
        url = self.api_url + path
        delay, attempt = self.retry_delay, 1
        while True:
            async with self.session.request(method, url, headers={"Authorization": f"token {self.token}"},
                                            **kwargs) as response:
                text = await response.text()
            if response.status < 400 or (attempt > 1 and response.status == 409):
                return response.status, json.loads(text) if text else None
            error = HubError(method, url, response.status, text)
            if response.status < 500 or attempt == self.retries:
                raise error
            log.error("hub API error, retrying in %.1fs: %s", delay, error)
            await asyncio.sleep(delay)
            delay, attempt = delay * 2, attempt + 1

    async def launch(self, image: str, username: str, repo_url: str, extra_args: dict[str, str],
                     on_progress: Callable[[dict], Awaitable[None]], create_user: bool = True) -> dict[str, str]:
        """One launch attempt, for a new temporary user or (with authentication) an existing
        one; returns the `ready` event's data (url, token, image, ...)."""
        name = quote(username, safe="@~")
        if create_user:
            log.info("creating user %s for image %s", username, image)
            try:
                await self.api_request("POST", f"users/{name}")
            except HubError as exc:
                log.error("error creating user %s: %s", username, exc)
                raise LaunchFailed(f"Failed to create temporary user for {image}") from exc

        data = {"image": image, "repo_url": repo_url, "token": secrets.token_urlsafe(16), **extra_args}
        log.info("starting server for user %s with image %s", username, image)
        try:
            status, _ = await self.api_request("POST", f"users/{name}/server", json=data)
        except HubError as exc:
            log.error("error starting server for user %s: %s", username, exc)
            raise LaunchFailed(f"Failed to launch image {image}") from exc
        if status == 202:
            try:
                await asyncio.wait_for(self._follow_progress(name, on_progress), self.launch_timeout)
            except asyncio.TimeoutError:
                raise LaunchFailed(f"Image {image} for user {username} took too long to launch") from None
        data["url"] = f"{self.hub_url}user/{name}/"
        return data

    async def _follow_progress(self, name: str, on_progress: Callable[[dict], Awaitable[None]]) -> None:
        url = f"{self.api_url}users/{name}/server/progress"
        async with self.session.get(url, headers={"Authorization": f"token {self.token}"},
                                    timeout=aiohttp.ClientTimeout(total=None)) as response:
            if response.status >= 400:
                raise LaunchFailed(f"Spawn failed: progress unavailable (HTTP {response.status})")
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue  # keepalive blank lines
                event = json.loads(line[5:])
                await on_progress(event)
                if event.get("ready"):
                    return
                if event.get("failed"):
                    raise LaunchFailed(event.get("message") or "Spawn failed")
        raise LaunchFailed(f"Spawn failed: the hub's progress stream for {name} ended early")
