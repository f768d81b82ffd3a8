"""Settings and paths: flag > environment > config file > default, through Invoke's own machinery."""
from __future__ import annotations

from pathlib import Path

import invoke
import pytest

from fabfile import cli, settings


@pytest.fixture
def resolved(tmp_path, monkeypatch):
    """Run `bhops ARGS... show [--inventory X]` in tmp_path; return the Settings the task saw."""
    for name in settings.ENV.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.bhops.yaml of the user's
    monkeypatch.chdir(tmp_path)
    seen = []

    @invoke.task
    def show(c, inventory=None):
        seen.append(settings.resolve(c.config, inventory))

    ns = invoke.Collection(show)
    ns.configure(settings.DEFAULTS)

    def run(*args: str) -> settings.Settings:
        invoke.Program(namespace=ns, binary="bhops", config_class=cli.Config).run(["bhops", *args], exit=False)
        return seen.pop()
    return run


def test_defaults_are_hosts_yaml_here_and_the_directories_beside_it(resolved, tmp_path):
    got = resolved("show")
    assert got == settings.Settings(inventory=tmp_path / "hosts.yaml", secrets_dir=tmp_path / "secrets",
                                    logs_dir=tmp_path / "logs", diagnostics_dir=tmp_path / "diagnostics")


def test_relative_directories_follow_the_inventory(resolved, tmp_path):
    got = resolved("show", "--inventory", "/srv/ops/hosts.yaml")
    assert got.inventory == Path("/srv/ops/hosts.yaml")
    assert (got.secrets_dir, got.logs_dir, got.diagnostics_dir) == (
        Path("/srv/ops/secrets"), Path("/srv/ops/logs"), Path("/srv/ops/diagnostics"))


def test_flag_beats_environment_beats_config_file_beats_default(resolved, tmp_path, monkeypatch):
    (tmp_path / "bhops.yaml").write_text("inventory: /from/file/hosts.yaml\nlogs_dir: /from/file/logs\n"
                                         "secrets_dir: /from/file/secrets\n")
    got = resolved("show")
    assert got.inventory == Path("/from/file/hosts.yaml") and got.logs_dir == Path("/from/file/logs")
    assert got.diagnostics_dir == Path("/from/file/diagnostics")  # the default: beside the inventory

    monkeypatch.setenv("BHOPS_INVENTORY", "/from/env/hosts.yaml")
    monkeypatch.setenv("BHOPS_LOGS_DIR", "/from/env/logs")
    got = resolved("show")
    assert got.inventory == Path("/from/env/hosts.yaml") and got.logs_dir == Path("/from/env/logs")
    assert got.secrets_dir == Path("/from/file/secrets")

    got = resolved("show", "--inventory", "/from/flag/hosts.yaml")
    assert got.inventory == Path("/from/flag/hosts.yaml") and got.logs_dir == Path("/from/env/logs")


def test_the_environment_beats_a_config_file_given_with_f(resolved, tmp_path, monkeypatch):
    """Invoke ranks a `-f` file above the environment; bhops keeps the environment on top."""
    (tmp_path / "site.yaml").write_text("inventory: /from/runtime/hosts.yaml\n")
    assert resolved("-f", "site.yaml", "show").inventory == Path("/from/runtime/hosts.yaml")
    monkeypatch.setenv("BHOPS_INVENTORY", "/from/env/hosts.yaml")
    assert resolved("-f", "site.yaml", "show").inventory == Path("/from/env/hosts.yaml")


def test_under_invoke_in_a_checkout_the_inventory_is_beside_tasks_py(tmp_path, monkeypatch):
    """Plain `invoke` reads `BHOPS_*` too; its default inventory is beside the tasks.py it found."""
    monkeypatch.delenv("BHOPS_INVENTORY", raising=False)
    monkeypatch.delenv("BHOPS_SECRETS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "invoke.yaml").write_text("logs_dir: /from/invoke-yaml/logs\n")
    config = invoke.Config(defaults={**invoke.Config.global_defaults(), **settings.DEFAULTS},
                           project_location=checkout)
    config.load_project()
    got = settings.resolve(config)
    assert got.inventory == checkout / "hosts.yaml" and got.secrets_dir == checkout / "secrets"
    assert got.logs_dir == Path("/from/invoke-yaml/logs")
    monkeypatch.setenv("BHOPS_SECRETS_DIR", "/from/env/secrets")
    assert settings.resolve(config).secrets_dir == Path("/from/env/secrets")
