"""Shared fixtures: the network guard, the real charts, the lab's hosts, and running tasks as a user would."""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import io
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fabric import Connection
from invoke import Program

from fabfile import ns
from lab import charts as labcharts
from lab import hosts as labhosts

REPO = Path(__file__).resolve().parent.parent
LAB_NETWORK = ipaddress.ip_network("10.77.0.0/24")
# One test session uses the lab at a time on a machine (its bridge and subnet are fixed); another
# waits up to SESSION_WAIT s. Not /tmp/bhops-lab.lock, which may be held around pytest by hand.
SESSION_LOCK = Path("/run/lock/bhops-lab.session.lock")
SESSION_WAIT = 1800.0
_real_connect, _real_connect_ex = socket.socket.connect, socket.socket.connect_ex


def _allowed(address) -> bool:
    if not isinstance(address, tuple):
        return True  # a unix socket path
    ip = ipaddress.ip_address(address[0])
    return ip.is_loopback or ip in LAB_NETWORK


def _guarded(real):
    def connect(self, address):
        if not _allowed(address):
            raise ConnectionRefusedError(f"test guard: {address[0]} is outside the lab; refused")
        return real(self, address)
    return connect


ONE_WORKER = {"test_labbinder.py"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under xdist (-n): every test on the lab's hosts (the *_lab.py files) in one worker, in turn,
    as the lab is one per machine; the tests of a file in ONE_WORKER on one worker, as they share
    costly module fixtures (a BinderHub and a JupyterHub started once); the other tests spread over
    the other workers meanwhile."""
    from xdist.scheduler import LoadScopeScheduling

    class LabScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            if path.endswith("_lab.py"):
                return "lab"
            return path if path.rpartition("/")[2] in ONE_WORKER else nodeid
    return LabScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def network_guard():
    """Any connection outside the lab's network and loopback fails the test that makes it."""
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = _real_connect, _real_connect_ex


@contextlib.contextmanager
def session_lock(path: Path = SESSION_LOCK, wait: float = SESSION_WAIT):
    """Hold the machine's lab lock (flock on `path`), waiting up to `wait` s for another session."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = lock.read().strip() or "unknown"
                    pytest.fail(f"the lab is busy: another test session ({holder}) has held {path} for over "
                                f"{wait:.0f} s; wait for it to end", pytrace=False)
                time.sleep(1)
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}, lab state {labhosts.state_dir()}\n")
        lock.flush()
        yield


@pytest.fixture(scope="session")
def real_charts() -> Path:
    """The directory holding the real packaged BinderHub charts (see `charts_directory`)."""
    return charts_directory()


def charts_directory(cache: Path | None = None) -> Path:
    """The real charts: $BHOPS_CHARTS, else the lab's chart cache (scripts/bootstrap fills it: from
    a local copy, or with `helm pull`). The tests never fetch them; failing says how to fix it."""
    cache = cache or labhosts.state_dir() / "charts"
    try:
        return labcharts.in_directory(labcharts.configured() or cache)[0].parent
    except labcharts.ChartsError as exc:
        fix = "" if labcharts.configured() else (
            f"; the lab's chart cache {cache} is incomplete: run scripts/bootstrap (it fills it), or export "
            f"{labcharts.VARIABLE} as the directory holding the real charts")
        pytest.fail(str(exc) + fix, pytrace=False)


@pytest.fixture(scope="session")
def lab(real_charts):
    """The lab's hosts for the session, which holds the machine's lab lock: brought up here (and
    taken down at the end if this session made them) with its chart repository serving
    `real_charts`; a lab of another checkout fails the tests."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    with session_lock():
        hosts = labhosts.status()
        was_up = bool(hosts) and all(h.running for h in hosts)
        try:
            labhosts.up(nodes=3, charts_dir=real_charts)
        except labhosts.LabError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield labhosts.state_dir()
        if not was_up and not os.environ.get("BHOPS_KEEP_LAB"):
            labhosts.down()


def run_task(*args: str) -> tuple[int, str]:
    """Run `invoke ARGS...` in this process, capturing its output; (exit code, output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            Program(namespace=ns, name="binderhub-ops", binary="invoke").run(["invoke", *args])
        except SystemExit as exc:
            return exc.code or 0, out.getvalue()
    return 0, out.getvalue()


@pytest.fixture(scope="session")
def lab_secrets(lab, tmp_path_factory):
    """A secrets directory kept for the whole session, so deploys there stay no-ops."""
    return tmp_path_factory.mktemp("lab-secrets")


@pytest.fixture
def deployed(lab_secrets, monkeypatch):
    """The whole lab deployed (every stage but smoke): a no-op when other tests left it so."""
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(lab_secrets))
    code, out = run_task("deploy", "--env", "lab", "--skip-smoke", "--break-lock")
    assert code == 0, out
    return lab_secrets


@pytest.fixture
def cli(capsys):
    """Run `invoke ARGS...` in this process (under the guard); return (exit code, stdout+stderr)."""
    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            Program(namespace=ns, name="binderhub-ops", binary="invoke").run(["invoke", *args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out = capsys.readouterr()
        return code, out.out + out.err
    return run


_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER = 1, 36


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value)


def die_with_parent() -> None:
    """A Popen preexec_fn: the child gets SIGTERM when the test process dies, however it dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _descendants(known: frozenset[int] = frozenset()) -> dict[int, tuple[str, str]]:
    """This process's descendants, not looking under those `known` (e.g. the lab's hosts, whose
    own processes come and go): PID -> (state, command)."""
    parents, info = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents.setdefault(int(fields[1]), []).append(pid)
        info[pid] = (fields[0], command.strip()[:120])
    found, todo = {}, [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in known:
                found[child] = info[child]
                todo.append(child)
    return found


@contextlib.contextmanager
def no_process_left(timeout: float = 10):
    """Fail when processes started inside are still alive at the end, orphans included (this
    process is their subreaper meanwhile); whatever is left is stopped by PID, SIGTERM then
    SIGKILL after `timeout` s, pass or fail."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    before = frozenset(_descendants())
    try:
        yield
    finally:
        left = {pid: cmd for pid, (state, cmd) in _descendants(before).items() if state != "Z"}
        _stop_pids(list(left), timeout)
        _prctl(_PR_SET_CHILD_SUBREAPER, 0)
    assert not left, "processes left behind (now stopped): " + "; ".join(f"{p} {c}" for p, c in left.items())


def _stop_pids(pids: list[int], timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while (alive := [p for p, (state, _) in _descendants().items() if p in pids and state != "Z"]) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive:
            break
    for pid in pids:  # orphans that became this process's children: reap them
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def stop(proc: subprocess.Popen, timeout: float = 10) -> int:
    """Stop a process this test started, by its PID: SIGTERM, then SIGKILL after `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def ssh(host: str, command: str, check: bool = True) -> str:
    """Run a shell command on a lab host with plain OpenSSH, to see the host as it is."""
    proc = subprocess.run(
        ["ssh", "-F", str(labhosts.state_dir() / "ssh_config"), host, command],
        capture_output=True, text=True, timeout=120)
    if check and proc.returncode:
        raise AssertionError(f"ssh {host} {command!r}: rc {proc.returncode}: {proc.stderr}")
    return proc.stdout


def runner_status() -> dict:
    """What the lab's kubelet (lab.apps.runner) runs ("running": POD/CONTAINER -> pid, argv, ip, log)
    and why other pods wait ("waiting"), from its status.json on the control plane."""
    return json.loads(ssh("lab-node1", "cat /var/lib/labapps/status.json"))


def until(what: str, check, timeout: float = 30):
    """`check()`'s first true answer, asked every 0.3 s; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return found


def forget_hub_database(restart: bool = True) -> None:
    """Start the hub over with an empty database, at once (`restart`: its pod is replaced) or when
    its pod is next replaced. JupyterHub's `--upgrade-db`
    is one way: after the current chart's JupyterHub 6 the pinned chart's JupyterHub 1.3 cannot read
    the database ("Can't locate revision"). An operator going back restores the copy JupyterHub made
    before upgrading (jupyterhub.sqlite.<date>); the tests need no user of before. The database is
    in claim hub-db-dir's volume, which the lab keeps in /var/lib/labapps/volumes/<volume> (lab.apps.runner)."""
    ssh("lab-node1", "sudo rm -f /var/lib/labapps/volumes/$(kubectl get pvc hub-db-dir -n binder "
                     "-o jsonpath={.spec.volumeName})/jupyterhub.sqlite"
                     + (" && kubectl delete pod -n binder -l component=hub --wait=false >/dev/null" if restart else ""))


def lab_ca() -> str:
    """The lab CA's certificate (its proxy's and registry's issuer), for clients outside the lab."""
    return str(labhosts.state_dir() / "ca.crt")


def lab_inventory(directory: Path, hosts: dict | None = None, **variables) -> Path:
    """A copy of the lab's inventory in `directory`, with other hosts/roles or variables."""
    data = yaml.safe_load((labhosts.state_dir() / "hosts.yaml").read_text())
    lab = data["environments"]["lab"]
    lab["ssh_config"] = str(labhosts.state_dir() / "ssh_config")
    lab["vars"] = {**lab.get("vars", {}), **variables}
    lab["vars"]["metallb_manifest"] = str(REPO / lab["vars"]["metallb_manifest"])  # relative to the repo
    if hosts is not None:
        lab["hosts"] = hosts
    path = directory / "hosts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def registry_inventory(directory: Path, cli, monkeypatch, **variables) -> Path:
    """The lab's inventory with builds pushed to a registry (what dind and pink need: the kubelet cannot
    run what they build in their own engine), its password made part of the secrets file by secrets.init.
    The lab's BinderHub stands in for the push (lab.apps.labbinder): the lab's registry only names it."""
    monkeypatch.setenv("BHOPS_REGISTRY_PASSWORD", "lab-registry-password")
    path = lab_inventory(directory, use_registry=True, registry_url="https://10.77.0.6:5000",
                         registry_username="lab", **variables)
    code, out = cli("secrets.init", "--env", "lab", "--inventory", str(path))
    assert code == 0, out
    return path


@pytest.fixture
def commands(monkeypatch):
    """Every command line the tasks send to a host during the test."""
    sent: list[str] = []
    real = Connection.run

    def record(self, command, **kwargs):
        sent.append(command)
        return real(self, command, **kwargs)
    monkeypatch.setattr(Connection, "run", record)
    return sent
