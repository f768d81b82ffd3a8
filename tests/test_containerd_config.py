"""containerd's hosts.toml and config.toml edits, the runtime decision, a containerd node's plan and image
references, without any host."""
import pytest
import tomlkit

from fabfile import containerd, nodes
from fabfile import containerd_config as cc
from fabfile.inventory import VARS, Host
from fabfile.probes import NodeState

HOSTS = "/etc/containerd/certs.d/docker.io/hosts.toml"
CONFIG = "/etc/containerd/config.toml"
DIR = "/etc/containerd/certs.d"
MIRRORS = ["https://10.77.0.6:5000", "https://mirror.example.org"]

#: Debian 12's /etc/containerd/config.toml (containerd 1.6.20), with an operator's comments and settings.
DEBIAN = """\
# explicitly use v2 config format
version = 2
oom_score = -999  # keep containerd alive

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"   # pinned by ops
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"""


def test_hosts_toml_lists_the_mirrors_in_order_with_docker_hub_as_server():
    text = cc.hosts_toml(None, MIRRORS, HOSTS)
    data = tomlkit.parse(text).unwrap()
    assert data["server"] == "https://registry-1.docker.io"
    assert list(data["host"]) == MIRRORS
    assert all(h == {"capabilities": ["pull", "resolve"]} for h in data["host"].values())
    assert text.index('[host."https://10.77.0.6:5000"]') < text.index('[host."https://mirror.example.org"]')
    assert cc.hosts_match(text, MIRRORS) and not cc.hosts_match(text, MIRRORS[::-1])
    assert cc.hosts_toml(text, MIRRORS, HOSTS) == text


def test_hosts_toml_keeps_comments_and_a_kept_mirrors_own_keys_and_drops_the_others():
    old = ('# managed by hand until now\nserver = "https://registry-1.docker.io"  # upstream\n\n'
           '[host."https://old.example.org"]\n  capabilities = ["pull"]\n\n'
           '[host."https://mirror.example.org"]\n  # our CA\n  ca = "/etc/ssl/mirror.crt"\n  capabilities = ["pull"]\n')
    text = cc.hosts_toml(old, MIRRORS, HOSTS)
    assert text.startswith('# managed by hand until now\nserver = "https://registry-1.docker.io"  # upstream\n')
    assert '  # our CA\n  ca = "/etc/ssl/mirror.crt"\n' in text and "old.example.org" not in text
    assert cc.hosts_match(text, MIRRORS) and not cc.hosts_match(old, MIRRORS)


def test_config_toml_v2_appends_the_section_and_keeps_every_other_byte():
    text = cc.config_toml(DEBIAN, DIR, 1, CONFIG)
    assert text.startswith(DEBIAN)
    assert text[len(DEBIAN):] == f'\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{DIR}"\n'
    assert cc.config_toml(text, DIR, 1, CONFIG) == text  # converged: nothing to do


def test_config_toml_edits_an_existing_section_in_place():
    old = DEBIAN + ('\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""  # default\n'
                    '  [plugins."io.containerd.grpc.v1.cri".registry.auths]\n\n# trailing note\n')
    text = cc.config_toml(old, DIR, 1, CONFIG)
    assert text == old.replace('config_path = ""', f'config_path = "{DIR}"')


def test_config_toml_v3_uses_the_images_plugin():
    old = '# containerd 2\nversion = 3\n\n[plugins."io.containerd.cri.v1.runtime"]\n  enable_selinux = false\n'
    text = cc.config_toml(old, DIR, 2, CONFIG)
    assert text == old + f'\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "{DIR}"\n'


@pytest.mark.parametrize("old, major, version", [(None, 1, 2), ("", 2, 3), ("# defaults\n", None, 2)])
def test_an_absent_or_empty_config_becomes_the_section_alone(old, major, version):
    text = cc.config_toml(old, DIR, major, CONFIG)
    data = tomlkit.parse(text).unwrap()
    section = cc.REGISTRY_SECTIONS[version]
    assert data["version"] == version and data[section[0]][section[1]][section[2]] == {"config_path": DIR}


@pytest.mark.parametrize("old, message", [
    ("version = 2\n[plugins\n", "is not valid TOML"),
    ('[plugins.cri]\n  sandbox_image = "x"\n', "has no `version` (a version 1 config)"),
    ("version = 4\n", "has version 4; only version 2"),
    ("version = 3\n", "has version 3, which only containerd 2.x reads, but containerd 1.x is installed"),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://m"]\n',
     'sets the deprecated [plugins."io.containerd.grpc.v1.cri".registry.mirrors]'),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."m".tls]\n  insecure_skip_verify = true\n',
     "configs"),
])
def test_configs_that_cannot_take_config_path_are_refused_in_one_line(old, message):
    with pytest.raises(cc.TomlError) as err:
        cc.config_toml(old, DIR, 1, CONFIG)
    assert message in str(err.value) and "left untouched" in str(err.value) and "\n" not in str(err.value)


def test_unparseable_hosts_toml_is_refused():
    with pytest.raises(cc.TomlError, match="hosts.toml is not valid TOML.*left untouched"):
        cc.hosts_toml("server = \n", MIRRORS, HOSTS)


@pytest.mark.parametrize("line, major", [
    ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", 1),
    ("containerd containerd.io 1.7.22 7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c", 1),
    ("containerd github.com/containerd/containerd/v2 v2.0.0 207ad711eabd375a01713109a8a197d197ff6542", 2),
    ("", None)])
def test_major_version(line, major):
    assert cc.major_version(line) == major


@pytest.mark.parametrize("image, ref", [
    ("hello-world", "docker.io/library/hello-world:latest"),
    ("hello-world:1.0", "docker.io/library/hello-world:1.0"),
    ("jupyter/base-notebook", "docker.io/jupyter/base-notebook:latest"),
    ("docker.io/hello-world", "docker.io/library/hello-world:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("quay.io/jupyter/base-notebook:2024", "quay.io/jupyter/base-notebook:2024"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64)])
def test_image_references_are_normalized_as_docker_does(image, ref):
    assert containerd.reference(image) == ref


def state(endpoint="", dockerd=False, containerd_version=None):
    return NodeState("sysvinit", dockerd, endpoint, None, None, containerd_version)


@pytest.mark.parametrize("facts, used", [
    (state("unix:///run/containerd/containerd.sock", dockerd=True), "containerd"),
    (state("unix:///var/run/cri-dockerd.sock", containerd_version="1.6"), "docker"),
    (state("unix:///var/run/dockershim.sock"), "docker"),
    (state("unix:///var/run/crio/crio.sock", dockerd=True), None),
    (state(dockerd=True, containerd_version="1.6"), "docker"),
    (state(containerd_version="1.6"), "containerd"),
    (state(), None)])
def test_the_kubelets_endpoint_decides_the_runtime(facts, used):
    assert nodes.runtime(facts) == used


def node(**extra):
    return Host("n1", "n1", None, None, False, None, None, 10, 60, ("node",),
                {**{k: d for k, (d, _) in VARS.items()}, "docker_mirrors": MIRRORS, **extra})


def on_containerd(config=DEBIAN, hosts=None, up=True):
    return NodeState("systemd", False, "unix:///run/containerd/containerd.sock", None, None,
                     "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", up, config, hosts)


def test_a_converged_containerd_node_needs_nothing():
    config = cc.config_toml(DEBIAN, DIR, 1, CONFIG)
    result = nodes.decide(node(), on_containerd(config, cc.hosts_toml(None, MIRRORS, HOSTS)))
    assert result.status == "ok" and result.detail == f"containerd uses {', '.join(MIRRORS)} ({HOSTS})"


def test_a_new_hosts_toml_alone_needs_no_restart_and_config_toml_does():
    config = cc.config_toml(DEBIAN, DIR, 1, CONFIG)
    plan = nodes.decide(node(), on_containerd(config))
    assert (plan.hosts_new, plan.config_new, plan.restarts) == (cc.hosts_toml(None, MIRRORS, HOSTS), None, False)
    assert plan.describe() == "write hosts.toml"
    plan = nodes.decide(node(), on_containerd())
    assert plan.restarts and plan.describe() == "write hosts.toml and config.toml, then restart containerd"
    assert f"+++ {HOSTS}" in plan.diff and f"+++ {CONFIG}" in plan.diff
    down = nodes.decide(node(), on_containerd(config, cc.hosts_toml(None, MIRRORS, HOSTS), up=False))
    assert down.describe() == "start containerd"


def test_a_containerd_file_that_cannot_be_edited_fails_the_node():
    result = nodes.decide(node(), on_containerd(hosts="server = \n"))
    assert result.status == "failed" and "hosts.toml is not valid TOML" in result.detail
    result = nodes.decide(node(containerd_hosts_dir="/srv/certs.d"), on_containerd("version = 2\n[plugins\n"))
    assert result.status == "failed" and result.detail.startswith(f"{CONFIG} is not valid TOML")


def test_the_batch_is_the_flag_else_the_smallest_max_unavailable_of_the_nodes():
    ten = tuple(node(max_unavailable="30%") for _ in range(9)) + (node(max_unavailable=2),)
    assert nodes.batch_of(ten, None) == 2 and nodes.batch_of(ten[:9], None) == 2
    assert nodes.batch_of(ten, "50%") == 5 and nodes.batch_of(ten, "4") == 4 and nodes.batch_of((), None) == 1
