"""The local secrets file: private temp files, a private directory, and the rotation advice."""
from __future__ import annotations

import os
import stat

import pytest
import yaml

from fabfile import secretfile
from fabfile.secretfile import Secret, SecretsError

MARKER = "MARKER-5ec7e7"
VALUES = {"binder_api_token": Secret(MARKER + "-api"), "proxy_secret_token": Secret(MARKER + "-proxy")}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def unreachable_inventory(directory) -> str:
    """An environment `t` whose only host refuses connections at once (nothing may connect)."""
    path = directory / "hosts.yaml"
    path.write_text(yaml.safe_dump({"environments": {"t": {
        "hosts": {"h": {"hostname": "127.0.0.1", "port": 1, "roles": ["node", "control-plane", "proxy"]}},
        "vars": {"public_url": "http://binder.example.org"}}}}))
    return str(path)


def test_a_stale_world_readable_temp_file_is_not_reused(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    stale = secrets / ".lab.yaml.tmp"  # what an interrupted save of the old code left
    stale.write_text("old\n")
    os.chmod(stale, 0o644)
    secretfile.save(secrets / "lab.yaml", VALUES)
    assert mode(secrets / "lab.yaml") == 0o600
    assert stale.read_text() == "old\n" and mode(stale) == 0o644, "the stale file was written through"
    assert secretfile.load(secrets / "lab.yaml") == VALUES


def test_a_symlink_planted_at_the_temp_path_is_not_followed(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    os.symlink(target, secrets / ".lab.yaml.tmp")
    secretfile.save(secrets / "lab.yaml", VALUES)
    assert target.read_text() == "untouched\n"
    assert not os.path.islink(secrets / "lab.yaml") and mode(secrets / "lab.yaml") == 0o600


def test_an_open_secrets_directory_is_refused_with_the_fix(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    os.chmod(secrets, 0o755)
    with pytest.raises(SecretsError, match=rf"{secrets} is open to other users \(mode 755\); "
                                           rf"run `chmod 700 {secrets}`"):
        secretfile.save(secrets / "lab.yaml", VALUES)
    assert os.listdir(secrets) == []


def test_secrets_init_refuses_an_open_directory_before_connecting(tmp_path, monkeypatch, cli):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    os.chmod(secrets, 0o755)
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(secrets))
    code, out = cli("secrets.init", "--env", "t", "--inventory", unreachable_inventory(tmp_path))
    assert code == 1
    assert f"local | secrets | failed | secrets directory: {secrets} is open to other users (mode 755); " \
           f"run `chmod 700 {secrets}`" in out
    assert "Traceback" not in out and "unreachable |" not in out, "it connected before checking"
    assert os.listdir(secrets) == []


def test_rotating_an_operator_secret_says_how_to_really_rotate_it(tmp_path):
    path = tmp_path / "prod.yaml"
    secretfile.ensure(path, ["registry_password"], lambda n: MARKER)
    before = path.read_text()
    with pytest.raises(SecretsError) as caught:
        secretfile.ensure(path, ["registry_password"], lambda n: None, rotate="registry_password")
    message = str(caught.value)
    assert f"set the new value as registry_password in {path}" in message
    assert "re-run `invoke secrets.init --env prod` with $BHOPS_REGISTRY_PASSWORD set" in message
    assert message.endswith("then run `invoke helm.upgrade --env prod`") and "\n" not in message
    assert path.read_text() == before


def test_secrets_init_rotate_registry_password_tells_the_real_way(tmp_path, monkeypatch, cli):
    secrets = tmp_path / "secrets"
    secretfile.save(secrets / "t.yaml", {**VALUES, "registry_password": Secret(MARKER + "-registry")})
    before = (secrets / "t.yaml").read_text()
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(secrets))
    code, out = cli("secrets.init", "--env", "t", "--inventory", unreachable_inventory(tmp_path),
                    "--rotate", "registry_password")
    assert code == 1
    failed = next(l for l in out.splitlines() if "registry_password is yours" in l)
    assert f"set the new value as registry_password in {secrets / 't.yaml'}" in failed
    assert "$BHOPS_REGISTRY_PASSWORD set), then run `invoke helm.upgrade --env t`" in failed
    assert MARKER not in out and (secrets / "t.yaml").read_text() == before
