"""The smoke test: a Binder build through BinderHub's REST API, followed live, and the launched
server proven to work (runbook step 14)."""
from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator
from urllib.parse import urlsplit
from xml.etree import ElementTree

import paramiko
from fabric import Connection
from invoke import Context, Exit, task

from . import inventory, kube, secretfile, settings, values
from .connections import ConnectError
from .eventstream import Event, events, lines
from .inventory import Host
from .localfiles import LocalFileError, private_dir, write_private
from .remote import RemoteError
from .results import Reporter, Result, Status
from .session import READ_HELP, Run, Task, session

if TYPE_CHECKING:  # requests and websocket are imported by the functions that use them
    import requests

DEFAULT_REPO = "gh/binder-examples/requirements/HEAD"
PROGRESS_EVERY = 30  # seconds between progress lines while the stream is open
STOP_WAIT = 120      # seconds the stopped server may take to leave the hub (a pod's grace period)
KEEPALIVE = 25       # seconds between BinderHub's `:keepalive` comments (builder.py KEEPALIVE_INTERVAL)
STEP = "smoke"

#: BinderHub's providers (app.py, BinderHub.repo_providers) and how many `/`-separated parts their
#: spec has at least (gh: org/repo/ref; gist: user/id; gl and git: the URL-escaped project or
#: repository URL, then the ref).
PROVIDERS = {"gh": 3, "gist": 2, "gl": 2, "git": 2, "zenodo": 1, "figshare": 1, "hydroshare": 1, "dataverse": 1,
             "ckan": 1}

TOKEN_ENV = settings.SECRET_ENV["hub_token"]
AUTH_HINT = (f"authentication is on: set ${TOKEN_ENV} (or smoke_hub_token in the secrets file) to a JupyterHub "
             "API token made on the hub's /hub/token page with the scopes access:services!service=binder and "
             "access:servers!user=<its user>")
SPAWN_HINT = "JupyterHub could not start the server: see the hub's logs in the diagnostics"
USER_SERVER_HINT = ("this token's user already has a server: stop it (the hub's control panel) or let BinderHub "
                    "launch named servers (config.Launcher.allow_named_servers)")
LAUNCH_RETRY = re.compile(r"Launch attempt \d+ failed, retrying")  # builder.py BuildHandler.launch

#: (status code, words in the message, hint): BinderHub's answers (binderhub b9fad995, the current
#: chart's; source files named), and the HTTP answers of what stands in front of it.
HINTS = [
    # base.py check_rate_limit: only anonymous requests (authenticated users are not limited)
    (429, "Rate limit exceeded.", "rate limited: raise config.RateLimiter.limit in the chart values (0 disables "
                                  "it); a smoke test run often meets this limit"),
    # BinderHub of the pinned (2021) chart sent a client without a valid token to the hub's login:
    # its BuildHandler kept tornado's @authenticated redirect (replaced by a 403 in 8c1bae0e, 2024-05).
    (302, "", AUTH_HINT),
    # jupyterhub/services/auth.py HubAuthenticated.get_current_user: a known user or service
    # without the binder scope ("service binder is not allowed." for the binder's own token)
    (403, " is not allowed.", "this token's user may not use BinderHub (it lacks access:services!service=binder): "
                              + AUTH_HINT),
    # builder.py BuildHandler.redirect raises HTTPError(403): no token, or one the hub does not know
    (403, "Forbidden", "no token, or one the hub does not know: " + AUTH_HINT),
    # base.py check_request_ip: "Requests from ... are not allowed"
    (403, "Requests from ", "BinderHub refused this client: its network is in config.BinderHub.ban_networks"),
    # builder.py BuildHandler.prepare
    (400, "Missing Accept header", "the Accept: text/event-stream header did not reach BinderHub: a proxy in front "
                                   "of it drops it"),
    # launcher.py Launcher.launch (authentication on, named servers off or at their limit)
    (409, "already has a running server", USER_SERVER_HINT),
    (409, "already has the maximum of", USER_SERVER_HINT),
    # launcher.py Launcher.launch: POST users/NAME (authentication off) was refused, or answered 5xx or
    # timed out four times (Launcher.api_request retries those)
    (500, "Failed to create temporary user", "JupyterHub refused or did not answer the request to create the "
          "temporary user: the binder's hub token must match the hub's (both come from binder_api_token; run "
          "helm.upgrade so binder and hub get the same one), the binder service needs admin:users, and the hub pod "
          "must be up"),
    # launcher.py Launcher.launch: the hub refused the spawn request, or its progress stream failed
    (500, "Failed to launch image", SPAWN_HINT),
    # launcher.py Launcher.launch: JupyterHub's progress said "Spawn failed: ..." (apihandlers/users.py)
    (500, "Spawn failed", SPAWN_HINT),
    (500, "took too long to launch", "the server did not start within Launcher.launch_timeout (600 s): " + SPAWN_HINT),
    (500, " failed to launch", SPAWN_HINT),
    # builder.py send_error: an exception without a message (a connection the hub refused)
    (500, "Internal Server Error", "BinderHub cannot reach JupyterHub: check hub_url, the hub pod, and that "
          "proxy-public holds the floating IP (cluster.floating-ip)"),
    # builder.py BuildHandler.get and quota.py: `failed` events without a status code
    (None, "Could not resolve ref", "the repository or its ref was not found, or is private: check --repo "
                                    "(HEAD for the default branch)"),
    (None, "Error resolving ref", "BinderHub could not ask the repository's provider (unreachable, or its API "
                                  "rate limit): see the binder pod's logs"),
    (None, "No provider found for prefix", "this BinderHub has no such provider (config.BinderHub.repo_providers)"),
    (None, "is not allowed to launch", "the repository is banned by its provider's banned_specs"),
    (None, "Too many users on this BinderHub", "the launch quota is full: config.LaunchQuota.total_quota, or stop "
                                               "some servers"),
    (None, "Too many users running", "the repository's launch quota is full (config.BinderHub.per_repo_quota, or "
                                     "the provider's spec_config), or stop some of its servers"),
    # What stands in front of BinderHub (BinderHub itself answers /build with 200 only).
    (404, "HTTP 404", "no BinderHub build API at this URL: check the binder URL and BinderHub's base_url"),
    (502, "HTTP 502", "the proxy in front of BinderHub got no answer from it: is the binder pod running?"),
    (503, "HTTP 503", "the proxy in front of BinderHub got no answer from it: is the binder pod running?"),
    (504, "HTTP 504", "the proxy in front of BinderHub got no answer from it: is the binder pod running?"),
]


@dataclass
class Phase:
    """One phase of the stream as the client saw it."""

    name: str
    start: float
    duration: float = 0.0
    messages: int = 0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    """What `--report` writes: the phases, the verdict and the server checks."""

    repo: str
    binder_url: str
    phases: list[Phase] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    verdict: str = "failed"
    failed_phase: str = ""
    message: str = ""
    status_code: int | None = None
    hint: str = ""
    diagnostics: str = ""
    checks_seconds: float = 0.0  # spent on the server checks and the stop, mostly waiting on the server
    ready_seconds: float | None = None  # from sending the build request to the `ready` event
    launch_retries: int = 0  # BinderHub's "Launch attempt N failed, retrying..." messages
    last_event: float = 0.0  # seconds after the request when the last event came (keepalives not counted)

    def phase(self, name: str, at: float) -> Phase:
        if self.phases:
            self.phases[-1].duration = seconds(at - self.phases[-1].start)
        self.phases.append(Phase(name, seconds(at)))
        return self.phases[-1]


@dataclass(frozen=True)
class Options:
    """One smoke run's choices, checked (see `options`)."""

    repo: str = DEFAULT_REPO
    binder_url: str | None = None  # --binder-url; None: the environment's BinderHub
    auth: bool = False             # --auth: fail at once without a token
    timeout: float = 900
    silence: float = 120
    kernel_timeout: float = 60
    ca_bundle: str | None = None   # --ca-bundle, else vars.tls_ca_bundle: verifies https (system CAs if None)


@dataclass(frozen=True)
class Hub:
    """The hub's API as the control-plane host reaches it (the `hub` Service), with the binder
    service's token, which never leaves the SSH connection."""

    connect: Callable[[], Connection]
    host: Host
    token: str = field(repr=False)


def seconds(value: float) -> float:
    """A duration for the reports: never negative, never -0.0."""
    return round(max(0.0, value), 3) + 0.0


def hint(status: int | None, message: str) -> str:
    return next((h for code, words, h in HINTS if code == status and words in message), "")


# -- input ------------------------------------------------------------------------------------

def check_url(url: str, flag: str = "--binder-url") -> str:
    """`url` as an http(s) base URL ending in `/`; Exit naming `flag` otherwise."""
    example = "give BinderHub's base URL, like https://binder.example.org/binderhub/"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError when out of range or not a number)
    except ValueError as exc:
        raise Exit(f"{flag} {url!r}: {exc}; {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Exit(f"{flag} {url!r} is not an http:// or https:// URL; {example}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise Exit(f"{flag} {url!r}: no query, fragment or credentials allowed; {example}")
    return url if url.endswith("/") else url + "/"


def check_repo(repo: str) -> str:
    """`repo` as BinderHub's provider/spec; Exit saying the expected form otherwise."""
    provider, _, spec = repo.strip("/").partition("/")
    parts = spec.split("/")
    known = ", ".join(PROVIDERS)
    if provider not in PROVIDERS:
        raise Exit(f"--repo {repo!r}: unknown provider {provider!r}; give provider/spec with a provider of "
                   f"BinderHub ({known}), e.g. {DEFAULT_REPO}")
    if len(parts) < PROVIDERS[provider] or not all(parts) or re.search(r"[\s?#]", spec):
        form = {"gh": "gh/ORG/REPO/REF", "gl": "gl/URL-ESCAPED-PROJECT/REF", "git": "git/URL-ESCAPED-URL/REF"}
        raise Exit(f"--repo {repo!r} is not {form.get(provider, provider + '/ID')}, e.g. {DEFAULT_REPO} "
                   "(HEAD for the default branch)")
    return f"{provider}/{spec}"


def check_output(path: str | None, flag: str) -> Path | None:
    """The report file `path`, its directory made private (0700) or refused with an Exit."""
    if not path:
        return None
    try:
        private_dir(Path(path).parent)
    except LocalFileError as exc:
        raise Exit(f"{flag} {path}: {exc}") from None
    if Path(path).is_dir():
        raise Exit(f"{flag} {path} is a directory; give a file name")
    return Path(path)


def options(repo: str, binder_url: str | None, auth: bool, timeout: str | None, silence: str | None,
            ca_bundle: str | None = None) -> Options:
    """The flags checked, before anything is sent (numbers as text: Invoke's own int parsing
    would end in a traceback)."""
    numbers = {}
    for flag, value in (("--timeout", timeout or Options.timeout), ("--silence", silence or Options.silence)):
        try:
            numbers[flag] = float(value)
        except (TypeError, ValueError):
            numbers[flag] = -1.0
        if not 0 < numbers[flag] < float("inf"):
            raise Exit(f"{flag} {value!r}: give a number of seconds above 0")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise Exit(f"--ca-bundle {ca_bundle}: no such file; give the CA certificate(s) in PEM")
    return Options(check_repo(repo), check_url(binder_url) if binder_url else None, auth,
                   numbers["--timeout"], numbers["--silence"], ca_bundle=ca_bundle and str(Path(ca_bundle).resolve()))


# -- the build stream --------------------------------------------------------------------------

def _progress(report: Report, say: Callable[[str], None], start: float, done: threading.Event) -> None:
    """Every PROGRESS_EVERY seconds until `done`: where the stream is, even when nothing comes
    (BinderHub's keepalives keep a stalled build's stream open)."""
    while not done.wait(PROGRESS_EVERY):
        now = time.monotonic() - start
        p = report.phases[-1] if report.phases else None
        say(f"still {p.name}: {now - p.start:.0f} s, {p.messages} messages, the last {now - report.last_event:.0f} s "
            "ago" if p else f"no event yet: {now:.0f} s")


def follow(http: requests.Session, url: str, headers: dict, report: Report, say: Callable[[str], None],
           timeout: float, silence: float) -> Event | None:
    """Read the build stream until `ready` or `failed` (then close it: BinderHub keeps it open 60 s
    after `ready`, and for good after a build pod failed); None when it went silent or ran out of
    time (the report says which). A progress line comes every PROGRESS_EVERY s."""
    import requests

    start = time.monotonic()
    done = threading.Event()
    try:
        with http.get(url, headers={**headers, "Accept": "text/event-stream"}, stream=True,
                      timeout=(10, silence), allow_redirects=False) as response:
            if response.is_redirect:  # BinderHub of 2021 (the pinned chart's): no valid token, go log in
                where = urlsplit(response.headers.get("Location", ""))
                report.status_code = response.status_code
                report.message = (f"redirected to {where.scheme}://{where.netloc}{where.path} to log in: "
                                  "no token, or one the hub does not know")
                return None
            if response.status_code != 200:  # not BinderHub's answer: it answers /build with 200 only
                report.status_code, report.message = response.status_code, f"HTTP {response.status_code}"
                return None
            ticker = threading.Thread(target=_progress, args=(report, say, start, done), daemon=True)
            ticker.start()
            try:
                return _read(response, report, say, start, timeout)
            finally:
                done.set()
                ticker.join()
    except requests.exceptions.ChunkedEncodingError:  # the connection closed mid-stream (a binder pod restarting)
        report.message = "the stream was cut off before ready or failed: was the binder pod restarted?"
        return None
    except (requests.ConnectionError, requests.Timeout) as exc:
        silent = "Read timed out" in str(exc)
        report.message = (f"the stream went silent for {silence:g} s" if silent
                          else f"cannot reach {url}: {type(exc).__name__}")
        if silent and silence > KEEPALIVE:
            report.message += f" (not even BinderHub's keepalive, sent every {KEEPALIVE} s)"
        return None


def _read(response: requests.Response, report: Report, say: Callable[[str], None], start: float,
          timeout: float) -> Event | None:
    for event in events(lines(response.iter_content(chunk_size=None))):
        now = time.monotonic() - start
        if event:
            report.last_event = seconds(now)
            _phase(report, event, say, now)
        if event and (event.phase == "ready" or event.failed):
            report.phases[-1].duration = seconds(now - report.phases[-1].start)
            if event.phase == "ready":
                report.ready_seconds = seconds(now)
            return event
        if now > timeout:
            report.message = f"no ready within the overall timeout of {timeout:g} s"
            return None
    report.message = "the stream ended without ready or failed"
    return None


def _phase(report: Report, event: Event, say: Callable[[str], None], now: float) -> None:
    """Count `event` in its phase, opening a new one when the phase changes. `unknown` stays in
    the current phase: BinderHub gives that phase to build log lines that are not JSON (build.py
    stream_logs). A launch retry is said, since each one waits 4, 8, 16 s (Launcher.retry_delay)."""
    if not report.phases or report.phases[-1].name != event.phase and event.phase != "unknown":
        report.phase(event.phase, now)
        say(f"{event.phase} ({now:.1f} s)")
    report.phases[-1].messages += 1
    if event.phase == "launching" and LAUNCH_RETRY.match(event.message):
        report.launch_retries += 1
        say(f"launching: {event.message.strip()} ({now:.1f} s)")


# -- the launched server -----------------------------------------------------------------------

def within(url: str, base: str) -> bool:
    """Whether `url` is on `base`'s scheme, host and port, under its path."""
    try:
        a, b = urlsplit(url), urlsplit(base)
        same = (a.scheme, a.hostname, a.port or {"http": 80, "https": 443}.get(a.scheme)) == \
               (b.scheme, b.hostname, b.port or {"http": 80, "https": 443}.get(b.scheme))
    except ValueError:
        return False
    return same and not a.username and a.path.startswith(b.path or "/")


def check_server(http: requests.Session, url: str, token: str, kernel_timeout: float) -> list[Check]:
    """The launched server answers its API, starts a kernel that reaches idle, deletes it."""
    auth = {"Authorization": f"token {token}"}
    checks = []
    api = http.get(f"{url}api", headers=auth, timeout=10, allow_redirects=False)
    version = api.json().get("version") if api.status_code == 200 else None
    checks.append(Check("server api", bool(version), f"HTTP {api.status_code}, version {version}"))
    if not version:
        return checks
    kernel = http.post(f"{url}api/kernels", headers=auth, json={}, timeout=30)
    if not kernel.ok:
        return checks + [Check("kernel start", False, f"HTTP {kernel.status_code}")]
    kernel_id = kernel.json()["id"]
    state = kernel_status(url, kernel_id, token, kernel_timeout, http.verify)
    checks.append(Check("kernel idle", state == "idle", f"kernel_info answered, execution_state {state}"
                        if state == "idle" else state))
    deleted = http.delete(f"{url}api/kernels/{kernel_id}", headers=auth, timeout=30)
    checks.append(Check("kernel delete", deleted.status_code == 204, f"HTTP {deleted.status_code}"))
    return checks


def kernel_status(url: str, kernel_id: str, token: str, timeout: float, verify: bool | str = True) -> str:
    """Ask the kernel for kernel_info over its websocket, as a notebook does, and return the
    execution_state it reports when done ("idle"), or what went wrong. A kernel nobody has
    talked to stays "starting" in the REST API, so only a real round trip proves it works.
    `verify`: requests' setting (True, or a CA bundle's path)."""
    import websocket

    ws_url = "ws" + url[len("http"):] + f"api/kernels/{kernel_id}/channels"
    msg_id = uuid.uuid4().hex
    request = {"header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "smoke",
                          "session": uuid.uuid4().hex, "date": "", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell", "buffers": []}
    deadline = time.monotonic() + timeout
    try:
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout,
                                         sslopt={"ca_certs": verify} if isinstance(verify, str) else None)
    except (OSError, websocket.WebSocketException) as exc:
        return f"websocket to the kernel failed: {exc}"
    try:
        ws.send(json.dumps(request))
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if (message.get("parent_header", {}).get("msg_id") == msg_id and message.get("channel") == "iopub"
                    and message.get("msg_type") == "status"
                    and message["content"].get("execution_state") == "idle"):
                return "idle"
    except (OSError, ValueError, websocket.WebSocketException) as exc:
        return f"kernel did not answer kernel_info: {type(exc).__name__}"
    finally:
        ws.close()
    return f"kernel did not go idle within {timeout:g} s"


def _wait(gone: Callable[[], bool], limit: float) -> float | None:
    """Seconds until `gone()` held (polled every 0.5 s), or None after `limit` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if gone():
            return time.monotonic() - start
        time.sleep(0.5)
    return None


def hub_address(conn: Connection, host: Host) -> tuple[str, int]:
    """The `hub` Service's ClusterIP and port: where the control-plane host reaches the hub."""
    service = kube.read_json(conn, host, kube.kubectl(host, "get", "service", "hub", "-n", host.vars["namespace"],
                                                      "-o", "json"))
    return service["spec"]["clusterIP"], int(service["spec"]["ports"][0]["port"])


def hub_call(conn: Connection, address: tuple[str, int], method: str, path: str, token: str) -> tuple[int, bytes]:
    """One HTTP request to the hub's API through a direct-tcpip channel of the SSH connection,
    opened by the control-plane host to `address`: the token travels only inside SSH."""
    channel = conn.client.get_transport().open_channel("direct-tcpip", address, ("127.0.0.1", 0), timeout=10)
    channel.settimeout(60)
    http = HTTPConnection(*address)
    http.sock = channel
    try:
        http.request(method, path, headers={"Authorization": f"token {token}"})
        response = http.getresponse()
        return response.status, response.read()
    finally:
        http.close()


def stop_through_hub(hub: Hub, server_url: str, temporary: bool) -> Check:
    """Stop the server with the hub's API, reached from the control-plane host, and wait until
    the hub no longer lists it (a pod may take its grace period). A `temporary` user (what
    BinderHub creates for each launch with authentication off: launcher.py, create_user) is then
    deleted too, as the chart's culler would do later (cull.users)."""
    name, _, server = urlsplit(server_url).path.rstrip("/").rsplit("/user/", 1)[-1].partition("/")
    if not re.fullmatch(r"[\w@+-][\w.@+-]*", name) or not re.fullmatch(r"[\w.@+-]*", server):
        return Check("server stop", False, f"no user's server in ready.url {server_url}")
    api = f"{hub.host.vars['hub_base_url']}hub/api/users/{name}"
    try:
        conn = hub.connect()
        address = hub_address(conn, hub.host)
        status, _ = hub_call(conn, address, "DELETE", f"{api}/servers/{server}" if server else f"{api}/server",
                             hub.token)
        if status not in (202, 204):
            return Check("server stop", False, f"hub at {address[0]}:{address[1]}: HTTP {status}")

        def gone() -> bool:
            code, body = hub_call(conn, address, "GET", api, hub.token)
            return code == 404 or (code == 200 and server not in (json.loads(body).get("servers") or {}))
        waited = _wait(gone, STOP_WAIT)
        deleted = hub_call(conn, address, "DELETE", api, hub.token)[0] if temporary and waited is not None else None
    except (ConnectError, RemoteError) as exc:
        return Check("server stop", False, f"cannot ask the hub from the control plane: {exc}")
    except (paramiko.SSHException, OSError, HTTPException, ValueError, KeyError, IndexError) as exc:
        return Check("server stop", False, f"the hub Service is not reachable from {hub.host.name} over SSH: "
                                           f"{type(exc).__name__}: {exc} (TCP forwarding must be allowed)")
    if waited is None:
        return Check("server stop", False, f"hub: HTTP {status}, still listed after {STOP_WAIT} s")
    detail = f"hub: HTTP {status}, gone from the hub after {waited:.1f} s"
    if deleted is None:
        return Check("server stop", True, detail)
    return Check("server stop", deleted in (204, 404), f"{detail}; temporary user {name} deleted: HTTP {deleted}")


def stop_through_server(http: requests.Session, url: str, token: str) -> Check:
    """Ask the server itself to shut down, then wait until it no longer answers (the hub
    may list it until it next polls its servers)."""
    import requests

    auth = {"Authorization": f"token {token}"}
    try:
        stopped = http.post(f"{url}api/shutdown", headers=auth, timeout=30)
        if not stopped.ok:
            return Check("server stop", False, f"server: HTTP {stopped.status_code}")

        def gone() -> bool:
            try:
                return http.get(f"{url}api", headers=auth, timeout=10, allow_redirects=False).status_code != 200
            except requests.ConnectionError:
                return True
        waited = _wait(gone, STOP_WAIT)
    except requests.RequestException as exc:
        return Check("server stop", False, type(exc).__name__)
    if waited is None:
        return Check("server stop", False, f"server: HTTP {stopped.status_code}, still answering after {STOP_WAIT} s")
    return Check("server stop", True, f"server: HTTP {stopped.status_code}, stopped after {waited:.1f} s")


def use_server(http: requests.Session, ready: Event, allowed: tuple[str, ...], token: str | None,
               hub: Hub | None, kernel_timeout: float) -> list[Check]:
    """The server checks, then the stop. `token` is the user's hub token when authentication is
    on: the server is then the user's own (jupyterhub-singleuser), which ready.token does not open,
    and the token goes only to a server under `allowed`. With authentication off (None), the server
    is the notebook server BinderSpawnerMixin starts for a temporary user with
    --NotebookApp.token=ready.token (binderspawner_mixin.py get_args): that token, made by
    BinderHub for this server alone, goes to ready.url wherever it is (the hub may have a host of
    its own)."""
    import requests

    url, server_token = ready.data.get("url") or "", token or ready.data.get("token") or ""
    if token and not any(within(url, base) for base in allowed):
        checks = [Check("server url", False, f"ready.url {url} is not under {' or '.join(allowed)}: "
                                             "refused to send the token there")]
        return checks + [stop_through_hub(hub, url, temporary=False) if hub else
                         Check("server stop", False, "not stopped: no hub access from the control plane")]
    url = url if url.endswith("/") else url + "/"
    try:
        checks = check_server(http, url, server_token, kernel_timeout)
    except (requests.RequestException, ValueError) as exc:
        checks = [Check("server api", False, type(exc).__name__)]
    return checks + [stop_through_hub(hub, url, token is None) if hub else stop_through_server(http, url, server_token)]


# -- one run ------------------------------------------------------------------------------------

def smoke_run(reporter: Reporter, opts: Options, binder_url: str, allowed: tuple[str, ...], token: str | None,
              hub: Hub | None, report: Report) -> Report:
    """The whole smoke test against `binder_url`; results go to `reporter`, facts to `report`.
    `token`: the user's hub token when authentication is on, else None."""
    import requests

    say = lambda text: reporter.note(STEP, text)  # noqa: E731
    headers = {"Authorization": f"token {token}"} if token else {}
    reporter.masked.hide([token or ""])
    http = requests.Session()
    if opts.ca_bundle:  # per request: a session-wide `verify` loses to $REQUESTS_CA_BUNDLE (psf/requests#3829)
        http.verify = opts.ca_bundle
        http.request = functools.partial(http.request, verify=opts.ca_bundle)
    event = follow(http, f"{binder_url}build/{opts.repo}", headers, report, say, opts.timeout, opts.silence)
    if event and event.phase == "ready":
        reporter.masked.hide([event.data.get("token") or ""])
        started = time.monotonic()
        report.checks = use_server(http, event, allowed, token, hub, opts.kernel_timeout)
        report.checks_seconds = seconds(time.monotonic() - started)
        failed = [c for c in report.checks if not c.ok]
        report.verdict = "failed" if failed else "passed"
        report.failed_phase = "server checks" if failed else ""
        report.message = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    else:
        seen = [p.name for p in report.phases if p.name not in ("failed", "failure")]
        report.failed_phase = seen[-1] if seen else ("request" if event or report.status_code else "connect")
        if event:
            report.status_code = event.data.get("status_code")
            report.message = event.message.strip()
        report.hint = hint(report.status_code, report.message)
    for c in report.checks:
        reporter.emit(Result(STEP, f"smoke.{c.name.replace(' ', '-')}", Status.OK if c.ok else Status.FAILED, c.detail))
    emit_verdict(reporter, report)
    return report


def emit_verdict(reporter: Reporter, report: Report) -> None:
    if report.verdict == "passed":
        reporter.emit(Result(STEP, STEP, Status.OK, f"{report.repo}: built and launched (ready after "
                             f"{report.ready_seconds:.1f} s), server answered, stopped"))
        return
    code = f" ({report.status_code})" if report.status_code else ""
    attempts = (f" (after {report.launch_retries + 1} launch attempts)"
                if report.launch_retries and report.failed_phase == "launching" else "")
    detail = (f"failed in phase {report.failed_phase}{code}: {report.message}{attempts}"
              + (f"; hint: {report.hint}" if report.hint else ""))
    reporter.emit(Result(STEP, STEP, Status.FAILED, detail))


def refuse_without_token(reporter: Reporter, report: Report, advice: str = "") -> Report:
    """Authentication is on and no token is at hand: a failed result, nothing sent."""
    report.failed_phase, report.message = "request", "no token: " + AUTH_HINT + advice
    reporter.emit(Result(STEP, STEP, Status.FAILED, AUTH_HINT + advice))
    return report


def junit_xml(report: Report) -> str:
    """The report as JUnit XML: a test case per phase and per server check, the failure on the
    phase where the build failed."""
    phases = [p for p in report.phases if p.name not in ("failed", "failure")]
    build_failed = report.verdict != "passed" and report.failed_phase not in ("", "server checks")
    at = max((i for i, p in enumerate(phases) if p.name == report.failed_phase), default=None) if build_failed else None
    suite = ElementTree.Element("testsuite", name="binderhub-smoke")
    for i, p in enumerate(phases):
        case = ElementTree.SubElement(suite, "testcase", classname="build", name=p.name, time=f"{p.duration:.3f}")
        if i == at:
            ElementTree.SubElement(case, "failure", message=report.message)
    if build_failed and at is None:
        case = ElementTree.SubElement(suite, "testcase", classname="build", name=report.failed_phase, time="0.000")
        ElementTree.SubElement(case, "failure", message=report.message)
    for c in report.checks:
        case = ElementTree.SubElement(suite, "testcase", classname="server", name=c.name)
        if not c.ok:
            ElementTree.SubElement(case, "failure", message=c.detail)
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(len(suite.findall("testcase/failure"))))
    return ElementTree.tostring(suite, encoding="unicode")


@contextmanager
def reports_written(report: Report, json_path: Path | None, junit_path: Path | None,
                    reporter: Reporter) -> Iterator[Report]:
    """Write --report and --junit however the run ends (0600, secrets masked)."""
    try:
        yield report
    except Exit as exc:
        report.message = report.message or str(exc.message or "")
        raise
    except KeyboardInterrupt:
        report.message = report.message or "interrupted"
        raise
    finally:
        texts = {json_path: lambda: json.dumps(asdict(report), indent=2), junit_path: lambda: junit_xml(report)}
        for path, text in texts.items():
            if path:
                try:
                    write_private(path, reporter.masked(text()))
                except (LocalFileError, OSError) as exc:
                    reporter.write(f"cannot write {path}: {exc}")


# -- on an environment --------------------------------------------------------------------------

def _verdict_file(run: Run) -> Path:
    return run.settings.logs_dir / f"smoke-{run.env.name}.json"


def last_verdict(run: Run) -> str:
    """The verdict of the environment's last smoke test, with its time."""
    try:
        data = json.loads(_verdict_file(run).read_text())
    except (OSError, ValueError):
        return "never run (invoke smoke)"
    return f"{data['verdict']} at {data['at']}" + (f" ({data['message']})" if data.get("message") else "")


def _file_secrets(run: Run) -> dict[str, secretfile.Secret]:
    """The environment's secrets file, or nothing when it has none (smoke can run without one)."""
    return run.secrets() if run.secrets_path.exists() else {}


def user_token(secrets: dict[str, secretfile.Secret]) -> str | None:
    """The user's JupyterHub API token to send: $BHOPS_HUB_TOKEN, else the secrets file's smoke_hub_token."""
    token = secrets.get("smoke_hub_token")
    return os.environ.get(TOKEN_ENV) or (token.reveal() if token else None)


def auth_on(opts: Options, inventory_auth: bool = False) -> bool:
    """Whether authentication is on: the inventory says so, --auth, or $BHOPS_HUB_TOKEN is set."""
    return inventory_auth or opts.auth or TOKEN_ENV in os.environ


def hub_access(run: Run, host: Host, secrets: dict[str, secretfile.Secret]) -> Hub | None:
    """The hub as the control-plane host reaches it, with the binder service's token (from the
    secrets file), with which smoke stops the server it launched; None without a secrets file."""
    token = secrets.get("binder_api_token")
    return Hub(lambda: run.pool.get(host), host, token.reveal()) if token else None


def on_env(run: Run, opts: Options, report: Report, advice: str = "") -> Report:
    """smoke on `run`'s environment: its own BinderHub (verdict kept for `status`, diagnostics on
    failure), or the one --binder-url names."""
    host = run.control_plane()[0]
    own = opts.binder_url is None
    if opts.ca_bundle is None:
        opts = replace(opts, ca_bundle=inventory.ca_bundle(run.env, host))
    report.binder_url = url = opts.binder_url or check_url(values.binder_url(host), "vars.public_url")
    secrets = _file_secrets(run)
    auth = auth_on(opts, own and bool(host.vars["auth"]))
    token = user_token(secrets) if auth else None  # BinderHub without authentication ignores it
    if auth and not token:
        refuse_without_token(run.reporter, report, advice)
    elif own:
        smoke_run(run.reporter, opts, url, (values.hub_url(host),), token, hub_access(run, host, secrets), report)
        if report.verdict != "passed":
            collect_diagnostics(run, url, report, opts.ca_bundle)
    else:
        smoke_run(run.reporter, opts, url, (_root(url),), token, None, report)
    if own:
        record_verdict(run, report)
    run.failed |= report.verdict != "passed"
    return report


def collect_diagnostics(run: Run, url: str, report: Report, ca_bundle: str | None = None) -> None:
    from . import diagnostics  # requests: imported only when a failure needs the bundle

    try:
        report.diagnostics = str(diagnostics.collect(run, url, ca_bundle))
    except LocalFileError as exc:
        run.report(Result(STEP, "smoke.diagnostics", Status.FAILED, str(exc)))
        return
    run.reporter.note(STEP, f"diagnostics: {report.diagnostics}")


def record_verdict(run: Run, report: Report) -> None:
    """Keep the verdict in the logs directory's smoke-ENV.json (0600) for `invoke status`."""
    try:
        write_private(_verdict_file(run), run.reporter.masked(json.dumps({
            "verdict": report.verdict, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "message": report.message})))
    except LocalFileError as exc:
        run.report(Result(STEP, "smoke.verdict", Status.FAILED, str(exc)))


def _root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def alone(opts: Options, report: Report, reporter: Reporter) -> Report:
    """smoke against --binder-url with no inventory: the user's token from $BHOPS_HUB_TOKEN goes
    to the binder URL's host only; the server is stopped through its own API."""
    auth = auth_on(opts)
    token = user_token({}) if auth else None
    if auth and not token:
        return refuse_without_token(reporter, report)
    return smoke_run(reporter, opts, opts.binder_url, (_root(opts.binder_url),), token, None, report)


@task(name="smoke", klass=Task, help={
    "env": READ_HELP["env"] + "; not needed with --binder-url",
    "repo": f"what to build: provider/spec (default {DEFAULT_REPO})",
    "binder_url": "BinderHub to test instead of the environment's (its base URL); works without --env",
    "auth": f"authentication is on: fail at once without a token (implied by the inventory's auth or ${TOKEN_ENV})",
    "timeout": "seconds the whole build and launch may take (default 900)",
    "silence": "seconds the stream may stay silent (default 120)",
    "report": "write a JSON report (phases, verdict, server checks) to this file",
    "junit": "write a JUnit XML report to this file",
    "ca_bundle": "the CA certificate(s) (PEM) that verify https in place of the system's (default: the "
                 "inventory's vars.tls_ca_bundle)",
    **{k: READ_HELP[k] for k in ("limit", "parallel", "inventory", "accept_new_host_keys")}})
def smoke(c: Context, env=None, repo=DEFAULT_REPO, binder_url=None, auth=False, timeout=None, silence=None,
          report=None, junit=None, ca_bundle=None, limit=None, parallel=10, inventory=None,
          accept_new_host_keys=False):
    """Build a repository through BinderHub's API and prove the launched server works.

    With authentication on (vars.auth, --auth), it sends a user's JupyterHub API token, from
    $BHOPS_HUB_TOKEN or the secrets file's smoke_hub_token (docs/smoke.md says how to make one).
    """
    opts = options(repo, binder_url, auth, timeout, silence, ca_bundle)
    json_path, junit_path = check_output(report, "--report"), check_output(junit, "--junit")
    result = Report(opts.repo, opts.binder_url or "")
    if env is None:
        if not binder_url:
            raise Exit("smoke needs --env ENV (an environment of the inventory) or --binder-url URL")
        reporter = Reporter()
        with reports_written(result, json_path, junit_path, reporter):
            alone(opts, result, reporter)
        reporter.write(reporter.recap(f"smoke ({opts.binder_url})"))
        if result.verdict != "passed":
            raise Exit(code=1)
        return
    with session(c, env, "smoke", limit=limit, parallel=parallel, inventory_path=inventory,
                 accept_new_host_keys=accept_new_host_keys) as run:
        with reports_written(result, json_path, junit_path, run.reporter):
            on_env(run, opts, result)
