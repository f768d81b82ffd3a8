"""Inventory loading and every refusal, without any host."""
import textwrap

import pytest

from fabfile import inventory
from fabfile.inventory import InventoryError


def write(tmp_path, text):
    path = tmp_path / "hosts.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BASE = """
defaults:
  user: deploy
  port: 22
  vars:
    docker_mirrors: [https://mirror.example.org]
environments:
  prod:
    user: ops
    sudo: true
    vars:
      docker_service: systemd
    hosts:
      head.example.org:
        roles: [node, control-plane]
        port: 2222
        vars: {docker_mirrors: [https://head-mirror.example.org]}
      worker.example.org: {roles: [node]}
      proxy.example.org: {roles: [proxy], user: www}
"""


def test_precedence_host_over_environment_over_defaults(tmp_path):
    env = inventory.load("prod", write(tmp_path, BASE))
    head, worker, proxy = env.hosts
    assert (head.user, head.port, head.sudo) == ("ops", 2222, True)
    assert head.vars["docker_mirrors"] == ("https://head-mirror.example.org",)
    assert worker.vars["docker_mirrors"] == ("https://mirror.example.org",)
    assert worker.vars["docker_service"] == "systemd"
    assert (proxy.user, proxy.port) == ("www", 22)
    assert [h.name for h in env.with_role("node")] == ["head.example.org", "worker.example.org"]


def test_defaults_apply_when_nothing_is_set(tmp_path):
    env = inventory.load("x", write(tmp_path, "environments: {x: {hosts: {h1: {roles: [node]}}}}"))
    host = env.hosts[0]
    assert host.hostname == "h1" and host.port is None and host.sudo is False
    assert host.vars["docker_mirrors"] == ("https://dockerhub.stfc.ac.uk",)
    assert host.vars["docker_service"] == "auto"


def test_hosts_are_frozen(tmp_path):
    host = inventory.load("prod", write(tmp_path, BASE)).hosts[0]
    with pytest.raises(Exception):
        host.port = 1
    with pytest.raises(TypeError):
        host.vars["docker_service"] = "sysvinit"


def test_the_shipped_inventory_has_prod_staging_and_lab_with_reserved_names():
    for name in ("prod", "staging"):
        env = inventory.load(name)
        assert all(h.hostname.endswith(".example.org") for h in env.hosts)
        assert env.with_role("node") and env.with_role("control-plane") and env.with_role("proxy")


@pytest.mark.parametrize("text, message", [
    (BASE.replace("prod:", "production:"), "unknown environment 'prod'; valid environments: production"),
    (BASE.replace("port: 2222", "prot: 2222"), "hosts.head.example.org: unknown key(s) prot"),
    (BASE.replace("port: 2222", "port: 70000"), "port: 70000 is out of range; use a number from 1 to 65535"),
    (BASE.replace("https://mirror.example.org", "dockerhub.example.org"),
     "'dockerhub.example.org' is not an http(s) URL"),
    (BASE.replace("https://head-mirror.example.org", "ftp://m.example.org"), "is not an http(s) URL"),
    (BASE.replace("docker_service: systemd", "docker_service: upstart"), "'upstart' is not one of"),
    (BASE.replace("docker_service: systemd", "docker_mirror: [https://a.example.org]"),
     "environments.prod.vars: unknown key(s) docker_mirror"),
    (BASE.replace("roles: [proxy]", "roles: [web]"), "unknown role(s) ['web']"),
    (BASE.replace("roles: [proxy]", "roles: []"), "roles: give at least one of"),
    (BASE.replace("user: deploy", "usr: deploy"), "defaults: unknown key(s) usr"),
    (BASE.replace("sudo: true", "sudo: yes please"), "sudo: 'yes please' must be true or false"),
    ("environments: {prod: {hosts: {}}}", "the environment has no hosts"),
    ("environments: [prod", "not valid YAML"),
])
def test_bad_input_is_refused_with_file_key_and_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as err:
        inventory.load("prod", path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_a_role_with_no_hosts_is_refused_with_the_fix(tmp_path):
    env = inventory.load("x", write(tmp_path, "environments: {x: {hosts: {h1: {roles: [node]}}}}"))
    with pytest.raises(InventoryError, match=r"has no host with role 'proxy'; add `roles: \[proxy\]`"):
        env.with_role("proxy")


def test_limit_narrows_and_rejects_unknown_names(tmp_path):
    env = inventory.load("prod", write(tmp_path, BASE))
    assert [h.name for h in env.limited(["proxy.example.org"]).hosts] == ["proxy.example.org"]
    with pytest.raises(InventoryError, match="unknown host.*nope.*hosts of 'prod'"):
        env.limited(["nope"])


def test_missing_ssh_config_points_at_lab_up(tmp_path):
    path = write(tmp_path, "environments: {lab: {ssh_config: .lab/ssh_config, hosts: {h: {roles: [node]}}}}")
    with pytest.raises(InventoryError, match="does not exist.*invoke lab.up"):
        inventory.load("lab", path)


def test_relative_ssh_config_is_resolved_beside_the_inventory(tmp_path):
    (tmp_path / "sshcfg").write_text("Host h\n  HostName 127.0.0.1\n")
    env = inventory.load("x", write(tmp_path, "environments: {x: {ssh_config: sshcfg, hosts: {h: {roles: [node]}}}}"))
    assert env.hosts[0].ssh_config == tmp_path / "sshcfg"


def test_unknown_file_is_a_clear_error(tmp_path):
    with pytest.raises(InventoryError, match="cannot read inventory"):
        inventory.load("prod", tmp_path / "missing.yaml")
