"""The image builder follows the nodes' runtimes and the chart's era; a setting that cannot work is refused."""
import pytest

from fabfile import buildpath
from fabfile.inventory import InventoryError

PINNED, CURRENT = "z2jh-0.11", "z2jh-4"
DOCKER = {"n1": "docker", "n2": "docker"}
MIXED = {"n1": "docker", "n2": "containerd", "n3": "containerd"}


@pytest.mark.parametrize("era", [PINNED, CURRENT])
def test_auto_keeps_host_docker_where_every_node_runs_it_and_dind_elsewhere(era):
    assert buildpath.choose(era, DOCKER).name == "host"
    chosen = buildpath.choose(era, MIXED)
    assert (chosen.name, chosen.socket) == ("dind", "/var/run/dind/docker.sock")
    assert chosen.why == "n2, n3 run containerd, without a docker socket"
    assert buildpath.choose(era, {"n1": None}).name == "dind"  # CRI-O or unknown: dind needs no runtime of the node's


@pytest.mark.parametrize("era", [PINNED, CURRENT])
def test_host_on_nodes_without_docker_is_refused_naming_them(era):
    with pytest.raises(InventoryError, match=r"^vars.image_builder: host builds through each node's "
                                             r"/var/run/docker.sock, which n2, n3 lack .*set image_builder: dind"):
        buildpath.choose(era, MIXED, "host")
    assert buildpath.choose(era, DOCKER, "host").name == "host"


def test_pink_only_with_the_current_chart():
    with pytest.raises(InventoryError, match="pink needs the current chart"):
        buildpath.choose(PINNED, MIXED, "pink")
    pink = buildpath.choose(CURRENT, MIXED, "pink")
    assert (pink.socket, pink.daemonsets("bh")) == ("/var/run/pink/podman.sock", ("bh-pink", "bh-image-cleaner"))


def test_a_setting_wins_over_the_runtimes():
    assert buildpath.choose(PINNED, DOCKER, "dind").name == "dind"
    assert buildpath.choose(PINNED, DOCKER).daemonsets("binder") == ("binder-image-cleaner",)


@pytest.mark.parametrize("era", [PINNED, CURRENT])
def test_without_a_registry_only_the_host_builder_works(era):
    """What dind builds stays in dind's docker: the kubelet pulls from a registry or runs the node's own images."""
    assert buildpath.choose(era, DOCKER, use_registry=False).name == "host"
    with pytest.raises(InventoryError, match=r"^vars.use_registry: false works with the host builder only \(image "
                                             r"builder dind: n2, n3 run containerd, without a docker socket\)"):
        buildpath.choose(era, MIXED, use_registry=False)
    with pytest.raises(InventoryError, match="use_registry: false works with the host builder only"):
        buildpath.choose(era, DOCKER, "dind", use_registry=False)
