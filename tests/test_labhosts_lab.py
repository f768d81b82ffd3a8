"""The lab's hosts themselves: one lab per machine, and a cluster that knows every node."""
from __future__ import annotations

import re
import subprocess

import pytest

from lab import hosts as labhosts
from tests.conftest import ssh

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
    assert [h.alias for h in hosts] == ["lab-node1", "lab-node2", "lab-node3", "lab-proxy"]
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
