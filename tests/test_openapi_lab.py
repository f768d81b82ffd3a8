"""openapi.check on the lab: the real chart's rendered objects against the schemas the lab's cluster
publishes at /openapi/v3, read over SSH with the real kubectl."""
from __future__ import annotations

import subprocess

import pytest

from fabfile import inventory, manifests, openapi
from fabfile.connections import Pool
from tests.test_labcluster import HELM

pytestmark = pytest.mark.lab


def test_the_check_catches_an_unknown_field_the_real_chart_renders_clean(lab, real_charts, monkeypatch):
    monkeypatch.setenv("BHOPS_LAB_SSH_CONFIG", str(lab / "ssh_config"))
    chart = sorted(real_charts.glob("binderhub-*.tgz"))[-1]
    objects = manifests.parse(subprocess.run([HELM, "template", "binder", str(chart)], capture_output=True,
                                             text=True, check=True).stdout)
    host = inventory.load("lab").with_role("control-plane")[0]
    pool = Pool()
    try:
        conn = pool.get(host)
        assert openapi.check(conn, host, objects) == []
        hub = next(o for o in objects if (o["kind"], o["metadata"]["name"]) == ("Deployment", "hub"))
        hub["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
        hub["spec"]["replicas"] = "one"
        assert openapi.check(conn, host, objects) == [
            "Deployment/hub: spec.replicas: string given, integer wanted",
            "Deployment/hub: spec.template.spec.containers[0].imagePullPolicyy: unknown field"]
    finally:
        pool.close()
