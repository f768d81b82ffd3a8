"""nodes.mirror and nodes.status (and their aliases docker.mirror, docker.status) on docker nodes, against the
lab's nodes over real SSH, real sudo and real dockerd."""
from __future__ import annotations

import json
import re
import secrets
import shlex
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab import hosts as labhosts
from lab import registry
from tests.conftest import ssh

pytestmark = pytest.mark.lab

NODES = ["lab-node1", "lab-node2", "lab-node3"]
MIRROR = registry.URL  # the lab inventory's mirror
LAB_DEFAULT = {"log-driver": "json-file", "log-opts": {"max-size": "10m"}}
MIRRORS_CMD = "sudo docker info --format '{{json .RegistryConfig.Mirrors}}'"
RESET = """set -e
want='""" + json.dumps(LAB_DEFAULT) + """'
rm -f /etc/docker/daemon.json.bhops-*.bak
if [ "$(cat /etc/docker/daemon.json)" = "$want" ] && \\
   [ "$(docker info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null)" = "[]" ]; then exit 0; fi
printf '%s\\n' "$want" > /etc/docker/daemon.json
service docker stop >/dev/null 2>&1 || true
service docker start >/dev/null
for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1"""


def on_nodes(fn):
    with ThreadPoolExecutor(len(NODES)) as pool:
        return dict(zip(NODES, pool.map(fn, NODES)))


def daemon_json(node):
    return ssh(node, "sudo cat /etc/docker/daemon.json")


def mirrors(node):
    return json.loads(ssh(node, MIRRORS_CMD))


def docker_pid(node):
    return ssh(node, "cat /var/run/docker.pid").strip()


@pytest.fixture
def fresh(lab):
    """Every node in the lab's first state: no mirror in the file or in docker (restarting
    docker only where it is not)."""
    on_nodes(lambda n: ssh(n, f"sudo sh -c {shlex.quote(RESET)}"))


def lines(out, status, step="nodes.mirror"):
    return [l for l in out.splitlines() if re.match(rf"^\S+ \| {re.escape(step)} \| {status}\b", l)]


def recap_row(out, host):
    row = next(l for l in out.splitlines() if l.startswith(host + " ") and "|" not in l)
    return dict(zip(["ok", "changed", "failed", "unreachable", "skipped"], map(int, row.split()[1:])))


def test_converge_then_rerun_changes_nothing(fresh, cli):
    code, out = cli("nodes.mirror", "--env", "lab")
    assert code == 0, out
    assert len(lines(out, "changed")) == 3
    for node, text in on_nodes(daemon_json).items():
        data = json.loads(text)
        assert data["registry-mirrors"] == [MIRROR]
        assert data["log-driver"] == "json-file" and data["log-opts"] == {"max-size": "10m"}, node
    assert all(m == [MIRROR + "/"] for m in on_nodes(mirrors).values())
    assert "RECAP nodes.mirror (lab)" in out and recap_row(out, "lab-node2")["changed"] == 1

    pids = on_nodes(docker_pid)
    code, out = cli("docker.mirror", "--env", "lab")
    assert code == 0, out
    assert len(lines(out, "ok")) == 3 and not lines(out, "changed")
    assert on_nodes(docker_pid) == pids, "a no-op run must not restart docker"


def test_dry_run_shows_the_diff_and_changes_nothing(fresh, cli):
    before, pids = on_nodes(daemon_json), on_nodes(docker_pid)
    code, out = cli("docker.mirror", "--env", "lab", "--dry-run")
    assert code == 0, out
    assert len(lines(out, "would change")) == 3
    assert 'lab-node1 |   +  "registry-mirrors": [' in out
    assert "WOULD CHANGE" in out
    assert on_nodes(daemon_json) == before and on_nodes(docker_pid) == pids
    assert all(m == [] for m in on_nodes(mirrors).values())
    assert not ssh("lab-node1", "ls /etc/docker").count(".bak")


def test_invalid_json_is_left_untouched_and_the_others_converge(fresh, cli):
    ssh("lab-node2", "echo '{\"log-driver\": broken' | sudo tee /etc/docker/daemon.json >/dev/null")
    code, out = cli("docker.mirror", "--env", "lab")
    assert code == 1
    assert re.search(r"lab-node2 \| nodes.mirror \| failed \| /etc/docker/daemon.json is not valid JSON", out)
    assert daemon_json("lab-node2") == '{"log-driver": broken\n'
    assert mirrors("lab-node1") == mirrors("lab-node3") == [MIRROR + "/"]
    assert recap_row(out, "lab-node2")["failed"] == 1


def test_a_stopped_host_is_unreachable_while_the_others_converge(fresh, cli):
    labhosts.stop_host("node3")
    try:
        code, out = cli("docker.mirror", "--env", "lab")
    finally:
        labhosts.start_host("node3")
    assert code == 1
    assert re.search(r"lab-node3 \| nodes.mirror \| unreachable \| cannot reach deploy@10.77.0.13", out)
    assert len(lines(out, "changed")) == 2
    assert recap_row(out, "lab-node3")["unreachable"] == 1
    assert mirrors("lab-node1") == [MIRROR + "/"]


def test_docker_failing_on_the_new_file_is_rolled_back_and_stops_the_rollout(fresh, cli, tmp_path):
    # dockerd refuses a mirror URL with a path, but only when it starts on the new file.
    inv = tmp_path / "hosts.yaml"
    inv.write_text(json.dumps({"environments": {"lab": {
        "ssh_config": str(labhosts.state_dir() / "ssh_config"), "user": "deploy", "sudo": True,
        "vars": {"docker_mirrors": ["https://mirror.example.org/some/path"]},
        "hosts": {n: {"roles": ["node"]} for n in NODES}}}}))
    before, pids = on_nodes(daemon_json), on_nodes(docker_pid)
    code, out = cli("docker.mirror", "--env", "lab", "--inventory", str(inv))
    assert code == 1
    assert re.search(r"lab-node1 \| nodes.mirror \| failed \| .*restored the previous daemon.json "
                     r"from /etc/docker/daemon.json.bhops-\S+\.bak; docker runs again on it", out), out
    assert lines(out, "skipped") == [
        f"{n} | nodes.mirror | skipped | not touched: rollout stopped after lab-node1 failed"
        for n in ("lab-node2", "lab-node3")]
    after = on_nodes(daemon_json)
    assert json.loads(after["lab-node1"]) == json.loads(before["lab-node1"])
    assert after["lab-node2"] == before["lab-node2"] and after["lab-node3"] == before["lab-node3"]
    assert mirrors("lab-node1") == []  # docker is back, on the old file
    assert on_nodes(docker_pid)["lab-node2"] == pids["lab-node2"]


def test_status_reports_mirrors_and_drift(fresh, cli):
    code, out = cli("docker.status", "--env", "lab")
    assert code == 1
    assert len(lines(out, "failed", "nodes.status")) == 3
    assert "drift: docker reports no mirror; daemon.json differs" in out
    assert cli("docker.mirror", "--env", "lab")[0] == 0
    code, out = cli("docker.status", "--env", "lab", "--limit", "lab-node1,lab-node2")
    assert code == 0, out
    assert sorted(lines(out, "ok", "nodes.status")) == [
        f"{n} | nodes.status | ok | docker uses {MIRROR}" for n in NODES[:2]]


def test_one_connection_per_host_per_run(fresh, cli):
    def accepted(node):
        log = labhosts.host_dir(node.removeprefix("lab-")) / "sshd.log"
        return log.read_text().count("Accepted publickey")
    before = {n: accepted(n) for n in NODES}
    assert cli("docker.mirror", "--env", "lab")[0] == 0
    assert {n: accepted(n) - before[n] for n in NODES} == {n: 1 for n in NODES}


def test_unknown_host_keys_are_refused_unless_accepted(lab, cli, tmp_path):
    config = (labhosts.state_dir() / "ssh_config").read_text()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    (tmp_path / "ssh_config").write_text(
        re.sub(r"UserKnownHostsFile \S+", f"UserKnownHostsFile {empty}", config))
    inv = tmp_path / "hosts.yaml"
    inv.write_text(json.dumps({"environments": {"lab": {
        "ssh_config": "ssh_config", "hosts": {"lab-node1": {"roles": ["node"]}}}}}))
    code, out = cli("docker.status", "--env", "lab", "--inventory", str(inv))
    assert code == 1 and "unknown host key for deploy@10.77.0.11" in out and "--accept-new-host-keys" in out
    code, out = cli("docker.status", "--env", "lab", "--inventory", str(inv), "--accept-new-host-keys")
    assert "unknown host key" not in out and "lab-node1 | nodes.status |" in out


def test_invokes_own_dry_is_refused(cli):
    code, out = cli("--dry", "docker.mirror", "--env", "lab")
    assert code == 1 and "use the task's --dry-run" in out


def test_the_guard_refuses_addresses_outside_the_lab():
    import socket
    with pytest.raises(ConnectionRefusedError, match="outside the lab"):
        socket.create_connection(("192.0.2.10", 22), timeout=1)


SPREAD = """apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec: {containers: [{name: web, image: lab/spread:1}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec: {containers: [{name: agent, image: lab/everywhere:1}]}
"""


@pytest.fixture
def spread(fresh):
    """Every node schedulable, and in a namespace of this test's own a Deployment with a pod on
    each node (the scheduler spreads a ReplicaSet's pods) and a DaemonSet; removed at the end."""
    namespace = f"drain-{secrets.token_hex(3)}"
    ssh("lab-node1", f"kubectl uncordon {' '.join(NODES)} >/dev/null && "
                     f"kubectl create namespace {namespace} >/dev/null && "
                     f"printf %s {shlex.quote(SPREAD)} | kubectl apply -n {namespace} -f - >/dev/null && "
                     f"kubectl rollout status deployment/spread -n {namespace} --timeout=30s >/dev/null")
    yield namespace
    ssh("lab-node1", f"kubectl delete namespace {namespace} >/dev/null", check=False)


def test_drain_moves_pods_off_each_node_while_its_docker_restarts(spread, cli):
    def pods_on(node):
        listed = json.loads(ssh("lab-node1", f"kubectl get pods -n {spread} --field-selector "
                                             f"spec.nodeName={node} -o json"))
        return {p["metadata"]["name"]: p["metadata"]["ownerReferences"][0]["kind"] for p in listed["items"]}

    before = pods_on("lab-node2")
    assert sorted(before.values()) == ["DaemonSet", "ReplicaSet"], before
    code, out = cli("docker.mirror", "--env", "lab", "--drain")
    assert code == 0, out
    for node in NODES:
        assert f"drained {node}, wrote daemon.json, docker restarted" in out and f"uncordoned {node}" in out
    nodes = ssh("lab-node1", "kubectl get nodes --no-headers")
    assert "SchedulingDisabled" not in nodes and nodes.count(" Ready ") == 3
    after = pods_on("lab-node2")
    moved = [p for p, kind in before.items() if kind == "ReplicaSet" and p in after]
    assert not moved, f"deployment pods {moved} stayed on lab-node2 through its drain"
    kept = [p for p, kind in before.items() if kind == "DaemonSet"]
    assert all(p in after for p in kept), "daemonset pods are not drained"


KEEP_ALL = """apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: keep-all}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: spread}}
"""


def test_a_disruption_budget_that_blocks_the_drain_stops_the_rollout_with_the_budget_named(spread, cli):
    # kubectl drain retries an eviction refused with 429 until its --timeout (pkg/registry/core/pod/
    # storage/eviction.go; https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/)
    ssh("lab-node1", f"printf %s {shlex.quote(KEEP_ALL)} | kubectl apply -n {spread} -f - >/dev/null")
    before = on_nodes(daemon_json)
    code, out = cli("docker.mirror", "--env", "lab", "--drain", "--drain-timeout", "3")
    assert code == 1, out
    failed = lines(out, "failed")
    assert len(failed) == 1 and failed[0].startswith("lab-node1 | nodes.mirror | failed | cannot drain lab-node1: "
                                                     f"pod {spread}/spread-"), out
    assert (f"is protected by PodDisruptionBudget {spread}/keep-all (0 disruptions allowed); wait until the budget "
            "allows a disruption") in failed[0]
    assert "or run without --drain; node uncordoned, daemon.json untouched, docker not restarted" in failed[0]
    assert [l.split(" | ")[0] for l in lines(out, "skipped")] == ["lab-node2", "lab-node3"], out
    assert on_nodes(daemon_json) == before and mirrors("lab-node1") == []
    assert "SchedulingDisabled" not in ssh("lab-node1", "kubectl get nodes --no-headers")


def test_a_drain_timeout_that_is_not_a_positive_number_is_refused(cli):
    assert cli("docker.mirror", "--env", "lab", "--drain", "--drain-timeout", "0")[1].strip() == \
        "--drain-timeout must be at least 1 second, not 0"


@pytest.mark.parametrize("value", ["0", "ten", "150%", "-1"])
def test_a_batch_that_is_not_a_count_or_a_percentage_is_refused(cli, value):
    out = cli("nodes.mirror", "--env", "lab", "--batch", value)[1].strip()
    assert out == ("--batch takes a whole number of nodes from 1 (e.g. 3) or a percentage of the nodes from 1% to "
                   f"100% (e.g. 25%), not {value!r}")
