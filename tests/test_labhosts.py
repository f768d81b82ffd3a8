"""Where the lab keeps its hosts' files (no lab needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab import hosts as labhosts


@pytest.mark.parametrize("top", labhosts.PRIVATE_DIRS)
def test_a_state_dir_under_a_private_dir_keeps_the_hosts_files_outside_them(top):
    """An overlay refuses an upper dir inside its lower dir (`mount: /opt: ... Too many levels of
    symbolic links`): a checkout in /opt/binderhub-ops must still get a lab."""
    state = Path(top) / "binderhub-ops" / ".lab"
    root = labhosts.hosts_dir(state)
    assert root.parent == labhosts.HOSTS_ROOT
    assert not any(root.is_relative_to(d) for d in labhosts.PRIVATE_DIRS)
    assert labhosts.host_dir("node1", state) == root / "hosts" / "node1"
    assert root == labhosts.hosts_dir(state) != labhosts.hosts_dir(Path(top) / "other" / ".lab")


def test_elsewhere_the_hosts_files_stay_in_the_state_dir():
    assert labhosts.hosts_dir(Path("/work/binderhub-ops/.lab")) == Path("/work/binderhub-ops/.lab")
