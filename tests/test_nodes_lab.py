"""nodes.mirror, nodes.status and the pull check on a mixed lab (lab-node2 runs containerd, the others docker; a
switch from and back to docker restarts lab-node2 alone): real containerd 1.6, real dockerd, and the lab's registry
(https://10.77.0.6:5000) as the only mirror the nodes can reach."""
from __future__ import annotations

import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab import hosts as labhosts
from lab import registry
from tests.conftest import lab_inventory, ssh

pytestmark = pytest.mark.lab

NODES = ["lab-node1", "lab-node2", "lab-node3"]
ADDRESSES = {"lab-node1": "10.77.0.11", "lab-node2": "10.77.0.12", "lab-node3": "10.77.0.13"}
MIRROR = registry.URL
HOSTS_TOML = "/etc/containerd/certs.d/docker.io/hosts.toml"
CONFIG = "/etc/containerd/config.toml"
REF = "docker.io/library/hello-world:latest"
WANTED_HOSTS = f'server = "https://registry-1.docker.io"\n\n[host."{MIRROR}"]\ncapabilities = ["pull", "resolve"]\n'
SECTION = '\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'

#: A node back to its first state: no hosts.toml, config.toml as given on stdin (restarting containerd only when it
#: changes), daemon.json without mirrors (restarting docker only when it had some); no backups.
RESET = r"""set -e
rm -f /etc/containerd/config.toml.bhops-*.bak /etc/docker/daemon.json.bhops-*.bak
rm -rf /etc/containerd/certs.d
want=$(cat)
if grep -q containerd.sock /var/lib/kubelet/kubeadm-flags.env; then
    if [ "$(cat /etc/containerd/config.toml)" != "$want" ]; then
        printf '%s\n' "$want" > /etc/containerd/config.toml
        service containerd restart >/dev/null
        for i in $(seq 1 120); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1
    fi
    exit 0
fi
if [ "$(docker info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null)" = "[]" ] && \
   ! grep -q registry-mirrors /etc/docker/daemon.json; then exit 0; fi
printf '%s\n' '{"log-driver": "json-file", "log-opts": {"max-size": "10m"}}' > /etc/docker/daemon.json
service docker restart >/dev/null
for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"""


def on_nodes(fn, nodes=NODES):
    with ThreadPoolExecutor(len(nodes)) as pool:
        return dict(zip(nodes, pool.map(fn, nodes)))


def read(node, path):
    return ssh(node, f"sudo cat {shlex.quote(path)}")


def containerd_pid(node):
    return ssh(node, "pidof containerd").strip()


def lines(out, step, status):
    return [line for line in out.splitlines() if re.match(rf"^\S+ \| {re.escape(step)} \| {status}\b", line)]


@pytest.fixture(scope="module")
def debian_config(lab):
    """Debian's config.toml as the lab's containerd nodes start with it (the proxy host has the same
    untouched copy)."""
    return ssh("lab-proxy", f"cat {CONFIG}")


@pytest.fixture(scope="module")
def mixed(lab, real_charts):
    """The lab on its mixed runtime for this module (lab-node2 restarts on containerd), on its default
    runtime (docker) again after."""
    labhosts.up(nodes=3, charts_dir=real_charts, runtime="mixed")
    yield
    labhosts.up(nodes=3, charts_dir=real_charts, runtime=labhosts.DEFAULT_RUNTIME)


@pytest.fixture
def inventory(tmp_path):
    """The lab's nodes with the lab's registry as their mirror and the pull check's image."""
    path = tmp_path / "hosts.yaml"
    path.write_text(json.dumps({"environments": {"lab": {
        "ssh_config": str(labhosts.state_dir() / "ssh_config"), "user": "deploy", "sudo": True,
        "vars": {"docker_mirrors": [MIRROR], "mirror_check_image": "hello-world"},
        "hosts": {"lab-node1": {"roles": ["node", "control-plane"]},
                  **{n: {"roles": ["node"]} for n in NODES[1:]}}}}}))
    return str(path)


def reset(debian_config):
    on_nodes(lambda n: ssh(n, f"sudo sh -c {shlex.quote(RESET)} <<'EOF'\n{debian_config}EOF"))


@pytest.fixture
def mixed_lab(mixed, debian_config):
    """Each node in its first state before and after a test (see RESET)."""
    reset(debian_config)
    yield
    reset(debian_config)


def pulls_from(log_before: str) -> set[str]:
    """The addresses that fetched hello-world's manifest from the registry since `log_before`."""
    new = registry.access_log()[len(log_before):]
    return {line.split()[0] for line in new.splitlines() if "/v2/library/hello-world/manifests/latest" in line}


def test_a_containerd_node_converges_pulls_through_the_mirror_and_reruns_without_a_restart(mixed_lab, cli, inventory,
                                                                                          debian_config):
    node2 = ["--limit", "lab-node2"]
    pid, log = containerd_pid("lab-node2"), registry.access_log()
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory, *node2)
    assert code == 0, out
    assert "lab-node2 | nodes.mirror | changed | wrote hosts.toml and config.toml, containerd restarted and answers" \
        in out, out
    assert read("lab-node2", HOSTS_TOML) == WANTED_HOSTS
    assert read("lab-node2", CONFIG) == debian_config + SECTION
    assert f"lab-node2 | nodes.pull | ok | containerd pulled {REF}" in out, out
    assert containerd_pid("lab-node2") != pid, "containerd must restart on the new config.toml"
    assert pulls_from(log) == {ADDRESSES["lab-node2"]}

    pid = containerd_pid("lab-node2")
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory, *node2)
    assert code == 0, out
    assert lines(out, "nodes.mirror", "ok") == [
        f"lab-node2 | nodes.mirror | ok | containerd uses {MIRROR} ({HOSTS_TOML})"]
    assert containerd_pid("lab-node2") == pid, "a no-op run must not restart containerd"

    ssh("lab-node2", f"sudo sed -i 's/pull\", \"resolve/pull/' {HOSTS_TOML}")
    code, out = cli("nodes.status", "--env", "lab", "-i", inventory, *node2)
    assert code == 1, out
    assert f"lab-node2 | nodes.status | failed | drift: containerd answers; {HOSTS_TOML} differs" in out
    assert 'lab-node2 |   +capabilities = ["pull", "resolve"]' in out
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory, *node2)
    assert "lab-node2 | nodes.mirror | changed | wrote hosts.toml, no restart needed" in out, out
    assert containerd_pid("lab-node2") == pid, "hosts.toml is read at each pull: no restart"


def test_a_mixed_lab_converges_each_node_for_its_runtime_and_pulls_through_the_mirror(mixed_lab, cli, inventory):
    log = registry.access_log()
    code, out = cli("docker.mirror", "--env", "lab", "-i", inventory, "--batch", "2")
    assert code == 0, out
    assert re.search(r"lab-node1 \| nodes.mirror \| changed \| wrote daemon.json, docker restarted", out), out
    assert re.search(r"lab-node2 \| nodes.mirror \| changed \| wrote hosts.toml and config.toml, containerd "
                     "restarted", out), out
    assert "lab-node1 | nodes.pull | ok | docker pulled" in out and f"lab-node2 | nodes.pull | ok | containerd " \
                                                                    f"pulled {REF}" in out, out
    assert pulls_from(log) == set(ADDRESSES.values())
    code, out = cli("nodes.status", "--env", "lab", "-i", inventory)
    assert code == 0, out
    assert "lab-node3 | nodes.status | ok | docker uses" in out and "lab-node2 | nodes.status | ok | containerd uses" \
        in out


def test_config_toml_with_other_settings_and_comments_is_kept_byte_for_byte(mixed_lab, cli, inventory,
                                                                              debian_config):
    own = ("# site settings: do not remove\n" + debian_config.replace("version = 2\n", "version = 2\noom_score = 0  "
                                                                     "# keep the default\n")
           + '\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs" # as on our nodes\n')
    ssh("lab-node2", f"sudo tee {CONFIG} >/dev/null <<'EOF'\n{own}EOF")
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory, "--limit", "lab-node2")
    assert code == 0, out
    assert read("lab-node2", CONFIG) == own + SECTION
    assert ssh("lab-node2", f"ls {CONFIG}.bhops-*.bak").strip()

    refused = own + '\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["x"]\n'
    ssh("lab-node2", f"sudo tee {CONFIG} >/dev/null <<'EOF'\n{refused}EOF")
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory, "--limit", "lab-node2")
    assert code == 1
    assert (f"lab-node2 | nodes.mirror | failed | {CONFIG} sets the deprecated "
            '[plugins."io.containerd.grpc.v1.cri".registry.mirrors]') in out
    assert read("lab-node2", CONFIG) == refused


def test_a_broken_mirror_is_reported_by_the_pull_check_on_each_runtime(mixed_lab, cli, inventory):
    assert cli("nodes.mirror", "--env", "lab", "-i", inventory)[0] == 0
    with registry.stopped():
        code, out = cli("nodes.status", "--env", "lab", "-i", inventory, "--pull", "hello-world")
    assert code == 1
    failed = lines(out, "nodes.pull", "failed")
    assert len(failed) == 3, out
    assert failed[0].split(" | ")[3].startswith(("docker could not pull hello-world", "containerd could not pull"))
    assert all(f"the mirror ({MIRROR}) did not serve it and the node cannot reach Docker Hub itself" in line
               for line in failed)
    assert len(lines(out, "nodes.status", "ok")) == 3  # the configuration is right: the mirror is down


def test_a_missing_config_toml_is_written_with_the_section_alone_and_containerd_keeps_its_defaults(mixed_lab, cli,
                                                                                                   inventory):
    ssh("lab-node2", f"sudo rm {CONFIG}")
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory, "--limit", "lab-node2")
    assert code == 0, out
    assert read("lab-node2", CONFIG) == "version = 2\n" + SECTION
    assert "lab-node2 | nodes.pull | ok | containerd pulled" in out
    assert 'config_path = "/etc/containerd/certs.d"' in ssh("lab-node2", "sudo containerd config dump")


def test_containerd_failing_to_restart_gets_its_files_back_and_stops_the_rollout(mixed_lab, cli, inventory,
                                                                                debian_config):
    # An operator's edit containerd has not read yet (`config dump` accepts it; the daemon refuses
    # the level when it starts): the restart fails, and so does the one on the restored file.
    broken = debian_config + '\n[debug]\n  level = "nonsense"\n'
    ssh("lab-node2", f"sudo tee {CONFIG} >/dev/null <<'EOF'\n{broken}EOF")
    code, out = cli("nodes.mirror", "--env", "lab", "-i", inventory)
    assert code == 1
    failed = lines(out, "nodes.mirror", "failed")
    assert len(failed) == 1 and failed[0].startswith("lab-node2 | nodes.mirror | failed | "), out
    assert "containerd exited" in failed[0]  # the init script's word, or the wait's
    assert (f"restored {HOSTS_TOML} (removed the new one), {CONFIG} from {CONFIG}.bhops-" in failed[0]
            and "but containerd is still down" in failed[0]), failed[0]
    assert lines(out, "nodes.mirror", "skipped") == [
        "lab-node3 | nodes.mirror | skipped | not touched: rollout stopped after lab-node2 failed"]
    assert read("lab-node2", CONFIG) == broken
    assert ssh("lab-node2", f"test -e {HOSTS_TOML} && echo present", check=False) == ""


def test_the_kubelets_config_yaml_names_the_runtime_when_kubeadm_flags_do_not(mixed_lab, cli, inventory):
    # Kubernetes 1.27+: containerRuntimeEndpoint in the kubelet's config file. lab-node3 runs dockerd and
    # has containerd installed but not running: judged as a containerd node, it is not answering.
    move = "sudo mv /var/lib/kubelet/kubeadm-flags.env /var/lib/kubelet/kubeadm-flags.env.test"
    ssh("lab-node3", f"{move} && echo 'containerRuntimeEndpoint: \"unix:///run/containerd/containerd.sock\"  # 1.27' "
                     "| sudo tee /var/lib/kubelet/config.yaml >/dev/null")
    try:
        code, out = cli("nodes.status", "--env", "lab", "-i", inventory, "--limit", "lab-node3")
    finally:
        ssh("lab-node3", "sudo rm /var/lib/kubelet/config.yaml && sudo mv /var/lib/kubelet/kubeadm-flags.env.test "
                         "/var/lib/kubelet/kubeadm-flags.env")
    assert code == 1
    assert "lab-node3 | nodes.status | failed | drift: containerd is not answering;" in out, out


@pytest.mark.parametrize("version", ["0.2.0-n600.h36369a7", "1.0.0-0.dev.git.2227.hb9fad995"])
def test_mixed_runtimes_build_with_dind_which_needs_a_registry_and_host_is_refused(mixed, cli, tmp_path, version):
    code, out = cli("helm.values", "--env", "lab", "--inventory", str(lab_inventory(tmp_path, chart_version=version)))
    assert code == 1
    assert ("vars.use_registry: false works with the host builder only (image builder dind: lab-node2 runs "
            "containerd, without a docker socket)") in out, out
    forced = lab_inventory(tmp_path, chart_version=version, image_builder="host")
    code, out = cli("helm.values", "--env", "lab", "--inventory", str(forced))
    assert code == 1
    assert "vars.image_builder: host builds through each node's /var/run/docker.sock, which lab-node2 lacks" in out
