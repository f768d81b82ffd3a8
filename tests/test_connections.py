"""Opening SSH connections against tiny misbehaving servers on 127.0.0.1: timeouts and messages."""
from __future__ import annotations

import socket
import threading
import time

import paramiko
import pytest

from fabfile.connections import ConnectError, Pool
from fabfile.inventory import Host


class _Server(paramiko.ServerInterface):
    """Offers public-key auth, then `behaviour`: "stall" never answers, "close" hangs up."""

    def __init__(self, behaviour: str, release: threading.Event, transport: paramiko.Transport):
        self.behaviour, self.release, self.transport = behaviour, release, transport

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if self.behaviour == "close":
            self.transport.close()
        else:
            self.release.wait(30)
        return paramiko.AUTH_FAILED


@pytest.fixture
def ssh_server(tmp_path, monkeypatch):
    """Start a server on a free loopback port; return a Host that reaches it with two keys."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys of the user's
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    host_key = paramiko.RSAKey.generate(2048)
    release, threads, transports = threading.Event(), [], []

    def serve(behaviour: str) -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        transport = paramiko.Transport(sock)
        transports.append(transport)
        transport.add_server_key(host_key)
        transport.start_server(server=_Server(behaviour, release, transport))

    def start(behaviour: str) -> Host:
        threads.append(threading.Thread(target=serve, args=(behaviour,), daemon=True))
        threads[-1].start()
        keys = []
        for name in ("k1", "k2"):
            paramiko.RSAKey.generate(2048).write_private_key_file(str(tmp_path / name))
            keys.append(f"  IdentityFile {tmp_path / name}")
        config = tmp_path / "ssh_config"
        config.write_text("\n".join([f"Host stall\n  HostName 127.0.0.1\n  Port {listener.getsockname()[1]}",
                                     "  User deploy", *keys, ""]))
        return Host("stall", "stall", None, None, False, config, None, 1, 10, ("node",), {})
    yield start
    release.set()
    listener.close()
    for transport in transports:
        transport.close()
    for thread in threads:
        thread.join(5)


def _open(host: Host) -> tuple[float, ConnectError]:
    pool = Pool(accept_new_host_keys=True)
    start = time.monotonic()
    with pytest.raises(ConnectError) as failed:
        pool.get(host)
    pool.close()
    return time.monotonic() - start, failed.value


def test_a_server_stalling_in_authentication_times_out_within_connect_timeout(ssh_server):
    took, error = _open(ssh_server("stall"))
    assert took < 5, f"took {took:.1f}s with connect_timeout 1"
    assert "timed out in the SSH handshake" in str(error), str(error)
    assert "authentication failed" not in str(error)


def test_a_server_hanging_up_during_authentication_says_so(ssh_server):
    took, error = _open(ssh_server("close"))
    assert "No existing session" not in str(error)
    assert "closed the connection during authentication" in str(error), str(error)
