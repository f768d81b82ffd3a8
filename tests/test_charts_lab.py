"""The real BinderHub charts on the lab: what helm.upgrade refuses before touching the release,
the object diff of a dry run, the upgrade from the runbook's pin to the current chart and back,
and cluster.wait on the workloads the charts leave unlabelled."""
from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from tests.conftest import forget_hub_database, lab_inventory, ssh
from tests.test_cluster_lab import CP, MARKER, cluster, helm_release, line  # noqa: F401 (a fixture)

pytestmark = pytest.mark.lab

PINNED, CURRENT = "0.2.0-n600.h36369a7", "1.0.0-0.dev.git.2227.hb9fad995"


def test_the_pinned_chart_with_its_pdbs_is_refused_on_1_32_before_the_release_is_touched(cluster, cli, tmp_path):
    with_pdbs = lab_inventory(tmp_path, pod_disruption_budgets=True)
    for dry in ([], ["--dry-run"]):
        code, out = cli("helm.upgrade", "--env", "lab", "--inventory", str(with_pdbs), *dry)
        assert code == 1, out
        refused = line(out, "helm.upgrade")
        assert "failed | nothing was changed: binderhub 0.2.0-n600.h36369a7 renders policy/v1beta1 " \
               "PodDisruptionBudget, which this cluster does not serve" in refused, out
        assert "set pod_disruption_budgets: false in hosts.yaml" in refused
        assert helm_release() is None, "the release was touched"
    assert MARKER not in out
    code, out = cli("helm.upgrade", "--env", "lab")  # the lab's inventory turns them off
    assert code == 0 and "installed binder: revision 1 deployed" in line(out, "helm.upgrade"), out
    assert ssh(CP, "kubectl get poddisruptionbudgets -n binder -o name") == ""


def test_cluster_wait_finds_the_workloads_the_charts_leave_unlabelled(cluster, cli):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    labelled = ssh(CP, "kubectl get deployments,daemonsets -n binder -l release=binder -o name").split()
    assert "deployment.apps/hub" in labelled, labelled
    assert not {"deployment.apps/binder", "daemonset.apps/binder-image-cleaner"} & set(labelled), \
        "the chart now labels them: this test proves nothing"
    code, out = cli("cluster.wait", "--env", "lab")
    assert code == 0, out
    waited = [l.split(" | ")[3].split(":")[0] for l in out.splitlines() if l.startswith(f"{CP} | cluster.wait | ok")]
    assert {"deployment/binder", "daemonset/binder-image-cleaner", "deployment/hub", "deployment/proxy"} <= \
        set(waited), out


def test_upgrade_from_the_pinned_chart_to_the_current_one_and_back(cluster, cli, tmp_path):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    current = lab_inventory(tmp_path, chart_version=CURRENT)

    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", str(current), "--dry-run")
    assert code == 0 and "would change | upgrade binder with binderhub " + CURRENT in out, out
    assert f"chart: binderhub-{PINNED} -> binderhub-{CURRENT}" in out
    assert "+++ Secret binder/hub (rendered)" in out  # z2jh 4 keeps the hub's settings in Secret `hub`
    assert "--- Secret binder/hub-secret (deployed)" in out
    assert MARKER not in out
    assert helm_release()["chart"] == f"binderhub-{PINNED}", "a dry run touched the release"

    code, out = cli("deploy", "--env", "lab", "--inventory", str(current), "--from", "cluster", "--break-lock")
    assert code == 0, out
    assert "upgraded binder: revision 2 deployed" in line(out, "helm.upgrade")
    assert "smoke | smoke | ok" in out
    assert helm_release()["chart"] == f"binderhub-{CURRENT}"
    hub = json.loads(ssh(CP, "kubectl get secret hub -n binder -o json"))
    hub_values = yaml.safe_load(base64.b64decode(hub["data"]["values.yaml"]))
    assert hub_values["hub"]["baseUrl"] == "/jupyterhub/"

    code, out = cli("helm.rollback", "--env", "lab")
    assert code == 0 and "rolled back to revision 1: now revision 3 deployed" in line(out, "helm.rollback"), out
    assert helm_release()["chart"] == f"binderhub-{PINNED}"
    forget_hub_database()  # JupyterHub 1.3 cannot read what JupyterHub 6 upgraded
    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 0 and "ok | revision 3 already runs binderhub " + PINNED in line(out, "helm.upgrade"), out



def test_a_rollout_that_cannot_complete_is_reported_with_its_pods_reason(cluster, cli):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    ssh(CP, "kubectl set image deployment/binder -n binder binder=example.invalid/nope:1 >/dev/null")
    try:
        code, out = cli("cluster.wait", "--env", "lab", "--timeout", "8")
    finally:  # helm would see no change to undo: later deploys must find binder as the chart made it
        ssh(CP, "kubectl rollout undo deployment/binder -n binder >/dev/null")
    assert code == 1, out
    stuck = next(l for l in out.splitlines() if l.startswith(f"{CP} | cluster.wait | failed | deployment/binder"))
    assert re.search(r"pod binder-\S+: container binder (ErrImagePull|ImagePullBackOff)", stuck), stuck
    assert "see `kubectl describe deployment/binder -n binder`" in stuck
    assert f"{CP} | cluster.wait | ok | deployment/hub" in out  # the others are waited for as before
