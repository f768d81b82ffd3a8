"""The fixtures that let test runs share a machine: one session on the lab at a time, no process
left behind."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import charts_directory, no_process_left, session_lock, stop


def test_a_second_session_waits_for_the_lab_lock_then_fails_naming_the_holder(tmp_path):
    lock = tmp_path / "session.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); f.write('pid 4242, "
         "lab state /elsewhere/.lab'); f.flush(); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); "
         "time.sleep(60)", str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(pytest.fail.Exception, match=r"the lab is busy: another test session \(pid 4242, "
                           r"lab state /elsewhere/.lab\) has held .*session.lock for over 1 s"):
            with session_lock(lock, wait=1):
                pass
    finally:
        stop(holder)
    with session_lock(lock, wait=1):  # free again once the other session ends
        with open(lock) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_an_orphan_left_behind_is_stopped_and_reported(tmp_path):
    pid_file = tmp_path / "orphan.pid"
    with pytest.raises(AssertionError, match=r"processes left behind \(now stopped\): \d+ sleep 300"):
        with no_process_left(timeout=2):
            subprocess.run(["sh", "-c", f"sleep 300 & echo $! > {pid_file}"], check=True)  # sh exits at once
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_nothing_left_passes_quietly():
    with no_process_left():
        subprocess.run(["true"], check=True)


def test_the_real_charts_come_from_bhops_charts_else_the_labs_cache(tmp_path, monkeypatch, real_charts):
    cache = tmp_path / "cache"
    cache.mkdir()
    for archive in real_charts.glob("binderhub-*.tgz"):
        shutil.copy(archive, cache)
    monkeypatch.delenv("BHOPS_CHARTS", raising=False)
    assert charts_directory(cache) == cache
    with pytest.raises(pytest.fail.Exception, match=r"the lab's chart cache .* is incomplete: run scripts/bootstrap"):
        charts_directory(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("BHOPS_CHARTS", str(empty))
    with pytest.raises(pytest.fail.Exception, match=rf"^BHOPS_CHARTS={empty} has no binderhub-0.2.0.*or unset "
                       r"BHOPS_CHARTS so that the lab fetches it"):
        charts_directory(cache)
