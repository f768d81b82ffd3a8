"""The control-plane tasks against the lab's cluster: real kubectl and helm over SSH."""
from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess

import jinja2
import pytest

from fabfile import rendering, secretfile
from tests.conftest import lab_inventory, ssh

pytestmark = pytest.mark.lab

MARKER = "MARKER-5ec7e7"
CP = "lab-node1"


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["ssh", "-F", str(os.environ["BHOPS_LAB_SSH_CONFIG"]), CP, "kubectl", *args],
                          input=stdin, capture_output=True, text=True, check=True).stdout


def helm_release() -> dict | None:
    rows = json.loads(ssh(CP, "helm list -n binder -a -o json"))
    return rows[0] if rows else None


@pytest.fixture
def cluster(lab, tmp_path, monkeypatch):
    """An empty namespace, no release, no deploy lock; secrets holding a marker, in a private
    secrets dir."""
    ssh(CP, "kubectl delete configmap binderhub-ops-deploy-lock -n kube-system --ignore-not-found >/dev/null; "
            "helm uninstall binder -n binder --wait >/dev/null 2>&1; "
            "kubectl delete namespace binder --ignore-not-found >/dev/null; kubectl create namespace binder")
    secrets_dir = tmp_path / "secrets"
    secretfile.save(secrets_dir / "lab.yaml", {
        "binder_api_token": secretfile.Secret(MARKER + "-api"),
        "proxy_secret_token": secretfile.Secret(MARKER + "-proxy")})
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(secrets_dir))
    monkeypatch.setenv("BHOPS_LAB_SSH_CONFIG", str(lab / "ssh_config"))
    return secrets_dir


def line(out: str, step: str) -> str:
    return next(l for l in out.splitlines() if re.match(rf"^{CP} \| {re.escape(step)} \| ", l))


def test_release_installs_then_rerun_is_a_noop_then_a_change_upgrades(cluster, cli, commands, tmp_path):
    ssh(CP, "kubectl delete namespace binder")
    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 1 and "namespace binder does not exist; create it with `invoke cluster.namespace --env lab`" in out
    code, out = cli("cluster.namespace", "--env", "lab")
    assert code == 0 and "changed | created namespace binder" in line(out, "cluster.namespace")
    assert "ok | namespace binder exists" in line(cli("cluster.namespace", "--env", "lab")[1], "cluster.namespace")

    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 0, out
    assert "changed | installed binder: revision 1 deployed" in line(out, "helm.upgrade")
    assert helm_release()["revision"] == "1"

    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 0 and "ok | revision 1 already runs binderhub 0.2.0-n600.h36369a7" in line(out, "helm.upgrade")
    assert helm_release()["revision"] == "1"

    changed = lab_inventory(tmp_path, image_prefix="lab/changed-")
    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", str(changed))
    assert code == 0 and "changed | upgraded binder: revision 2 deployed" in line(out, "helm.upgrade")
    assert "-    image_prefix: lab/binder-" in out and "+    image_prefix: lab/changed-" in out
    deployed = json.loads(ssh(CP, "helm get values binder -n binder -o json"))
    assert deployed["config"]["BinderHub"]["image_prefix"] == "lab/changed-"
    assert deployed["jupyterhub"]["proxy"]["secretToken"] == MARKER + "-proxy"

    everything = out + "".join(cli(*task, "--env", "lab")[1] for task in
                               (["helm.values"], ["cluster.status"], ["helm.upgrade", "--dry-run"]))
    assert MARKER not in everything, "a secret was printed"
    assert not [c for c in commands if MARKER in c], "a secret was on a command line"
    assert "bhops." not in ssh(CP, "ls -a /tmp"), "the private values directory was left behind"


def test_a_value_the_chart_rejects_fails_before_the_release_is_touched(cluster, cli, tmp_path, monkeypatch):
    current = str(lab_inventory(tmp_path, chart_version="1.0.0-0.dev.git.2227.hb9fad995"))  # it has a schema
    assert cli("helm.upgrade", "--env", "lab", "--inventory", current)[0] == 0
    broken = tmp_path / "templates"
    shutil.copytree(rendering.TEMPLATES, broken)
    with open(broken / "config.yaml.j2", "a") as f:  # an operator's typo: a key the chart does not know
        f.write("extraConfigs: {}\n")
    monkeypatch.setattr(rendering.environment, "loader", jinja2.FileSystemLoader(broken))
    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", current)
    assert code == 1
    assert "failed | values rejected before any change:" in line(out, "helm.upgrade")
    assert "extraConfigs" in out
    release = helm_release()
    assert (release["revision"], release["status"]) == ("1", "deployed")


def _put_release_in_pending_upgrade() -> None:
    """Write what helm writes when an upgrade starts and the client then dies: a new release
    record in status pending-upgrade (helm's storage: a Secret per revision)."""
    items = json.loads(kubectl("get", "secrets", "-n", "binder", "-l", "owner=helm,name=binder", "-o", "json"))["items"]
    latest = max(items, key=lambda s: int(s["metadata"]["labels"]["version"]))
    release = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(latest["data"]["release"]))))
    release["version"] += 1
    release["info"].update(status="pending-upgrade", description="Preparing upgrade")
    data = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(release).encode()))).decode()
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "data": {"release": data},
        "metadata": {"name": f"sh.helm.release.v1.binder.v{release['version']}", "namespace": "binder",
                     "labels": {"owner": "helm", "name": "binder", "status": "pending-upgrade",
                                "version": str(release["version"])}}}))


def test_a_stuck_release_is_detected_and_rollback_recovers_it(cluster, cli):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    _put_release_in_pending_upgrade()
    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 1
    assert ("failed | release binder is stuck in pending-upgrade (history: 1 deployed, 2 pending-upgrade); "
            "nothing was changed; recover with `invoke helm.rollback --env lab --revision 1`") \
        in line(out, "helm.upgrade")
    code, out = cli("helm.rollback", "--env", "lab")
    assert code == 0 and "changed | rolled back to revision 1: now revision 3 deployed" in line(out, "helm.rollback")
    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 0 and "ok | revision 3 already runs" in line(out, "helm.upgrade")


def test_wait_and_status_report_the_release_objects(cluster, cli):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    code, out = cli("cluster.wait", "--env", "lab")
    assert code == 0, out
    waited = re.findall(rf"{CP} \| cluster.wait \| ok \| (\S+): ", out)
    assert sorted(waited) == ["daemonset/binder-image-cleaner", "deployment/binder", "deployment/hub",
                              "deployment/proxy", "deployment/user-scheduler"]
    code, out = cli("cluster.status", "--env", "lab")
    assert code == 0
    assert re.search(rf"{CP} \|   binder +NodePort +\S+ +<none> +80:32574/TCP", out)
    assert re.search(rf"{CP} \|   proxy-public +LoadBalancer", out)
    assert re.search(rf"{CP} \|   hub-\S+ +1/1 +Running +0", out)


def test_wait_without_a_release_says_what_to_do(cluster, cli):
    code, out = cli("cluster.wait", "--env", "lab")
    assert code == 1 and "no workload of release binder in namespace binder; run helm.upgrade" in out


def test_missing_tools_unreachable_cluster_and_unknown_chart_are_clear(cluster, cli, tmp_path):
    proxy_cp = lab_inventory(tmp_path, hosts={"lab-proxy": {"roles": ["proxy", "control-plane"]}})
    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", str(proxy_cp))
    assert code == 1 and re.search(r"(kubectl|helm) is not installed on lab-proxy", out)

    ssh(CP, "sed 's#server: .*#server: http://10.77.0.11:1#' ~/.kube/config > /tmp/dead.kubeconfig")
    dead = tmp_path / "dead"
    dead.mkdir()
    code, out = cli("cluster.namespace", "--env", "lab", "--inventory",
                    str(lab_inventory(dead, kubeconfig="/tmp/dead.kubeconfig")))
    assert code == 1 and "lab-node1 cannot reach the cluster" in out and "check the kubeconfig" in out

    other = tmp_path / "other"
    other.mkdir()
    code, out = cli("helm.repo", "--env", "lab", "--inventory", str(lab_inventory(other, chart_version="9.9.9")))
    assert code == 1 and "Traceback" not in out
    assert "chart version '9.9.9' is not one the values templates know (known: z2jh-0.11" in out
    assert "0.2.0-n600.h36369a7" in out and "1.0.0-0.dev.git.2227.hb9fad995" in out


def test_deploy_recovers_lost_secrets_from_the_release_instead_of_rotating(cluster, cli):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    (cluster / "lab.yaml").unlink()
    code, out = cli("secrets.init", "--env", "lab")
    assert code == 0 and "recovered binder_api_token from the deployed release" in out
    assert secretfile.load(cluster / "lab.yaml")["proxy_secret_token"].reveal() == MARKER + "-proxy"
    assert MARKER not in out
    assert "ok | revision 1 already runs" in line(cli("helm.upgrade", "--env", "lab")[1], "helm.upgrade")


def test_wait_names_a_claim_left_pending_without_a_default_storage_class_and_the_fix(cluster, cli):
    # the DefaultStorageClass admission plugin leaves a claim without a class when no class is the
    # default (https://kubernetes.io/docs/concepts/storage/storage-classes/#default-storageclass);
    # such a claim stays Pending and its pod unschedulable ("pod has unbound immediate
    # PersistentVolumeClaims": pkg/scheduler/framework/plugins/volumebinding)
    default = "storageclass.kubernetes.io/is-default-class"
    ssh(CP, f"kubectl annotate storageclass standard {default}- >/dev/null")
    try:
        assert cli("helm.upgrade", "--env", "lab")[0] == 0
        code, out = cli("cluster.wait", "--env", "lab", "--timeout", "3")
        assert code == 1
        hub = next(l for l in out.splitlines() if f"{CP} | cluster.wait | failed | deployment/hub: " in l)
        assert "unbound immediate PersistentVolumeClaims" in hub, hub
        assert ("PersistentVolumeClaim binder/hub-db-dir is Pending: it names no StorageClass and the cluster has "
                "no default one (StorageClasses: standard)") in hub, hub
        assert f"make one the default (`kubectl annotate storageclass standard {default}=true`" in hub
        assert "jupyterhub.hub.db.type sqlite-memory" in hub
    finally:
        ssh(CP, f"kubectl annotate storageclass standard {default}=true --overwrite >/dev/null")
