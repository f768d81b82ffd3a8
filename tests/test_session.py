"""Steps on many hosts at once, with real threads and plain step functions: no host needed."""
from __future__ import annotations

import io
import threading
import time
from types import SimpleNamespace

import pytest
from invoke import Exit

from fabfile import lock, rollout, session
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


def _hosts(count: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=f"h{i}") for i in range(1, count + 1)]


class _Batches:
    """A step that notes which hosts run beside each one, and lets a host finish only once every
    host of its batch has started (a batch not run in parallel fails) and `wait_for(host)` holds."""

    def __init__(self, hosts: int, size: int, fail: dict | None = None, wait_for=lambda host: True):
        self.hosts, self.size, self.fail, self.wait_for = _hosts(hosts), size, fail or {}, wait_for
        self.started: list[str] = []
        self.beside: dict[str, set[str]] = {}  # host -> the hosts under way when it started
        self.finished: list[str] = []
        self._running: set[str] = set()
        self._changed = threading.Condition()

    def batch_of(self, name: str) -> set[str]:
        first = (int(name[1:]) - 1) // self.size * self.size
        return {h.name for h in self.hosts[first:first + self.size]}

    def __call__(self, conn, host):
        with self._changed:
            self.started.append(host.name)
            self._running.add(host.name)
            self.beside[host.name] = set(self._running)
            self._changed.notify_all()
            together = self._changed.wait_for(lambda: self.batch_of(host.name) <= {*self.started}, timeout=5)
        deadline = time.monotonic() + 5
        while not (waited := self.wait_for(host.name)) and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._changed:
            self._running.discard(host.name)
            self.finished.append(host.name)
        if not (together and waited):
            return Result.failed("its batch was not under way beside it" if waited else "waited in vain")
        if isinstance(self.fail.get(host.name), BaseException):
            raise self.fail[host.name]
        return self.fail.get(host.name) or Result.changed("done")

    label = "s"


def test_batches_run_in_host_order_each_in_parallel_and_one_after_the_other():
    run, step = _run(), _Batches(7, 3)
    results = run.in_batches(step.hosts, 3, step)
    assert [(r.host, r.status, r.detail) for r in results] == [(f"h{i}", Status.CHANGED, "done") for i in range(1, 8)]
    assert [set(step.started[i:i + 3]) for i in (0, 3, 6)] == [{"h1", "h2", "h3"}, {"h4", "h5", "h6"}, {"h7"}]
    for host, beside in step.beside.items():  # nothing of another batch under way when a host starts
        assert beside <= step.batch_of(host), (host, beside)
    assert not run.failed


def test_each_result_is_reported_as_its_host_finishes_not_when_the_batch_does():
    run = _run()
    step = _Batches(2, 2, wait_for=lambda host: host != "h2" or "h1 | s | changed" in run.reporter.stream.getvalue())
    results = run.in_batches(step.hosts, 2, step)
    assert [(r.status, r.detail) for r in results] == [(Status.CHANGED, "done")] * 2, \
        "h1's result was not printed while h2 was under way"


def test_a_failed_batch_finishes_then_every_later_host_is_skipped_with_the_hosts_that_failed():
    run = _run()
    step = _Batches(8, 3, fail={"h5": Result.failed("docker did not come back"), "h6": EOFError()})
    results = run.in_batches(step.hosts, 3, step)
    assert [(r.host, r.status) for r in results[:6]] == [
        ("h1", Status.CHANGED), ("h2", Status.CHANGED), ("h3", Status.CHANGED),
        ("h4", Status.CHANGED), ("h5", Status.FAILED), ("h6", Status.UNREACHABLE)]
    assert [(r.host, r.step, r.status, r.detail) for r in results[6:]] == [
        (h, "s", Status.SKIPPED, "not touched: rollout stopped after h5, h6 failed") for h in ("h7", "h8")]
    assert sorted(step.started) == ["h1", "h2", "h3", "h4", "h5", "h6"]
    assert "h7 | s | skipped | not touched: rollout stopped after h5, h6 failed\n" in run.reporter.stream.getvalue()
    assert run.failed


def test_batches_of_one_are_the_serial_rollout():
    run, step = _run(), _Batches(4, 1, fail={"h2": Result.failed("broken")})
    results = run.in_batches(step.hosts, 1, step)
    assert step.started == step.finished == ["h1", "h2"]
    assert all(beside == {host} for host, beside in step.beside.items())
    assert [(r.host, r.status, r.detail) for r in results] == [
        ("h1", Status.CHANGED, "done"), ("h2", Status.FAILED, "broken"),
        ("h3", Status.SKIPPED, "not touched: rollout stopped after h2 failed"),
        ("h4", Status.SKIPPED, "not touched: rollout stopped after h2 failed")]
    assert run.reporter.stream.getvalue().splitlines() == [
        "h1 | s | changed | done", "h2 | s | failed | broken",
        "h3 | s | skipped | not touched: rollout stopped after h2 failed",
        "h4 | s | skipped | not touched: rollout stopped after h2 failed"]


def test_ctrl_c_lets_the_steps_under_way_finish_and_starts_no_other_batch():
    run = _run()
    step = _Batches(4, 2, wait_for=
                    lambda host: host != "h2" or "interrupt | stopping" in run.reporter.stream.getvalue())
    reported = run.report

    def interrupted(result):  # Ctrl-C as h1's result is printed, h2 still under way
        reported(result)
        raise KeyboardInterrupt
    run.report = interrupted
    with pytest.raises(KeyboardInterrupt):
        run.in_batches(step.hosts, 2, step)
    assert sorted(step.finished) == ["h1", "h2"] and sorted(step.started) == ["h1", "h2"]


@pytest.mark.parametrize("value, total, size", [
    (1, 10, 1), (3, 10, 3), (20, 10, 20), ("25%", 10, 2), ("50%", 10, 5), ("100%", 7, 7), ("5%", 10, 1),
    ("99%", 3, 2), ("10%", 0, 1)])
def test_batch_size_is_the_number_or_the_percentage_rounded_down_and_at_least_one(value, total, size):
    assert rollout.batch_size(value, total) == size


@pytest.mark.parametrize("text, value", [("3", 3), (" 12 ", 12), ("25%", "25%"), ("100%", "100%"), ("1%", "1%")])
def test_the_batch_flag_reads_as_the_inventory_would_hold_it(text, value):
    assert rollout.parse_batch(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "0%", "101%", "25 %", "2.5", "half", "", "1e3", "²"])
def test_a_batch_flag_that_is_no_number_of_nodes_is_refused_with_the_fix(text):
    with pytest.raises(Exit) as refused:
        rollout.parse_batch(text)
    message = str(refused.value)
    assert "\n" not in message and f"not {text!r}" in message and "e.g. 3" in message and "e.g. 25%" in message


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
