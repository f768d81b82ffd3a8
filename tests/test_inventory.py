"""Inventory loading and every refusal, without any host."""
import dataclasses
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
    with pytest.raises(dataclasses.FrozenInstanceError):
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


def with_vars(text):
    """BASE with `text` in place of environment prod's `docker_service: systemd`."""
    return BASE.replace("docker_service: systemd", text)


def env_with(setting="", host_setting=""):
    """BASE with a line added to environment prod and one to its host head.example.org."""
    text = BASE.replace("    sudo: true\n", f"    sudo: true\n    {setting}\n")
    return text.replace("        port: 2222\n", f"        port: 2222\n        {host_setting}\n")


def refusal(tmp_path, text, env="prod"):
    """The message loading `text` gives, without its file name (checked: one line, after the file)."""
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as err:
        inventory.load(env, path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize("gateway", ["user@h:notaport", "123", "[ops@bastion]", "'@:'", "ops@", "'h:'",
                                     "ops@b:0", "ops@b:70000", "'a b@bastion'", "{host: b}"])
def test_a_malformed_gateway_is_refused(tmp_path, gateway):
    message = refusal(tmp_path, env_with(f"gateway: {gateway}"))
    assert message.startswith("environments.prod.gateway: ")
    assert "is not [user@]host[:port]" in message and "like ops@bastion.example.org:22" in message


@pytest.mark.parametrize("gateway", ["bastion.example.org", "ops@bastion.example.org:2222", "ops@10.0.0.1",
                                     "ops@fd00::1"])
def test_a_good_gateway_is_kept(tmp_path, gateway):
    host = inventory.load("prod", write(tmp_path, env_with(f"gateway: '{gateway}'"))).hosts[0]
    assert host.gateway == gateway


@pytest.mark.parametrize("setting, message", [
    ("connect_timeout: .inf", "connect_timeout: inf must be a positive number of seconds"),
    ("command_timeout: .nan", "command_timeout: nan must be a positive number of seconds"),
    ("command_timeout: -.inf", "command_timeout: -inf must be a positive number"),
    ("connect_timeout: '10'", "connect_timeout: '10' must be a number, not text; remove the quotes"),
    ("connect_timeout: [10]", "connect_timeout: [10] must be a number"),
])
def test_timeouts_must_be_finite_positive_numbers(tmp_path, setting, message):
    assert refusal(tmp_path, env_with(setting)).startswith("environments.prod." + message)


def test_a_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_bytes(textwrap.dedent(BASE).encode().replace(b"user: www", b"user: w\xe9w"))  # Latin-1
    with pytest.raises(InventoryError) as err:
        inventory.load("prod", path)
    assert str(err.value) == f"{path}: line 19: not UTF-8 text (byte 0xe9); save the file as UTF-8"


@pytest.mark.parametrize("host_setting, message", [
    ("hostname: [a.example.org, b.example.org]",
     "hostname: ['a.example.org', 'b.example.org'] is not a host name or address"),
    ("hostname: 'two words'", "hostname: 'two words' is not a host name"),
    ("user: 42", 'user: YAML read 42 as a number, not text; put the value in quotes, like user: "42"'),
    ("user: {name: x}", "user: {'name': 'x'} is not a user name"),
    ("ssh_config: [a, b]", "ssh_config: must be a non-empty string"),
])
def test_hostname_user_and_ssh_config_must_be_strings(tmp_path, host_setting, message):
    message = "environments.prod.hosts.head.example.org." + message
    assert refusal(tmp_path, env_with(host_setting=host_setting)).startswith(message)


def test_an_ipv6_hostname_is_kept(tmp_path):
    env = inventory.load("prod", write(tmp_path, env_with(host_setting="hostname: 'fd00::5'")))
    assert env.hosts[0].hostname == "fd00::5"


@pytest.mark.parametrize("old, new, message", [
    ("      proxy.example.org:", "      head.example.org: {roles: [proxy]}\n      proxy.example.org:",
     "line 19, column 7: not valid YAML: duplicate key 'head.example.org' (first at line 14); keep only one"),
    ("user: www}", "user: www, user: ops}",
     "line 19, column 54: not valid YAML: duplicate key 'user' (first at line 19)"),
    ("    user: ops\n", "    user: ops\n    vars: {}\n",
     "line 12, column 5: not valid YAML: duplicate key 'vars' (first at line 10)"),
    ("  user: deploy\n", "  user: deploy\n  user: root\n", "line 4, column 3: not valid YAML: duplicate key"),
])
def test_a_duplicate_key_at_any_level_is_refused_with_its_line(tmp_path, old, new, message):
    assert refusal(tmp_path, BASE.replace(old, new)).startswith(message)


def test_a_merge_key_may_be_overridden(tmp_path):
    text = "environments: {x: {hosts: {h: &h {roles: [node], port: 22}, h2: {<<: *h, port: 23}}}}"
    assert [h.port for h in inventory.load("x", write(tmp_path, text)).hosts] == [22, 23]


@pytest.mark.parametrize("other, names", [
    ("hostname: head.example.org, port: 2222", "head.example.org and other"),
    ("hostname: HEAD.example.org, port: 2222, user: root", "head.example.org and other"),
    ("hostname: worker.example.org, port: 22", "worker.example.org and other"),
])
def test_two_names_for_the_same_hostname_and_port_are_refused(tmp_path, other, names):
    message = refusal(tmp_path, BASE + f"      other: {{roles: [node], {other}}}\n")
    assert message.startswith(f"environments.prod.hosts: {names} are the same machine (")
    assert message.endswith("keep one of them and give it the roles and vars of both")


def test_the_same_hostname_on_another_port_or_behind_another_gateway_is_allowed(tmp_path):
    text = BASE + ("      other: {roles: [node], hostname: head.example.org, port: 2223}\n"
                   "      third: {roles: [node], hostname: head.example.org, port: 2222, gateway: bastion}\n")
    assert len(inventory.load("prod", write(tmp_path, text)).hosts) == 5


def test_two_ssh_config_aliases_of_one_machine_are_refused(tmp_path):
    (tmp_path / "ssh_config").write_text(
        "Host a b\n  HostName 10.0.0.7\nHost c\n  HostName 10.0.0.7\n  Port 2200\n")
    text = "environments: {x: {ssh_config: ssh_config, hosts: {a: {roles: [node]}, c: {roles: [node]}, %s}}}"
    assert len(inventory.load("x", write(tmp_path, text % "d: {roles: [proxy]}")).hosts) == 3
    assert refusal(tmp_path, text % "b: {roles: [proxy]}", "x") == (
        "environments.x.hosts: a and b are the same machine (10.0.0.7:22); "
        "keep one of them and give it the roles and vars of both")
    assert "c and e are the same machine (10.0.0.7:2200)" in refusal(
        tmp_path, text % "e: {roles: [proxy], hostname: 10.0.0.7, port: 2200}", "x")


def test_an_unreadable_ssh_config_is_refused(tmp_path):
    (tmp_path / "ssh_config").write_text("Host a\n  Port nope\n")
    text = "environments: {x: {ssh_config: ssh_config, hosts: {a: {roles: [node]}}}}"
    assert refusal(tmp_path, text, "x").startswith(
        f"environments.x.hosts.a: its ssh_config {tmp_path / 'ssh_config'} cannot be read: ")


@pytest.mark.parametrize("site", ["../../tmp/x", "/etc/passwd", "sites-enabled/binderhub", ".hidden", "..",
                                  "'a b'", "[binderhub]"])
def test_nginx_site_must_be_a_plain_file_name(tmp_path, site):
    message = refusal(tmp_path, with_vars(f"nginx_site: {site}"))
    assert message.startswith("environments.prod.vars.nginx_site: ")
    assert message.endswith("is not a file name in /etc/nginx/sites-available; give a plain name like binderhub")


@pytest.mark.parametrize("setting", [
    "namespace: Binder", "namespace: binder_ns", "namespace: -binder", "namespace: binder.prod",
    f"namespace: {'a' * 64}", "namespace: ''", "release: Binder", f"release: {'a' * 54}", "release: binder-",
    "release: [binder]"])
def test_namespace_and_release_must_be_dns_names(tmp_path, setting):
    key = setting.split(":")[0]
    message = refusal(tmp_path, with_vars(setting))
    assert message.startswith(f"environments.prod.vars.{key}: ") and "like binder" in message


def test_good_chart_names_are_kept(tmp_path):
    text = with_vars(f"namespace: {'a' * 63}\n      release: bhub-1.prod\n      nginx_site: bh_1.conf")
    names = inventory.load("prod", write(tmp_path, text)).hosts[1].vars
    assert (names["namespace"], names["release"], names["nginx_site"]) == ("a" * 63, "bhub-1.prod", "bh_1.conf")


@pytest.mark.parametrize("setting, message", [
    ("port: '2222'", "port: '2222' must be a number, not text; remove the quotes"),
    ("vars: {binder_node_port: '32574'}", "vars.binder_node_port: '32574' must be a number, not text"),
    ("vars: {rate_limit: '5'}", "vars.rate_limit: '5' must be a number, not text"),
])
def test_a_quoted_number_says_to_remove_the_quotes(tmp_path, setting, message):
    text = BASE.replace("        port: 2222\n", "").replace(
        "        vars: {docker_mirrors: [https://head-mirror.example.org]}\n", f"        {setting}\n")
    assert refusal(tmp_path, text).startswith(f"environments.prod.hosts.head.example.org.{message}")


@pytest.mark.parametrize("setting, message", [
    ("chart_version: 1.10", 'chart_version: YAML read 1.10 as a number, not text; put the value in quotes, '
                            'like chart_version: "1.10"'),
    ("chart_version: 2", 'chart_version: YAML read 2 as a number, not text; put the value in quotes, '
                         'like chart_version: "2"'),
    ("image_prefix: yes", "image_prefix: YAML read True as true/false, not text"),
    ("registry_username: 12.50", "registry_username: YAML read 12.50 as a number"),
    ("floating_ip: 3232235777", "floating_ip: YAML read 3232235777 as a number"),
    ("storage: {per_user: {capacity: 10}}", "storage.per_user.capacity: YAML read 10 as a number"),
])
def test_a_number_given_for_text_says_to_quote_it(tmp_path, setting, message):
    assert refusal(tmp_path, with_vars(setting)).startswith(f"environments.prod.vars.{message}")


@pytest.mark.parametrize("text, message", [
    (with_vars("binder_node_port: 80"), "environments.prod.vars.binder_node_port: 80 is outside"),
    (BASE.replace("docker_mirrors: [https://mirror.example.org]", "binder_node_port: 80"),
     "defaults.vars.binder_node_port: 80 is outside"),
    (BASE.replace("docker_mirrors: [https://mirror.example.org]", "namespace: Bad"),
     "defaults.vars.namespace: 'Bad' is not"),
    (BASE.replace("  port: 22\n", "  port: 0\n"), "defaults.port: 0 is out of range"),
    (env_with("port: 0"), "environments.prod.port: 0 is out of range"),
    (env_with("gateway: '@:'"), "environments.prod.gateway: '@:' is not"),
])
def test_an_error_names_the_block_that_set_the_value(tmp_path, text, message):
    assert refusal(tmp_path, text).startswith(message)


@pytest.mark.parametrize("text, message", [
    ("environments: [prod",
     "line 1, column 20: not valid YAML: while parsing a flow sequence; expected ',' or ']'"),
    ("environments:\n  prod:\n    hosts:\n\t- a\n", "line 4, column 1: not valid YAML: "),
    ("environments: {prod: !!python/object:os.system {}}", "line 1, column 22: not valid YAML: "),
    ("environments: {}\n\x01\n", "line 2: not valid YAML: character #x0001 is not allowed; remove it"),
    ("a: 1\n---\nb: 2\n", "line 2, column 1: not valid YAML: "),
])
def test_malformed_yaml_names_the_file_and_line(tmp_path, text, message):
    assert refusal(tmp_path, text).startswith(message)


@pytest.mark.parametrize("text, message", [
    (BASE.replace("roles: [node]}", "roles: [node, 3]}"),
     "environments.prod.hosts.worker.example.org.roles: unknown role(s) [3]"),
    (BASE.replace("worker.example.org:", "123:"), "environments.prod.hosts.123: the name 123 must be text"),
    (BASE.replace("worker.example.org:", "null:"), "environments.prod.hosts.None: the name None must be text"),
    (BASE.replace("prod:", "1:"), "environments.1: the name 1 must be text"),
    (BASE.replace("worker.example.org:", "'bad name':"),
     "environments.prod.hosts.bad name: 'bad name' is not a host name"),
    (BASE.replace("vars:\n      docker_service: systemd", "vars: [docker_service]"),
     "environments.prod.vars: must be a mapping"),
    (BASE.replace("vars: {docker_mirrors: [https://head-mirror.example.org]}", "vars: x"),
     "environments.prod.hosts.head.example.org.vars: must be a mapping"),
    ("environments:\n  prod:\n    hosts: [{a: {roles: [node]}}]\n", "environments.prod.hosts: must be a mapping"),
    ("environments: [{prod: {}}]\n", "environments: must be a mapping"),
    (BASE.replace("user: deploy", "1: deploy\n  usr: x"), "defaults: unknown key(s) 1, usr"),
    (BASE.replace("user: deploy", "null: x"), "defaults: unknown key(s) None"),
    (with_vars("auth: {1: x, client_id: a}"), "environments.prod.vars.auth: unknown key(s) 1"),
    (with_vars("metallb_addresses: [5]"), "environments.prod.vars.metallb_addresses[0]: YAML read 5"),
    (with_vars("floating_ip: [1]"), "environments.prod.vars.floating_ip: must be a non-empty"),
    (with_vars("profiles: [x]"), "environments.prod.vars.profiles[0]: must be a mapping"),
])
def test_odd_types_are_refused_without_a_traceback(tmp_path, text, message):
    assert refusal(tmp_path, text).startswith(message)


@pytest.mark.parametrize("text, message", [
    (env_with("gateway: user@h:notaport"), "environments.prod.gateway: 'user@h:notaport' is not [user@]host"),
    (with_vars("chart_version: 1.10"), 'like chart_version: "1.10"'),
    (BASE + "  prod: {}\n", "duplicate key 'prod'"),
])
def test_the_cli_exits_with_the_one_line_error_and_no_traceback(tmp_path, cli, text, message):
    path = write(tmp_path, text)
    code, out = cli("docker.status", "--env", "prod", "--inventory", str(path))
    assert code == 1
    assert "Traceback" not in out and message in out and str(path) in out
    assert len(out.strip().splitlines()) == 1, out


@pytest.mark.parametrize("value", [0, -1, "0%", "101%", "x%", "1.5", 1.5, True])
def test_max_unavailable_is_a_positive_count_or_a_percentage(tmp_path, value):
    message = refusal(tmp_path, with_vars(f"max_unavailable: {value!r}" if isinstance(value, str)
                                          else f"max_unavailable: {str(value).lower()}"))
    assert message.startswith("environments.prod.vars.max_unavailable: ") and "or a percentage" in message


def test_the_ca_bundle_is_found_beside_the_inventory_or_refused_with_the_fix(tmp_path):
    env = inventory.load("prod", write(tmp_path, with_vars("tls_ca_bundle: certs/ca.pem")))
    with pytest.raises(InventoryError, match=r"tls_ca_bundle: .*certs/ca.pem does not exist; give the CA"):
        inventory.ca_bundle(env, env.hosts[0])
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert inventory.ca_bundle(env, env.hosts[0]) == str(tmp_path / "certs" / "ca.pem")
