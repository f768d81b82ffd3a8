"""BinderHub's image builder on a lab whose nodes all run containerd (no docker socket anywhere): dind is
chosen, its dockerd runs on every node and the smoke's build goes through it; the runbook's host builder,
put back by hand, leaves the image cleaner stuck with the kubelet's message, which status names; asking for
the host builder in the inventory is refused before the release is touched."""
from __future__ import annotations

import json
import re

import pytest

from lab import hosts as labhosts
from tests.conftest import registry_inventory, ssh, until

pytestmark = pytest.mark.lab

CP = "lab-node1"
NODES = ["lab-node1", "lab-node2", "lab-node3"]
DIND = "/var/run/dind/docker.sock"
PINNED = "0.2.0-n600.h36369a7"  # the lab inventory's chart: the runbook's pin
NOT_A_SOCKET = "hostPath type check failed: /var/run/docker.sock is not a socket file"


@pytest.fixture(scope="module")
def containerd_lab(lab, real_charts, tmp_path_factory):
    """The lab on containerd for this module (its cluster starts empty), on docker again after; one
    secrets directory for the module, so that re-deploys there are no-ops."""
    labhosts.up(nodes=3, charts_dir=real_charts, runtime="containerd")
    yield tmp_path_factory.mktemp("containerd-secrets")
    labhosts.up(nodes=3, charts_dir=real_charts, runtime=labhosts.DEFAULT_RUNTIME)


@pytest.fixture
def env(containerd_lab, cli, monkeypatch):
    """The lab's inventory with a registry, as dind needs (tests.conftest.registry_inventory)."""
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(containerd_lab))
    return str(registry_inventory(containerd_lab, cli, monkeypatch))


def daemonsets() -> dict[str, dict]:
    items = json.loads(ssh(CP, "kubectl get daemonsets -n binder -o json"))["items"]
    return {d["metadata"]["name"]: d["status"] for d in items}


def revision() -> int:
    return json.loads(ssh(CP, "helm list -n binder -o json"))[0]["revision"]


def test_a_containerd_lab_deploys_with_dind_and_builds_through_it(env, cli):
    code, out = cli("deploy", "--env", "lab", "--inventory", env)
    assert code == 0, out
    assert re.search(r"smoke \| smoke \| ok \| \S+: built and launched", out), out
    assert ("local | values.builder | ok | image builder dind: lab-node1, lab-node2, lab-node3 run containerd, "
            "without a docker socket") in out
    status = daemonsets()
    assert set(status) == {"binder-dind", "binder-image-cleaner"}
    assert all(s["numberReady"] == s["desiredNumberScheduled"] == 3 for s in status.values()), status
    # the build went through a node's dind: its dockerd holds the image the smoke launched
    built = [line for node in NODES
             for line in ssh(node, f"sudo docker -H unix://{DIND} images --format '{{{{.Repository}}}}'").split()]
    assert any("lab/binder-" in name for name in built), built


def test_the_host_builder_is_refused_before_the_release_is_touched(env, cli, tmp_path, monkeypatch):
    before = revision()
    code, out = cli("helm.upgrade", "--env", "lab", "--inventory",
                    str(registry_inventory(tmp_path, cli, monkeypatch, image_builder="host")))
    assert code == 1
    assert ("vars.image_builder: host builds through each node's /var/run/docker.sock, which lab-node1, lab-node2, "
            "lab-node3 lack") in out
    assert revision() == before


def test_the_runbooks_host_builder_put_back_by_hand_is_named_by_status(env, cli):
    ssh(CP, f"helm upgrade binder jupyterhub/binderhub -n binder --reuse-values --version {PINNED} "
            "--set dind.enabled=false --set imageCleaner.host.enabled=true >/dev/null")
    try:
        until("the image cleaner's pods mount the node's docker socket",
              lambda: NOT_A_SOCKET in ssh(CP, "kubectl get events -n binder --field-selector reason=FailedMount"))
        code, out = cli("cluster.wait", "--env", "lab", "--inventory", env, "--timeout", "1")
        assert code == 1
        assert f'FailedMount: MountVolume.SetUp failed for volume "dockersocket-host" : {NOT_A_SOCKET}' in out, out
        code, out = cli("status", "--env", "lab", "--inventory", env)
        assert code == 1
        for node in NODES:
            assert re.search(rf"^{node} \| status.build \| failed \| .*binder-image-cleaner.*{re.escape(NOT_A_SOCKET)}",
                             out, re.M), out
    finally:
        assert cli("helm.upgrade", "--env", "lab", "--inventory", env)[0] == 0
    until("the image cleaner is ready again", lambda: daemonsets()["binder-image-cleaner"]["numberReady"] == 3)
