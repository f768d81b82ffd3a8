"""Shared fixtures: the network guard, the lab's hosts, and running tasks as a user would."""
from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from fabric import Connection
from invoke import Program

from fabfile import labhosts, ns

REPO = Path(__file__).resolve().parent.parent
LAB_NETWORK = ipaddress.ip_network("10.77.0.0/24")
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


@pytest.fixture(scope="session", autouse=True)
def network_guard():
    """Any connection outside the lab's network and loopback fails the test that makes it."""
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = _real_connect, _real_connect_ex


@pytest.fixture(scope="session")
def lab():
    """The lab's hosts, brought up for the session (and taken down if this session made them)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    was_up = all(h.running for h in labhosts.status()) if labhosts.status() else False
    labhosts.up(nodes=3)
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
    path.write_text(yaml.safe_dump(data))
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
