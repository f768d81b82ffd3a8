"""BinderHub's HTTP API, for the calls binderhub-api.md describes, served with aiohttp.

Under `base_url`:
- `versions`: `{"builder_info": {"build_image": ...}, "binderhub": "0.1.0 (binderhub-ops lab; ...)"}`.
- `health`: `{"ok": bool, "checks": [{"service": "JupyterHub API", "ok": bool}]}`, 200 or 503;
  the hub check is a real `GET {hub}hub/api/health`. (No "Docker registry" check: the lab has no
  registry to ask.)
- `build/<provider>/<spec>`: the event stream, HTTP 200 always. Without `Accept:
  text/event-stream`, one `failed` event with status_code 400; over the rate limit
  (`RateLimiter.limit` per `RateLimiter.period_seconds` per client IP, 0 disables), `failed` 429.
  Then `waiting`, the build log (lab.apps.build: nothing is built), `built` (or `built` "Found
  built image, launching..." for an image built before), `launching` "Launching server...", the
  hub's spawn progress as `launching` events, and `ready` with the server's url and token. A
  failed launch attempt is retried as BinderHub does: `Launcher.retries` attempts (default 4),
  each with a new temporary user, with "Launch attempt N failed, retrying..." between them and
  `Launcher.retry_delay` seconds of back-off (default 4, doubled each time); after the last one,
  `failed` 500 with the launcher's message, or "Internal Server Error" for an unexpected error
  (the hub unreachable). The stream stays open `hold_open` seconds after `ready`, and for good
  after a failed build, with a `:keepalive` comment every `keepalive` seconds, until the client
  closes it. Faults asked for in the faults file (lab.apps.faults) apply per request.
With `BinderHub.auth_enabled`, `/build` is for JupyterHub's users only, as BinderHub's HubOAuth
handlers decide: the token in `Authorization: token|bearer <token>` (never `?token=`) is looked
up at the hub (`GET hub/api/user` with it); no token, or one the hub does not know, gets `failed`
403 "Forbidden" (HTTP 200, never a redirect: BinderHub since 2024-05, see binderhub-api.md); a
user whose token lacks `access:services!service=binder` (or `access:services`) gets `failed` 403
"user NAME is not allowed."; a hub that cannot be asked, `failed` 500 "Failed to connect to Hub
API". The server is then launched for that user (no temporary user): the ready event's
token is still sent, but only the user's own hub token opens a jupyterhub-singleuser server.
Not implemented: the browser's OAuth cookie login at BinderHub itself, named servers,
`build_only`, `build_token`, the HTML pages, `/metrics`, providers other than gh, gl and git.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import secrets
import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from lab.apps import __version__, faults, providers
from lab.apps.build import BuiltImages, build_log, image_name
from lab.apps.launcher import Launcher, LaunchFailed, temporary_username
from lab.apps.serving import serve_until_stopped

log = logging.getLogger(__name__)

VERSION = f"{__version__} (binderhub-ops lab; no images are built)"
AUTH_HEADER = re.compile(r"^(?:token|bearer)\s+(\S+)$", re.IGNORECASE)  # as JupyterHub reads it
ALLOWED_SCOPES = {"access:services!service=binder", "access:services"}  # HubAuth's access_scopes
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "Access-Control-Allow-Headers": "cache-control"}


@dataclasses.dataclass(frozen=True)
class BinderSettings:
    """BinderHub's configuration (the `config` of the chart's values, see lab.apps.runner) and the lab's knobs."""

    base_url: str = "/"
    hub_url: str = ""             # the hub's public URL, base URL included, trailing "/"
    hub_url_local: str = ""       # where the binder reaches the hub's API, if not at hub_url
    hub_api_token: str = ""
    auth_enabled: bool = False
    image_prefix: str = ""
    build_image: str = ""
    rate_limit: int = 10
    rate_period: int = 3600
    launch_retries: int = 4
    launch_retry_delay: float = 4
    launch_timeout: float = 600
    keepalive: float = 25         # lab: seconds between `:keepalive` comments
    hold_open: float = 60         # lab: seconds the stream stays open after `ready`
    step_delay: float = 0.2       # lab: seconds between build log lines
    faults_file: str | None = None
    state_dir: str | None = None  # lab: where the names of built images are kept

    @classmethod
    def from_config(cls, config: dict, hub_api_token: str, **lab) -> BinderSettings:
        """Settings from the config's `BinderHub`, `RateLimiter` and `Launcher` sections."""
        binderhub, limiter, launcher = (config.get(k) or {} for k in ("BinderHub", "RateLimiter", "Launcher"))
        defaults = cls()
        return cls(base_url=binderhub.get("base_url") or defaults.base_url,
                   hub_url=binderhub.get("hub_url") or "", hub_url_local=binderhub.get("hub_url_local") or "",
                   hub_api_token=hub_api_token, auth_enabled=bool(binderhub.get("auth_enabled")),
                   image_prefix=binderhub.get("image_prefix") or "",
                   build_image=binderhub.get("build_image") or "",
                   rate_limit=int(limiter.get("limit", defaults.rate_limit)),
                   rate_period=int(limiter.get("period_seconds", defaults.rate_period)),
                   launch_retries=int(launcher.get("retries", defaults.launch_retries)),
                   launch_retry_delay=float(launcher.get("retry_delay", defaults.launch_retry_delay)),
                   launch_timeout=float(launcher.get("launch_timeout", defaults.launch_timeout)), **lab)


class RateLimiter:
    """BinderHub's RateLimiter: `limit` builds per client per `period` seconds (0: no limit)."""

    def __init__(self, limit: int, period: int):
        self.limit, self.period = limit, period
        self._windows: dict[str, tuple[float, int]] = {}  # client -> (reset time, requests left)

    def allows(self, client: str) -> bool:
        if not self.limit:
            return True
        now = asyncio.get_running_loop().time()
        reset, left = self._windows.get(client, (0.0, 0))
        if reset < now:
            reset, left = now + self.period, self.limit
        self._windows[client] = (reset, left - 1)
        return left > 0


class ClientGone(Exception):
    """The client closed the event stream."""


class EventStream:
    """A `text/event-stream` response: `data: <json>` events and `:keepalive` comments."""

    def __init__(self, request: web.Request, keepalive: float):
        self.request, self.keepalive = request, keepalive
        self.response = web.StreamResponse(headers=SSE_HEADERS)
        self._keepalive_task: asyncio.Task | None = None

    async def open(self) -> None:
        await self.response.prepare(self.request)

    async def send(self, event: dict) -> None:
        await self._write(f"data: {json.dumps(event)}\n\n")

    async def _write(self, text: str) -> None:
        try:
            await self.response.write(text.encode())
        except ConnectionResetError as exc:
            raise ClientGone() from exc

    def start_keepalive(self) -> None:
        self._keepalive_task = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            try:
                await self._write(":keepalive\n\n")
            except ClientGone:
                return

    async def close(self) -> None:
        if self._keepalive_task:
            self._keepalive_task.cancel()
        try:
            await self.response.write_eof()
        except ConnectionResetError:
            pass


def _single_event(event: dict) -> web.Response:
    """The whole stream as one response (BinderHub's answer to a request refused up front)."""
    return web.Response(body=f"data: {json.dumps(event)}\n\n".encode(), headers=SSE_HEADERS)


def _client_ip(request: web.Request) -> str:
    """The client's address as tornado's xheaders mode (BinderHub's) sees it behind a proxy."""
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    return request.headers.get("X-Real-Ip") or forwarded or request.remote or ""




class Binder:
    """The API's handlers, over one aiohttp client session to the hub."""

    def __init__(self, settings: BinderSettings):
        self.settings = settings
        self.built = BuiltImages(Path(settings.state_dir) / "built-images.json" if settings.state_dir else None)
        self.rate_limiter = RateLimiter(settings.rate_limit, settings.rate_period)
        self.session: aiohttp.ClientSession | None = None
        self._refusing: socket.socket | None = None

    def application(self) -> web.Application:
        app = web.Application()
        base = self.settings.base_url
        app.router.add_get(base + "versions", self.versions)
        app.router.add_get(base + "health", self.health)
        app.router.add_get(base + "build/{provider}/{spec:.+}", self.build)
        app.cleanup_ctx.append(self._client_session)
        return app

    async def _client_session(self, app: web.Application):
        async with aiohttp.ClientSession() as self.session:
            yield

    def _refusing_port(self) -> int:
        """A loopback port that refuses connections: bound, never listening, kept while we run."""
        if self._refusing is None:
            self._refusing = socket.socket()
            self._refusing.bind(("127.0.0.1", 0))
        return self._refusing.getsockname()[1]

    def _hub_api(self, fault: str | None) -> tuple[str, str]:
        """(API URL, token) the binder uses for the hub, as changed by the fault asked for."""
        url = (self.settings.hub_url_local or self.settings.hub_url) + "hub/api/"
        token = self.settings.hub_api_token
        if fault == faults.HUB_UNREACHABLE:
            url = f"http://127.0.0.1:{self._refusing_port()}/hub/api/"
        elif fault == faults.HUB_REFUSES_TOKEN:
            token = f"lab-fault-{secrets.token_hex(16)}"
        return url, token

    async def versions(self, request: web.Request) -> web.Response:
        build_image = self.settings.build_image or "none: the lab builds no images"
        return web.json_response({"builder_info": {"build_image": build_image}, "binderhub": VERSION})

    async def health(self, request: web.Request) -> web.Response:
        url, _ = self._hub_api(faults.current(self.settings.faults_file))
        try:
            async with self.session.get(url + "health", timeout=aiohttp.ClientTimeout(total=3)) as response:
                hub_ok = response.status < 400
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("health: JupyterHub API at %s: %r", url, exc)
            hub_ok = False
        checks = [{"service": "JupyterHub API", "ok": hub_ok}]
        ok = all(check["ok"] for check in checks)
        return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)

    async def user(self, request: web.Request, fault: str | None) -> dict | None:
        """The hub's model of the user whose token the request carries (None: no such user)."""
        match = AUTH_HEADER.match(request.headers.get("Authorization", ""))
        if not match:
            return None
        url, _ = self._hub_api(fault)
        async with self.session.get(url + "user", headers={"Authorization": f"token {match[1]}"},
                                    timeout=aiohttp.ClientTimeout(total=10)) as response:
            return await response.json() if response.status == 200 else None

    async def build(self, request: web.Request) -> web.StreamResponse:
        fault = faults.current(self.settings.faults_file)
        user = None
        if self.settings.auth_enabled:
            try:
                user = await self.user(request, fault)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.error("cannot identify the user at the hub: %r", exc)
                return _single_event({"phase": "failed", "status_code": 500,
                                      "message": "Failed to connect to Hub API\n"})
            if user is None:
                return _single_event({"phase": "failed", "status_code": 403, "message": "Forbidden\n"})
            if not ALLOWED_SCOPES & set(user.get("scopes") or []):
                return _single_event({"phase": "failed", "status_code": 403,
                                      "message": f"{user.get('kind', 'user')} {user['name']} is not allowed.\n"})
        if "text/event-stream" not in request.headers.get("Accept", ""):
            return _single_event({"phase": "failed", "status_code": 400,
                                  "message": "Missing Accept header: text/event-stream\n"})
        client_ip = _client_ip(request)
        if fault == faults.RATE_LIMITED or not self.rate_limiter.allows(client_ip):
            retry = f"Try again in {self.settings.rate_period} seconds."
            return _single_event({"phase": "failed", "status_code": 429, "message": f"Rate limit exceeded. {retry}\n"})
        # The spec as sent, URL escapes kept (the git provider's URL is one escaped segment).
        prefix, _, spec = request.rel_url.raw_path[len(self.settings.base_url + "build/"):].partition("/")
        stream = EventStream(request, self.settings.keepalive)
        await stream.open()
        failure = None
        try:
            await self._build_and_launch(stream, request, prefix, spec, client_ip, fault, user)
        except ClientGone:
            log.info("client closed the stream of %s", request.path)
        except LaunchFailed as exc:
            failure = {"phase": "failed", "status_code": 500, "message": f"{exc}\n"}
        except Exception:
            log.exception("build of %s/%s failed", prefix, spec)
            failure = {"phase": "failed", "status_code": 500, "message": "Internal Server Error\n"}
        try:
            if failure:
                await stream.send(failure)
        except ClientGone:
            pass
        finally:
            await stream.close()
        return stream.response

    async def _build_and_launch(self, stream: EventStream, request: web.Request, prefix: str, spec: str,
                                client_ip: str, fault: str | None, user: dict | None) -> None:
        try:
            repo = providers.resolve(prefix, spec)
        except (providers.UnknownProvider, ValueError) as exc:
            await stream.send({"phase": "failed", "message": f"{exc}\n"})
            return
        stream.start_keepalive()
        image = image_name(self.settings.image_prefix, repo)
        if image in self.built:
            await stream.send({"phase": "built", "imageName": image, "message": "Found built image, launching...\n"})
        else:
            await stream.send({"phase": "waiting", "message": "Waiting for build to start...\n"})
            async for event in build_log(repo, image, self.settings.step_delay, fault):
                await stream.send(event)
                if event["phase"] == "failed":
                    await asyncio.Event().wait()  # a failed build's stream is never closed by the server
            self.built.add(image)
            await stream.send({"phase": "built", "message": "Built image, launching...\n", "imageName": image})
        scheme = request.headers.get("X-Scheme") or request.headers.get("X-Forwarded-Proto") or request.scheme
        extra_args = {"binder_ref_url": repo.ref_url,
                      "binder_launch_host": f"{scheme}://{request.host}{self.settings.base_url}",
                      "binder_request": repo.binder_request,
                      "binder_persistent_request": repo.binder_persistent_request,
                      "binder_client_ip": client_ip}
        server = await self._launch(stream, image, repo.repo_url, extra_args, fault, user)
        await stream.send({"phase": "ready", "message": f"server running at {server['url']}\n", **server})
        await asyncio.sleep(self.settings.hold_open)

    async def _launch(self, stream: EventStream, image: str, repo_url: str, extra_args: dict[str, str],
                      fault: str | None, user: dict | None) -> dict[str, str]:
        await stream.send({"phase": "launching", "message": "Launching server...\n"})
        api_url, token = self._hub_api(fault)
        launcher = Launcher(self.session, self.settings.hub_url, api_url, token,
                            retries=self.settings.launch_retries, retry_delay=self.settings.launch_retry_delay,
                            launch_timeout=self.settings.launch_timeout)

        async def relay(event: dict) -> None:
            await stream.send({"phase": "launching", "message": f"{event.get('message', '')}\n"})

        delay, attempt = self.settings.launch_retry_delay, 1
        while True:
            try:
                if user:
                    return await launcher.launch(image, user["name"], repo_url, extra_args, relay, create_user=False)
                return await launcher.launch(image, temporary_username(repo_url), repo_url, extra_args, relay)
            except ClientGone:
                raise
            except Exception as exc:
                if attempt >= self.settings.launch_retries:
                    raise
                log.error("retrying launch of %s after error (attempt %d): %r", repo_url, attempt, exc)
                await stream.send({"phase": "launching", "message": f"Launch attempt {attempt} failed, retrying...\n"})
                await asyncio.sleep(delay)
                delay, attempt = delay * 2, attempt + 1


async def serve(settings: BinderSettings, address: str, port: int) -> None:
    """Serve the API on address:port until SIGTERM or SIGINT."""
    await serve_until_stopped(Binder(settings).application(), address, port, lambda: log.info(
        "binder API at http://%s:%d%s (hub %s)", address, port, settings.base_url, settings.hub_url or "unset"),
        handler_cancellation=True)
