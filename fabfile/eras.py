"""The BinderHub chart's eras: which values each known `chart_version` reads.

An era is the stack a chart bundles (its zero-to-jupyterhub subchart, JupyterHub, kubespawner and
oauthenticator); the values templates render for it (templates/config.yaml.j2 says what differs).
Only chart versions whose rendered values were checked against the real chart with `helm template`
(tests/test_values.py) are known. Chart numbering does not follow the subchart (0.2.0-n* builds
bundle z2jh 0.8 up to 2.0, 1.0.0-0.dev.git.* builds 2.0 up to 4.2), so no version range is
guessed. To add a version: look up its `charts/jupyterhub` version, add it to the era of that
stack (or a new era with its own template branches), and to the tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from .inventory import InventoryError


@dataclass(frozen=True)
class Era:
    """One chart stack; the templates branch on `name`."""

    name: str
    chart_versions: tuple[str, ...]
    stack: str

    def __str__(self) -> str:
        return f"{self.name} ({self.stack}): {', '.join(self.chart_versions)}"


#: The runbook's pin: binderhub chart of 2021 (commit 36369a7).
Z2JH_0_11 = Era("z2jh-0.11", ("0.2.0-n600.h36369a7",),
                "z2jh 0.11.1, JupyterHub 1.3, kubespawner 0.15, oauthenticator 0.12.3")
#: The current development chart (binderhub commit b9fad995, 2026).
Z2JH_4 = Era("z2jh-4", ("1.0.0-0.dev.git.2227.hb9fad995",),
             "z2jh 4.2.0, JupyterHub 5.3, kubespawner 7, oauthenticator 17.3")
ERAS = (Z2JH_0_11, Z2JH_4)


def era_of(version: str, where: str = "vars.chart_version") -> Era:
    """The era of chart `version`; an InventoryError naming `where` and the known versions if none."""
    for era in ERAS:
        if version in era.chart_versions:
            return era
    raise InventoryError(f"{where}: chart version {version!r} is not one the values templates know "
                         f"(known: {'; '.join(map(str, ERAS))}); set chart_version to one of them")
