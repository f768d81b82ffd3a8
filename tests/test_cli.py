"""The command line itself, without any host: flags and their refusals."""
from __future__ import annotations

import time

import pytest

from fabfile import ns
from tests.conftest import run_task

#: Flags that change or take over something: never a short form a slip of the finger could give.
LONG_ONLY = {"drain", "break-lock", "yes", "rotate", "fix"}


def _tasks(collection, prefix=""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from _tasks(sub, f"{prefix}{name}.")


def test_a_short_flag_means_the_same_long_flag_in_every_task():
    meaning: dict[str, set[str]] = {}
    long_only_shorts = []
    for name, task in _tasks(ns):
        for arg in task.get_arguments():
            longs = [n for n in arg.names if len(n) > 1]
            for short in (n for n in arg.names if len(n) == 1):
                meaning.setdefault(short, set()).update(longs)
                if set(longs) & LONG_ONLY:
                    long_only_shorts.append(f"{name} -{short}")
    assert {s: m for s, m in meaning.items() if len(m) > 1} == {}
    assert long_only_shorts == []
    assert meaning["n"] == {"dry-run"}


def test_help_shows_the_short_flags_and_none_for_break_lock():
    code, out = run_task("--help", "deploy")
    assert code == 0
    assert "-n, --dry-run" in out and "-e STRING, --env=STRING" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("-")}
    assert "--break-lock" in lines and "--yes" in lines  # first word: no short form before them
    code, out = run_task("--help", "docker.mirror")
    assert "-d" not in out.split() and "--drain" in out


INVENTORY = """
environments:
  x:
    vars: {public_url: "http://binder.example.org", floating_ip: 10.77.0.200}
    hosts:
      10.77.0.99: {roles: [node, control-plane, proxy]}
"""


@pytest.mark.parametrize("task, missing, fix", [
    ("deploy", "", "vars.public_url is not set"),
    ("metallb.pool", "floating_ip: 10.77.0.200", "vars.floating_ip is not set"),
    ("nginx.reload", '"http://binder.example.org"', "public_url is https: set vars.tls_certificate"),
    ("metallb.install", "}", "vars.metallb_manifest: "),
])
def test_what_a_task_needs_of_the_inventory_is_refused_before_any_connection(tmp_path, task, missing, fix):
    text = {"": INVENTORY.replace('public_url: "http://binder.example.org", ', ""),
            "floating_ip: 10.77.0.200": INVENTORY.replace(", floating_ip: 10.77.0.200", ""),
            '"http://binder.example.org"': INVENTORY.replace('"http://binder', '"https://binder'),
            "}": INVENTORY.replace("10.77.0.200}", "10.77.0.200, metallb_manifest: missing.yaml}")}[missing]
    (tmp_path / "hosts.yaml").write_text(text)
    code, out = run_task(task, "--env", "x", "--inventory", str(tmp_path / "hosts.yaml"))
    assert code == 1
    assert fix in out and "host 10.77.0.99" in out and "cannot reach" not in out and "Traceback" not in out


@pytest.mark.parametrize("flags", [["--only", ""], ["--only", "  "], ["--only", ","], ["--only", "nodes,"],
                                   ["--from", ""], ["--from", " "], ["--from", "nodes,cluster"]])
def test_a_blank_only_or_from_is_refused_before_anything_runs(tmp_path, flags):
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    code, out = run_task("deploy", "--env", "x", "--inventory", str(tmp_path / "hosts.yaml"), *flags)
    assert code == 1
    assert f"--{flags[0][2:]}" in out and "stages, in order: nodes, secrets" in out
    assert len(out.strip().splitlines()) == 1, out
    assert "RECAP" not in out and "Traceback" not in out


@pytest.mark.parametrize("name", ["nosuch", " ", "registry_password"])
def test_a_bad_rotate_name_is_refused_before_connecting(tmp_path, monkeypatch, name):
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(tmp_path / "secrets"))
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    start = time.monotonic()
    code, out = run_task("secrets.init", "--env", "x", "--inventory", str(tmp_path / "hosts.yaml"), "--rotate", name)
    assert time.monotonic() - start < 2
    assert code == 1 and "--rotate" in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "secrets").exists()


@pytest.mark.parametrize("task, flags", [
    ("cluster.wait", ["--timeout", "1.5"]), ("cluster.floating-ip", ["--timeout", "soon"]),
    ("docker.status", ["--parallel", "x"]), ("docker.mirror", ["-p", "ten"])])
def test_a_number_flag_given_something_else_is_one_line_before_connecting(tmp_path, task, flags):
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    started = time.monotonic()
    code, out = run_task(task, "--env", "x", "--inventory", str(tmp_path / "hosts.yaml"), *flags)
    assert code == 1 and "Traceback" not in out
    long = {"-p": "--parallel"}.get(flags[0], flags[0])
    assert out.strip() == f"{long} takes a whole number, not {flags[1]!r}"
    assert time.monotonic() - started < 2  # refused before any connection was tried
