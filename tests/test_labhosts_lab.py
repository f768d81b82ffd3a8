"""The lab's hosts themselves: one lab per machine, a cluster that knows every node, of the Kubernetes
version asked for, a chart repository serving the real charts, a registry over TLS from the lab CA, and
nodes running docker or containerd."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import requests
import yaml

from lab import charts as labcharts
from lab import hosts as labhosts
from lab import images, registry
from tests.conftest import REPO, lab_inventory, ssh
from tests.test_cluster_lab import cluster, line  # noqa: F401 (a fixture)

pytestmark = pytest.mark.lab


def test_another_state_dirs_lab_up_or_down_is_refused_and_this_lab_keeps_running(lab, tmp_path):
    """Two checkouts on one machine share bhlab0 and 10.77.0.0/24: the second must not take over
    or tear down the first's lab."""
    other = tmp_path / "other" / ".lab"
    owner = re.escape(str(lab.resolve()))
    for action in (labhosts.up, labhosts.down):
        with pytest.raises(labhosts.LabError, match=rf"belongs to {owner}, not to {re.escape(str(other))}; "
                                                   rf"only one lab runs per machine"):
            action(state=other)
    assert not other.exists() and not labhosts.hosts_dir(other).exists()
    hosts = labhosts.status()
    assert [h.alias for h in hosts] == ["lab-node1", "lab-node2", "lab-node3", "lab-proxy", "lab-registry"]
    assert all(h.running and h.ssh_ok for h in hosts)


def test_after_a_change_of_nodes_the_cluster_has_every_node(lab):
    """The control plane restarts for it, with an address MetalLB's speaker added still on eth0."""
    subprocess.run(["ip", "-n", "bhlab-node1", "addr", "replace", "10.77.0.250/32", "dev", "eth0"], check=True)
    labhosts.up(nodes=1)
    try:
        assert _cluster_nodes() == ["lab-node1"]
    finally:
        labhosts.up(nodes=3)
    assert _cluster_nodes() == ["lab-node1", "lab-node2", "lab-node3"]


def _cluster_nodes() -> list[str]:
    return ssh("lab-node1", "kubectl get nodes -o name").replace("node/", "").split()


def test_the_chart_repository_serves_both_real_charts_to_helm(lab, real_charts):
    """`helm search repo` on the control plane finds both versions (pre-releases: `--devel`), and the
    repository's archives are the real charts, byte for byte."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the lab, never via a proxy
    index = yaml.safe_load(direct.open("http://10.77.0.11:8879/index.yaml", timeout=10).read())
    assert {e["version"]: e["digest"] for e in index["entries"]["binderhub"]} == {
        v: hashlib.sha256((real_charts / labcharts.archive_name(v)).read_bytes()).hexdigest()
        for v in labcharts.VERSIONS}
    found = ssh("lab-node1", 'd=$(mktemp -d) && export HELM_REPOSITORY_CONFIG="$d/repositories.yaml" '
                'HELM_REPOSITORY_CACHE="$d/cache" && helm repo add lab http://10.77.0.11:8879/ >/dev/null && '
                'helm search repo lab/binderhub --devel --versions -o json; rc=$?; rm -rf "$d"; exit $rc')
    assert sorted(c["version"] for c in json.loads(found)) == sorted(labcharts.VERSIONS)


def test_lab_up_with_kube_version_1_24_serves_1_24_where_the_pinned_chart_installs_as_is(lab, cluster, cli,
                                                                                         tmp_path):
    """One restart there (and one back): `invoke lab.up --kube-version 1.24`, then a plain `lab.up`;
    there, the runbook's chart installs with its policy/v1beta1 PodDisruptionBudgets."""
    try:
        assert "Kubernetes 1.24 on lab-node1" in _invoke("lab.up", "--kube-version", "1.24")
        control_plane = labhosts._pid(lab, labhosts.CONTROL_PLANE)
        assert _server_version() == "1.24"
        assert "Kubernetes 1.24 on lab-node1" in _invoke("lab.up")
        assert labhosts._pid(lab, labhosts.CONTROL_PLANE) == control_plane  # kept, not restarted
        assert "Kubernetes 1.24 on lab-node1" in _invoke("lab.status")

        ssh("lab-node1", "kubectl create namespace binder")  # the restarted cluster starts empty
        with_pdbs = lab_inventory(tmp_path, pod_disruption_budgets=True)
        code, out = cli("helm.upgrade", "--env", "lab", "--inventory", str(with_pdbs))
        assert code == 0 and "installed binder: revision 1 deployed" in line(out, "helm.upgrade"), out
        assert len(ssh("lab-node1", "kubectl get poddisruptionbudgets.v1beta1.policy -n binder -o name").split()) == 3
        assert cli("cluster.wait", "--env", "lab")[0] == 0
    finally:
        labhosts.up(nodes=3, kube_version=labhosts.DEFAULT_KUBE_VERSION)
    assert _server_version() == labhosts.DEFAULT_KUBE_VERSION


def _invoke(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _server_version() -> str:
    version = json.loads(ssh("lab-node1", "kubectl version -o json"))["serverVersion"]
    return f"{version['major']}.{version['minor']}"


def test_the_registry_serves_the_labs_image_over_tls_the_hosts_and_the_client_trust(lab):
    """curl on a node (the hosts' system bundle) and requests here (`<state>/ca.crt`) get the image's manifest;
    a stopped registry refuses connections and answers again after."""
    image, accept = images.hello_world(), f"Accept: {images.MANIFEST_TYPE}"
    manifest = f"{registry.URL}/v2/library/hello-world/manifests/latest"
    assert ssh("lab-node2", f"curl -sSf -H '{accept}' {manifest} | sha256sum").split()[0] == image.digest[7:]
    assert requests.get(f"{registry.URL}/v2/_catalog", verify=lab / "ca.crt", timeout=5).json() == {
        "repositories": ["library/hello-world"]}
    assert ssh("lab-proxy", "sudo openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt /etc/ssl/bhlab/proxy.crt "
                            "&& sudo stat -c %a /etc/ssl/bhlab/proxy.key") == "/etc/ssl/bhlab/proxy.crt: OK\n600\n"
    with registry.stopped():
        assert "curl: (7) Failed to connect" in ssh("lab-node2", f"curl -sS {registry.URL}/v2/ 2>&1", check=False)
    assert registry.answers(lab)


def test_runtime_mixed_runs_containerd_on_even_nodes_which_pull_through_hosts_toml_and_docker_restores(lab):
    """Only lab-node2 restarts each way (not the control plane); on it no dockerd runs, and `ctr images pull
    --hosts-dir` reaches the registry only once hosts.toml names it (the registry's access log shows the pull)."""
    control_plane = labhosts._pid(lab, labhosts.CONTROL_PLANE)
    pull = ("sudo ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d docker.io/library/hello-world:latest"
            " >/dev/null 2>&1 && echo pulled || echo failed")
    hosts_toml = ('server = "https://registry-1.docker.io"\n[host."https://10.77.0.6:5000"]\n'
                  '  capabilities = ["pull", "resolve"]\n')
    try:
        labhosts.up(nodes=3, runtime="mixed")
        assert [(h.alias, h.runtime, h.service_ok) for h in labhosts.status()[:3]] == [
            ("lab-node1", "docker", True), ("lab-node2", "containerd", True), ("lab-node3", "docker", True)]
        assert ssh("lab-node2", "pgrep -x dockerd; cat /var/lib/kubelet/kubeadm-flags.env") == (
            'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
            '--pod-infra-container-image=registry.k8s.io/pause:3.9"\n')
        ssh("lab-node2", "sudo rm -rf /etc/containerd/certs.d")  # as another test may have left it
        assert ssh("lab-node2", pull) == "failed\n"
        ssh("lab-node2", "sudo mkdir -p /etc/containerd/certs.d/docker.io && sudo tee "
                         f"/etc/containerd/certs.d/docker.io/hosts.toml >/dev/null <<'EOF'\n{hosts_toml}EOF")
        seen = len(registry.access_log())
        assert ssh("lab-node2", pull) == "pulled\n"
        assert _logged(r'^10\.77\.0\.12 - - .* "HEAD /v2/library/hello-world/manifests/latest\?ns=docker\.io '
                       r'HTTP/1\.1" 200 .*"containerd/1\.6', seen)
    finally:
        if labhosts.node_runtime("node2", labhosts.lab_runtime()) == "containerd":
            ssh("lab-node2", "sudo rm -rf /etc/containerd/certs.d && sudo ctr -n k8s.io images rm "
                             "docker.io/library/hello-world:latest >/dev/null", check=False)
        labhosts.up(nodes=3, runtime="docker")
    assert [h.runtime for h in labhosts.status()] == ["docker"] * 3 + [None, None]
    assert all(h.service_ok for h in labhosts.status())
    assert labhosts._pid(lab, labhosts.CONTROL_PLANE) == control_plane


def _logged(pattern: str, seen: int) -> bool:
    """Whether the registry's access log gets a line matching `pattern` past its first `seen` characters
    (it writes a request's line once the answer has gone out: allow it a moment)."""
    deadline = time.monotonic() + 3
    while not (found := re.search(pattern, registry.access_log()[seen:], re.M)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(found)
