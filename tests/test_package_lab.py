"""The installed `bhops` command against the lab, from a directory outside the checkout."""
from __future__ import annotations

import pytest

from tests.conftest import lab_inventory
from tests.test_package import bhops, venv, wheel  # noqa: F401 (the fixtures)

pytestmark = pytest.mark.lab


def test_bhops_dry_run_deploys_the_lab_from_outside_the_checkout(bhops, deployed, tmp_path):
    """A dry run of the whole deploy from a directory outside the checkout: the logs go beside
    the inventory given, nothing would change on the deployed lab."""
    inventory = lab_inventory(tmp_path)
    code, out = bhops("deploy", "--dry-run", "--skip-smoke", "--env", "lab", "--inventory", str(inventory),
                      env={"BHOPS_SECRETS_DIR": str(deployed)})
    assert code == 0, out
    assert "RECAP" in out and "| failed |" not in out
    assert list((tmp_path / "logs").glob("deploy-lab-*.log")), out
