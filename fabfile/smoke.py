"""The smoke test: a Binder build through BinderHub's REST API, followed live, and the launched
server proven to work (runbook step 14)."""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit
from xml.etree import ElementTree

import requests
import websocket

from . import diagnostics, secretfile, values
from .eventstream import Event, events, lines
from .inventory import Host
from .results import Result, Status
from .session import Run, host_task

DEFAULT_REPO = "gh/binder-examples/requirements/HEAD"
LOGS = Path(__file__).resolve().parent.parent / "logs"
PROGRESS_EVERY = 30  # seconds between progress lines during a long phase
STEP = "smoke"

TOKEN_ENV = "BHOPS_HUB_TOKEN"
AUTH_HINT = (f"authentication is on: set ${TOKEN_ENV} (or smoke_hub_token in the secrets file) to a JupyterHub "
             "API token made on the hub's /hub/token page with the scopes access:services!service=binder and "
             "access:servers!user=<its user>")

HINTS = [  # (status code, words in the message, hint)
    (429, "", "rate limited: raise config.RateLimiter.limit in the chart values (0 disables it) or "
              "send a build token; a smoke test run often meets this limit"),
    (302, "", AUTH_HINT),
    (403, " is not allowed.", "this token's user may not use BinderHub: " + AUTH_HINT),
    (403, "", "BinderHub refused this client: with authentication on, see $BHOPS_HUB_TOKEN in docs/smoke.md; "
              "without, the client's network may be in config.BinderHub.ban_networks"),
    (500, "Failed to create temporary user", "the binder's hub token does not match the hub: both come "
          "from binder_api_token; run helm.upgrade so binder and hub get the same one"),
    (500, "Internal Server Error", "BinderHub cannot reach JupyterHub: check hub_url, the hub pod, and that "
          "proxy-public holds the floating IP (cluster.floating-ip)"),
    (500, "Spawn failed", "JupyterHub could not start the server: see the hub's logs in the diagnostics"),
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

    def phase(self, name: str, at: float) -> Phase:
        if self.phases:
            self.phases[-1].duration = round(max(0.0, at - self.phases[-1].start), 3)
        self.phases.append(Phase(name, round(at, 3)))
        return self.phases[-1]


def hint(status: int | None, message: str) -> str:
    return next((h for code, words, h in HINTS if code == status and words in message), "")


def follow(http: requests.Session, url: str, headers: dict, report: Report, say: Callable[[str], None],
           timeout: float, silence: float) -> Event | None:
    """Read the build stream until `ready` or `failed` (then close it); None when it went silent
    or ran out of time (the report says which)."""
    start = time.monotonic()
    last_note = start
    try:
        with http.get(url, headers={**headers, "Accept": "text/event-stream"}, stream=True,
                      timeout=(10, silence), allow_redirects=False) as response:
            if response.is_redirect:  # BinderHub sends a browser without a valid token to log in
                where = urlsplit(response.headers["Location"])
                report.status_code = response.status_code
                report.message = (f"redirected to {where.scheme}://{where.netloc}{where.path} to log in: "
                                  "no token, or one the hub does not know")
                return None
            if response.status_code != 200:
                report.status_code, report.message = response.status_code, f"HTTP {response.status_code}"
                return None
            for event in events(lines(response.iter_content(chunk_size=None))):
                now = time.monotonic() - start
                if event and (not report.phases or report.phases[-1].name != event.phase):
                    report.phase(event.phase, now)
                    say(f"{event.phase} ({now:.1f} s)")
                if event and report.phases:
                    report.phases[-1].messages += 1
                if event and (event.phase == "ready" or event.failed):
                    report.phases[-1].duration = round(now - report.phases[-1].start, 3)
                    return event
                if now > timeout:
                    report.message = f"no ready within the overall timeout of {timeout:g} s"
                    return None
                if time.monotonic() - last_note > PROGRESS_EVERY and report.phases:
                    last_note = time.monotonic()
                    p = report.phases[-1]
                    say(f"still {p.name}: {now - p.start:.0f} s, {p.messages} messages")
    except (requests.ConnectionError, requests.Timeout) as exc:
        silent = "Read timed out" in str(exc)
        report.message = (f"the stream went silent for {silence:g} s" if silent
                          else f"cannot reach {url}: {type(exc).__name__}")
        return None
    report.message = "the stream ended without ready or failed"
    return None


def check_server(http: requests.Session, url: str, token: str, kernel_timeout: float) -> list[Check]:
    """The launched server answers its API, starts a kernel that reaches idle, deletes it."""
    auth = {"Authorization": f"token {token}"}
    checks = []
    api = http.get(f"{url}api", headers=auth, timeout=10)
    version = api.json().get("version") if api.ok else None
    checks.append(Check("server api", bool(version), f"HTTP {api.status_code}, version {version}"))
    if not version:
        return checks
    kernel = http.post(f"{url}api/kernels", headers=auth, json={}, timeout=30)
    if not kernel.ok:
        return checks + [Check("kernel start", False, f"HTTP {kernel.status_code}")]
    kernel_id = kernel.json()["id"]
    state = kernel_status(url, kernel_id, token, kernel_timeout)
    checks.append(Check("kernel idle", state == "idle", f"kernel_info answered, execution_state {state}"
                        if state == "idle" else state))
    deleted = http.delete(f"{url}api/kernels/{kernel_id}", headers=auth, timeout=30)
    checks.append(Check("kernel delete", deleted.status_code == 204, f"HTTP {deleted.status_code}"))
    return checks


def kernel_status(url: str, kernel_id: str, token: str, timeout: float) -> str:
    """Ask the kernel for kernel_info over its websocket, as a notebook does, and return the
    execution_state it reports when done ("idle"), or what went wrong. A kernel nobody has
    talked to stays "starting" in the REST API, so only a real round trip proves it works."""
    ws_url = "ws" + url[len("http"):] + f"api/kernels/{kernel_id}/channels"
    msg_id = uuid.uuid4().hex
    request = {"header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "smoke",
                          "session": uuid.uuid4().hex, "date": "", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell", "buffers": []}
    deadline = time.monotonic() + timeout
    try:
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=timeout)
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


def stop_server(http: requests.Session, url: str, token: str, hub: tuple[str, str] | None) -> Check:
    """Stop the server: through the hub's API when a hub token is at hand (the hub stops it and
    forgets it at once), else by asking the server itself to shut down."""
    try:
        if hub:
            hub_url, hub_token = hub
            name, _, server = url.rstrip("/").rsplit("/user/", 1)[1].partition("/")
            path = f"users/{name}/servers/{server}" if server else f"users/{name}/server"
            stopped = http.delete(f"{hub_url}hub/api/{path}",
                                  headers={"Authorization": f"token {hub_token}"}, timeout=60)
            return Check("server stop", stopped.status_code in (202, 204), f"hub: HTTP {stopped.status_code}")
        stopped = http.post(f"{url}api/shutdown", headers={"Authorization": f"token {token}"}, timeout=30)
    except requests.RequestException as exc:
        return Check("server stop", False, type(exc).__name__)
    return Check("server stop", stopped.ok, f"server: HTTP {stopped.status_code}")


def junit_xml(report: Report) -> str:
    """The report as JUnit XML: one test case per phase and per server check."""
    suite = ElementTree.Element("testsuite", name="binderhub-smoke",
                                tests=str(len(report.phases) + len(report.checks)))
    for p in report.phases:
        case = ElementTree.SubElement(suite, "testcase", classname="build", name=p.name, time=f"{p.duration:.3f}")
        if p.name in ("failed", "failure"):
            ElementTree.SubElement(case, "failure", message=report.message)
    for c in report.checks:
        case = ElementTree.SubElement(suite, "testcase", classname="server", name=c.name)
        if not c.ok:
            ElementTree.SubElement(case, "failure", message=c.detail)
    if report.verdict != "passed" and report.failed_phase and not any(p.name == "failed" for p in report.phases):
        case = ElementTree.SubElement(suite, "testcase", classname="build", name=report.failed_phase)
        ElementTree.SubElement(case, "failure", message=report.message)
    return ElementTree.tostring(suite, encoding="unicode")


def _verdict_file(env: str) -> Path:
    return LOGS / f"smoke-{env}.json"


def last_verdict(env: str) -> str:
    """The verdict of the environment's last smoke test, with its time."""
    try:
        data = json.loads(_verdict_file(env).read_text())
    except (OSError, ValueError):
        return "never run (invoke smoke)"
    return f"{data['verdict']} at {data['at']}" + (f" ({data['message']})" if data.get("message") else "")


def smoke_run(run: Run, repo: str, binder_url: str, timeout: float, silence: float, kernel_timeout: float,
              hub_token: str | None, hub: tuple[str, str] | None = None) -> Report:
    """The whole smoke test on `run`'s environment; results go to the run's reporter."""
    report = Report(repo, binder_url)
    say = lambda text: run.reporter.note(STEP, text)  # noqa: E731
    headers = {"Authorization": f"token {hub_token}"} if hub_token else {}
    if hub_token:
        run.reporter.hide([hub_token])
    http = requests.Session()
    event = follow(http, f"{binder_url}build/{repo}", headers, report, say, timeout, silence)
    if event and event.phase == "ready":
        url, token = event.data["url"], event.data["token"]
        run.reporter.hide([token])
        started = time.monotonic()
        try:
            report.checks = check_server(http, url, hub_token or token, kernel_timeout)
        except (requests.RequestException, ValueError) as exc:
            report.checks.append(Check("server api", False, type(exc).__name__))
        finally:
            report.checks.append(stop_server(http, url, hub_token or token, hub))
            report.checks_seconds = round(time.monotonic() - started, 3)
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
        run.reporter.emit(Result(STEP, f"smoke.{c.name.replace(' ', '-')}", Status.OK if c.ok else Status.FAILED, c.detail))
    if report.verdict == "passed":
        run.reporter.emit(Result(STEP, STEP, Status.OK, f"{repo}: built, launched, server answered, stopped "
                                 f"in {sum(p.duration for p in report.phases):.1f} s"))
    else:
        code = f" ({report.status_code})" if report.status_code else ""
        detail = f"failed in phase {report.failed_phase}{code}: {report.message}" + (f"; hint: {report.hint}" if report.hint else "")
        run.reporter.emit(Result(STEP, STEP, Status.FAILED, detail))
    LOGS.mkdir(exist_ok=True)
    _verdict_file(run.env.name).write_text(run.reporter.masked(json.dumps({
        "verdict": report.verdict, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "message": report.message})))
    return report


def _file_secrets(run: Run) -> dict[str, secretfile.Secret]:
    """The environment's secrets file, or nothing when it has none (smoke can run without one)."""
    return run.secrets() if secretfile.path_for(run.env.name).exists() else {}


def user_token(run: Run) -> str | None:
    """The user's JupyterHub API token to send: $BHOPS_HUB_TOKEN, else the secrets file's smoke_hub_token."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    token = _file_secrets(run).get("smoke_hub_token")
    return token.reveal() if token else None


def needs_token(run: Run, host: Host, token: str | None, advice: str = "") -> bool:
    """Whether authentication is on and no token is at hand (then a failed result says so)."""
    if host.vars["auth"] and not token:
        run.reporter.emit(Result(STEP, STEP, Status.FAILED, AUTH_HINT + advice))
        return True
    return False


def hub_access(run: Run) -> tuple[str, str] | None:
    """The hub's public URL and the binder service's token (from the secrets file), with which
    smoke stops the server it launched; None when there is no secrets file."""
    token = _file_secrets(run).get("binder_api_token")
    return (values.hub_url(run.control_plane()[0]), token.reveal()) if token else None


@host_task(STEP, name="smoke", changes=False, help={
    "repo": f"what to build: provider/spec (default {DEFAULT_REPO})",
    "timeout": "seconds the whole build and launch may take (default 900)",
    "silence": "seconds the stream may stay silent (default 120)",
    "report": "write a JSON report (phases, verdict, server checks) to this file",
    "junit": "write a JUnit XML report to this file",
    "binder_url": "BinderHub to test instead of the environment's (its base URL)"})
def smoke(run: Run, repo=DEFAULT_REPO, timeout=900, silence=120, report=None, junit=None, binder_url=None):
    """Build a repository through BinderHub's API and prove the launched server works.

    With authentication on (vars.auth), it sends a user's JupyterHub API token, from
    $BHOPS_HUB_TOKEN or the secrets file's smoke_hub_token (docs/smoke.md says how to make one).
    """
    host = run.control_plane()[0]
    url = binder_url or values.binder_url(host)
    url = url if url.endswith("/") else url + "/"
    token = user_token(run)
    if not binder_url and needs_token(run, host, token):
        return
    hub = None if binder_url else hub_access(run)
    result = smoke_run(run, repo.strip("/"), url, float(timeout), float(silence), 60.0, token, hub)
    if result.verdict != "passed" and not binder_url:
        result.diagnostics = str(diagnostics.collect(run, url))
        run.reporter.note(STEP, f"diagnostics: {result.diagnostics}")
    if report:
        Path(report).write_text(run.reporter.masked(json.dumps(asdict(result), indent=2)))
    if junit:
        Path(junit).write_text(run.reporter.masked(junit_xml(result)))
