"""Steps on many hosts at once, with real threads and plain step functions: no host needed."""
from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace

import pytest

from fabfile import lock, session
from fabfile.results import Reporter, Result, Status
from fabfile.session import Run


class _Pool:
    """Hands every host the same stand-in connection."""

    def get(self, host):
        return object()


def _run() -> Run:
    """A run on environment "t" whose only host, "cp", holds every role."""
    env = SimpleNamespace(name="t", with_role=lambda role: (SimpleNamespace(name="cp"),))
    return Run(env=env, pool=_Pool(), reporter=Reporter(stream=io.StringIO()))


def test_a_step_that_raises_fails_its_host_and_the_task_waits_for_the_others():
    finished: dict[str, float] = {}

    started = threading.Event()

    def step(conn, host):
        if host.name == "bad":
            started.wait(5)
            raise KeyError("docker_mirrors")
        started.set()
        time.sleep(1)
        finished[host.name] = time.monotonic()
        return Result(host.name, "s", Status.OK)

    run = _run()
    results = {}
    returned = {}

    def task():
        results["out"] = run.each([SimpleNamespace(name="bad"), SimpleNamespace(name="slow")], session.step("s")(step))
        returned["at"] = time.monotonic()
    worker = threading.Thread(target=task)
    worker.start()
    worker.join(10)
    assert "at" in returned, "the task raised instead of returning the failed host's result"
    assert finished and returned["at"] >= finished["slow"], "the task returned while a step was still running"
    bad, slow = results["out"]
    assert (bad.host, bad.status) == ("bad", Status.FAILED)
    assert bad.detail == "unexpected KeyError: 'docker_mirrors'"
    assert (slow.host, slow.status) == ("slow", Status.OK)
    assert "Traceback" not in run.reporter.stream.getvalue()


def test_an_error_while_reporting_still_waits_for_the_steps_under_way():
    started, finished = threading.Event(), threading.Event()

    def step(conn, host):
        if host.name == "slow":
            started.set()
            time.sleep(1)
            finished.set()
        started.wait(5)  # the fast host ends once the slow one is under way
        return host.name

    def on_done(out):
        raise BrokenPipeError("stdout closed")
    run = _run()
    try:
        run._parallel([SimpleNamespace(name="fast"), SimpleNamespace(name="slow")], "s", step, {}, on_done=on_done)
    except BrokenPipeError:
        pass
    assert finished.is_set(), "returned while the other host's step was still under way"


def test_the_lock_is_given_back_however_the_body_ends_and_a_lost_connection_is_reported(monkeypatch):
    run = _run()
    monkeypatch.setattr(lock, "acquire", lambda conn, host, env, break_lock: ("token", "took the deploy lock"))

    def lost(conn, host, token):
        raise EOFError()
    monkeypatch.setattr(lock, "release", lost)
    with pytest.raises(KeyError):
        with lock.held(run) as held:
            assert held.held
            raise KeyError("a failing body")
    assert [(r.step, r.status) for r in run.reporter.results] == [("deploy.lock", Status.OK),
                                                                   ("deploy.lock", Status.UNREACHABLE)]
    assert "the deploy lock stays until it expires (60 min)" in run.reporter.stream.getvalue()


def test_a_lock_that_cannot_be_taken_is_a_failed_result_and_the_body_is_told(monkeypatch):
    run = _run()

    def taken(conn, host, env, break_lock):
        raise lock.LockError("deploy lock held by alice")
    monkeypatch.setattr(lock, "acquire", taken)
    with lock.held(run) as held:
        assert not held.held
    assert [(r.step, r.status, r.detail) for r in run.reporter.results] == [
        ("deploy.lock", Status.FAILED, "deploy lock held by alice")]
