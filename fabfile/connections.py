"""One SSH connection per host per run, with host keys checked and Nagle's algorithm off."""
from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import paramiko
from fabric import Config, Connection

from .inventory import Host


class ConnectError(Exception):
    """A host could not be used: `unreachable` is True for network failures."""

    def __init__(self, message: str, unreachable: bool):
        super().__init__(message)
        self.unreachable = unreachable


def _load_known_hosts(conn: Connection, accept_new: bool) -> None:
    """Trust only known host keys (ssh's own files and UserKnownHostsFile), unless told."""
    client = conn.client
    client.load_system_host_keys()
    for path in conn.ssh_config.get("userknownhostsfile", "").split():
        path = os.path.expanduser(path)
        if os.path.exists(path):
            client.load_host_keys(path)
    client.set_missing_host_key_policy(
        paramiko.AutoAddPolicy() if accept_new else paramiko.RejectPolicy())


#: What paramiko says when the server stops answering (banner, key exchange, authentication).
_STALLED = ("Authentication timeout", "Error reading SSH protocol banner", "timed out waiting for key")


def _timeouts(config: Config, seconds: float) -> dict:
    """Connection arguments making connect_timeout bound each wait of the SSH handshake too, not
    only the TCP connect (key files come from the config once: Fabric merges them itself)."""
    kwargs = {k: v for k, v in config.connect_kwargs.items() if k != "key_filename"}
    return dict(connect_timeout=seconds, connect_kwargs={**kwargs, "banner_timeout": seconds, "auth_timeout": seconds})


@contextmanager
def _deadline(conn: Connection, seconds: float) -> Iterator[threading.Event]:
    """Cut the connection if it is not authenticated within `seconds`, however many keys it
    tries; the event says it was cut."""
    cut = threading.Event()

    def cut_off() -> None:
        transport = conn.client.get_transport()
        if transport is not None and not transport.is_authenticated():
            cut.set()
            transport.close()
    timer = threading.Timer(seconds, cut_off)
    timer.start()
    try:
        yield cut
    finally:
        timer.cancel()


def _describe(conn: Connection, exc: Exception, timeout: float, stalled: bool) -> ConnectError:
    """What went wrong, from the exception and how far the handshake got (paramiko re-raises
    whatever the last key it tried left, e.g. "No existing session" once the server hung up)."""
    target = f"{conn.user}@{conn.host}" + (f":{conn.port}" if conn.port != 22 else "")
    transport = conn.client.get_transport()
    authenticating = transport is not None and transport.initial_kex_done and not transport.is_authenticated()
    if isinstance(exc, paramiko.BadHostKeyException):
        return ConnectError(
            f"host key of {target} does not match known_hosts: if the host was rebuilt, "
            "verify its new key and replace the old entry; otherwise do not connect", False)
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return ConnectError(
            f"unknown host key for {target}: add its verified key to known_hosts, "
            "or pass --accept-new-host-keys to trust it for this run", False)
    if stalled or isinstance(exc, paramiko.SSHException) and any(s in str(exc) for s in _STALLED):
        return ConnectError(f"timed out in the SSH handshake with {target}: the server accepted the connection, "
                            f"then stopped answering (connect_timeout {timeout:g} s)", True)
    if authenticating and not transport.is_active():
        return ConnectError(f"{target} closed the connection during authentication: no key offered was "
                            "accepted before it gave up; check the user and key (and sshd's MaxAuthTries)", False)
    if authenticating or isinstance(exc, paramiko.AuthenticationException):
        return ConnectError(f"authentication failed for {target}: check the user and key", False)
    return ConnectError(f"cannot reach {target}: {exc or type(exc).__name__}", True)


class Pool:
    """Opens each host's connection once, on first use, and remembers failures."""

    def __init__(self, accept_new_host_keys: bool = False):
        self.accept_new_host_keys = accept_new_host_keys
        self.opened: Counter[str] = Counter()
        self._conns: dict[str, Connection] = {}
        self._errors: dict[str, ConnectError] = {}
        self._lock = threading.Lock()

    def _connection(self, host: Host) -> Connection:
        config = Config(runtime_ssh_path=str(host.ssh_config) if host.ssh_config else None)
        gateway = None
        if host.gateway:
            gateway = Connection(host.gateway, config=config, **_timeouts(config, host.connect_timeout))
            _load_known_hosts(gateway, self.accept_new_host_keys)
        conn = Connection(host.hostname, user=host.user, port=host.port, config=config, gateway=gateway,
                          **_timeouts(config, host.connect_timeout))
        _load_known_hosts(conn, self.accept_new_host_keys)
        return conn

    def get(self, host: Host) -> Connection:
        """The open connection to `host`; raises ConnectError when it cannot be had."""
        with self._lock:
            if host.name in self._errors:
                raise self._errors[host.name]
            conn = self._conns.get(host.name)
        if conn is not None:
            return conn
        conn = self._connection(host)
        try:
            with _deadline(conn, 2 * host.connect_timeout) as stalled:  # the TCP connect, then the rest
                conn.open()
        except Exception as exc:  # paramiko and socket raise many kinds; all mean "not usable"
            error = _describe(conn, exc, host.connect_timeout, stalled.is_set())
            conn.close()
            with self._lock:
                self._errors[host.name] = error
            raise error from None
        sock = conn.transport.sock
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns[host.name] = conn
            self.opened[host.name] += 1
        return conn

    def close(self) -> None:
        """Close every connection this pool opened."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
