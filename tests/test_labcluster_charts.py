"""The real BinderHub charts on the lab's Kubernetes API emulator, of each version it can be, with the
real pinned helm and kubectl: what a real API server of that version accepts, serves and refuses."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml

from lab import charts as labcharts
from tests.test_labcluster import HELM, KUBECTL, REPO, Lab, _emulator

PINNED, CURRENT = labcharts.VERSIONS
# Minimal valid values for both charts. Services are NodePorts: a LoadBalancer stays pending without a
# load-balancer implementation (the lab's is MetalLB, installed by the tasks), and helm --wait waits for it.
VALUES = {
    "config": {"BinderHub": {"hub_url": "http://hub.lab.invalid/"}},
    "service": {"type": "NodePort"},
    "jupyterhub": {"hub": {"services": {"binder": {"apiToken": "a" * 64}}},
                   "proxy": {"secretToken": "b" * 64, "service": {"type": "NodePort"}}},
}
PDBS_OFF = ("pdb.enabled=false,jupyterhub.scheduling.userScheduler.pdb.enabled=false,"
            "jupyterhub.scheduling.userPlaceholder.enabled=false")
WORKLOAD_KINDS = {"Deployment": "deployment", "DaemonSet": "daemonset", "StatefulSet": "statefulset"}

pytestmark = pytest.mark.skipif(
    not (KUBECTL.exists() and HELM.exists()),
    reason="pinned kubectl/helm missing: run scripts/install-k8s-tools")


@pytest.fixture(scope="module")
def values(tmp_path_factory):
    path = tmp_path_factory.mktemp("values") / "values.yaml"
    path.write_text(yaml.safe_dump(VALUES))
    return path


@pytest.fixture(scope="module")
def kube132(tmp_path_factory):
    with _emulator(tmp_path_factory.mktemp("kube132"), "--kube-version", "1.32") as running:
        yield running


@pytest.fixture(scope="module")
def kube124(tmp_path_factory):
    with _emulator(tmp_path_factory.mktemp("kube124"), "--kube-version", "1.24") as running:
        yield running


def _install(lab: Lab, chart, values, namespace: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return lab.helm("upgrade", "--install", "binder", str(chart), "--namespace", namespace, "--create-namespace",
                    "-f", str(values), "--wait", "--timeout", "30s", *extra, check=check)


def _manifest(lab: Lab, namespace: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(lab.helm("get", "manifest", "binder", "-n", namespace).stdout) if d]


def _assert_served(lab: Lab, namespace: str) -> list[dict]:
    """Every object of the release reads back with kubectl, as helm rendered it; returns them."""
    manifest = _manifest(lab, namespace)
    served = json.loads(lab.kubectl("get", "-f", "-", "-n", namespace, "-o", "json",
                                    stdin=yaml.safe_dump_all(manifest)).stdout)["items"]
    assert [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in served] == \
        [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in manifest]
    return manifest


def _rolled_out(lab: Lab, namespace: str, manifest: list[dict]) -> list[str]:
    workloads = [f"{WORKLOAD_KINDS[d['kind']]}/{d['metadata']['name']}"
                 for d in manifest if d["kind"] in WORKLOAD_KINDS]
    for workload in workloads:
        done = lab.kubectl("rollout", "status", workload, "-n", namespace, "--timeout", "30s").stdout
        assert "successfully rolled out" in done or "roll out complete" in done, done
    return workloads


def test_each_version_reports_itself_and_serves_exactly_its_apis(kube132, kube124):
    removed_in_1_25 = {"batch/v1beta1", "discovery.k8s.io/v1beta1", "events.k8s.io/v1beta1", "autoscaling/v2beta1",
                       "policy/v1beta1", "node.k8s.io/v1beta1"}
    for lab, minor in ((kube132, "32"), (kube124, "24")):
        assert json.loads(lab.kubectl("version", "-o", "json").stdout)["serverVersion"]["minor"] == minor
    served132 = set(kube132.kubectl("api-versions").stdout.split())
    served124 = set(kube124.kubectl("api-versions").stdout.split())
    assert removed_in_1_25 <= served124 and not removed_in_1_25 & served132
    assert {"flowcontrol.apiserver.k8s.io/v1", "policy/v1", "autoscaling/v2"} <= served132
    assert "flowcontrol.apiserver.k8s.io/v1" not in served124
    refused = kube132.kubectl("get", "--raw", "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets",
                              check=False)
    assert refused.returncode == 1 and "NotFound" in refused.stderr
    cronjob = json.dumps({"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly"},
                          "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                              "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    kept = kube124.kubectl("apply", "-n", "default", "-f", "-", stdin=cronjob)
    assert kept.stdout.strip() == "cronjob.batch/nightly created"
    assert ("Warning: batch/v1beta1 CronJob is deprecated in v1.21+, unavailable in v1.25+; use batch/v1 CronJob"
            in kept.stderr)
    assert kube124.json("get", "cronjob", "nightly", "-n", "default")["apiVersion"] == "batch/v1"
    gone = kube132.kubectl("apply", "-n", "default", "-f", "-", stdin=cronjob, check=False)
    assert gone.returncode == 1 and ('no matches for kind "CronJob" in version "batch/v1beta1"\n'
                                     "ensure CRDs are installed first") in gone.stderr


def test_a_version_it_cannot_be_is_refused_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab.cluster", "serve", "--kubeconfig", str(tmp_path / "k"),
                           "--kube-version", "1.25"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and not (tmp_path / "k").exists()
    assert proc.stderr.splitlines() == ["lab.cluster serve: --kube-version: unsupported Kubernetes version '1.25': "
                                        "the emulator serves 1.24 or 1.32"]


def test_current_chart_installs_upgrades_rolls_back_and_uninstalls(kube132, real_charts, values):
    chart = real_charts / labcharts.archive_name(CURRENT)
    _install(kube132, chart, values, "current")
    manifest = _assert_served(kube132, "current")
    assert {"policy/v1"} == {d["apiVersion"] for d in manifest if d["kind"] == "PodDisruptionBudget"}
    kube132.kubectl("wait", "--for=jsonpath={.status.currentHealthy}=2", "pdb/user-scheduler", "-n", "current",
                    "--timeout", "10s")  # the disruption controller's count of user-scheduler's ready pods
    budget = kube132.json("get", "pdb", "user-scheduler", "-n", "current")["status"]
    assert (budget["expectedPods"], budget["desiredHealthy"], budget["disruptionsAllowed"]) == (2, 1, 1)
    assert "statefulset/user-placeholder" in _rolled_out(kube132, "current", manifest)
    placeholder = kube132.json("get", "statefulset", "user-placeholder", "-n", "current")
    assert placeholder["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert placeholder["status"]["observedGeneration"] == 1 and placeholder["status"]["replicas"] == 0
    claim = kube132.json("get", "pvc", "hub-db-dir", "-n", "current")
    assert (claim["spec"]["storageClassName"], claim["status"]["phase"]) == ("standard", "Bound")
    secret = kube132.json("get", "secret", "binder-secret", "-n", "current")  # stringData, stored as data
    assert "stringData" not in secret and "hub_url: http://hub.lab.invalid/" in \
        base64.b64decode(secret["data"]["values.yaml"]).decode()

    _install(kube132, chart, values, "current", "--set", "jupyterhub.scheduling.userPlaceholder.replicas=2")
    pods = kube132.json("get", "pods", "-n", "current", "-l", "component=user-placeholder")["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == ["user-placeholder-0", "user-placeholder-1"]
    status = kube132.json("get", "statefulset", "user-placeholder", "-n", "current")["status"]
    assert (status["readyReplicas"], status["updatedReplicas"], status["observedGeneration"]) == (2, 2, 2)
    assert status["currentRevision"] == status["updateRevision"]
    _rolled_out(kube132, "current", _assert_served(kube132, "current"))

    kube132.helm("rollback", "binder", "1", "-n", "current", "--wait", "--timeout", "30s")
    history = json.loads(kube132.helm("history", "binder", "-n", "current", "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    _rolled_out(kube132, "current", _assert_served(kube132, "current"))
    assert kube132.json("get", "pods", "-n", "current", "-l", "component=user-placeholder")["items"] == []

    kube132.helm("uninstall", "binder", "-n", "current", "--wait")
    left = kube132.kubectl("get", "-f", "-", "-n", "current", "--ignore-not-found", "-o", "name",
                           stdin=yaml.safe_dump_all(manifest))
    assert left.stdout == ""


def test_pinned_chart_on_1_32_is_refused_for_its_pdbs_and_installs_with_them_off(kube132, real_charts, values):
    chart = real_charts / labcharts.archive_name(PINNED)
    refused = _install(kube132, chart, values, "pinned", check=False)
    assert refused.returncode == 1
    assert ('resource mapping not found for name: "binderhub" namespace: "" from "": no matches for kind '
            '"PodDisruptionBudget" in version "policy/v1beta1"\nensure CRDs are installed first') in refused.stderr
    _install(kube132, chart, values, "pinned", "--set", PDBS_OFF)
    manifest = _assert_served(kube132, "pinned")
    assert not [d for d in manifest if d["kind"] in ("PodDisruptionBudget", "StatefulSet")]
    _rolled_out(kube132, "pinned", manifest)
    kube132.helm("uninstall", "binder", "-n", "pinned", "--wait")


def test_pinned_chart_on_1_24_installs_as_is(kube124, real_charts, values):
    installed = _install(kube124, real_charts / labcharts.archive_name(PINNED), values, "pinned")
    # The apiserver's Warning header on each request to a deprecated version, as helm relays it.
    assert ("warnings.go:70] policy/v1beta1 PodDisruptionBudget is deprecated in v1.21+, unavailable in v1.25+; "
            "use policy/v1 PodDisruptionBudget") in installed.stderr
    manifest = _assert_served(kube124, "pinned")
    assert sorted(d["metadata"]["name"] for d in manifest if d["apiVersion"] == "policy/v1beta1") == \
        ["binderhub", "user-placeholder", "user-scheduler"]
    # One object per PDB, served at both versions, as the apiserver converts between them.
    at_v1 = kube124.json("get", "poddisruptionbudgets.v1.policy", "binderhub", "-n", "pinned")
    assert at_v1["apiVersion"] == "policy/v1"
    assert "statefulset/user-placeholder" in _rolled_out(kube124, "pinned", manifest)
    kube124.helm("uninstall", "binder", "-n", "pinned", "--wait")
    assert kube124.kubectl("get", "pdb", "-n", "pinned", "-o", "name").stdout == ""


def test_pinned_chart_upgrades_to_the_current_one_and_rolls_back_on_1_32(kube132, real_charts, values):
    _install(kube132, real_charts / labcharts.archive_name(PINNED), values, "upgrade", "--set", PDBS_OFF)
    _install(kube132, real_charts / labcharts.archive_name(CURRENT), values, "upgrade")
    assert "statefulset/user-placeholder" in _rolled_out(kube132, "upgrade", _assert_served(kube132, "upgrade"))
    kube132.helm("rollback", "binder", "1", "-n", "upgrade", "--wait", "--timeout", "30s")
    manifest = _assert_served(kube132, "upgrade")
    assert not [d for d in manifest if d["kind"] in ("PodDisruptionBudget", "StatefulSet")]
    assert kube132.kubectl("get", "pdb,sts", "-n", "upgrade", "-o", "name").stdout == ""
    _rolled_out(kube132, "upgrade", manifest)
    kube132.helm("uninstall", "binder", "-n", "upgrade", "--wait")


def test_the_current_chart_refuses_a_1_24_cluster_by_its_kube_version(kube124, real_charts, values):
    refused = _install(kube124, real_charts / labcharts.archive_name(CURRENT), values, "current", check=False)
    assert refused.returncode == 1
    assert ("chart requires kubeVersion: >=1.28.0-0 which is incompatible with Kubernetes v1.24.17+labcluster"
            in refused.stderr)


def _statefulset(name: str, service: str, replicas: int, policy: str = "OrderedReady") -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": "sets"},
        "spec": {"serviceName": service, "replicas": replicas, "podManagementPolicy": policy,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})


def test_a_statefulset_gets_ordered_pods_claims_defaults_and_immutable_fields(kube132):
    kube132.kubectl("create", "namespace", "sets")
    kube132.kubectl("apply", "-f", "-", stdin=_statefulset("web", "web", 3))
    kube132.kubectl("rollout", "status", "statefulset/web", "-n", "sets", "--timeout", "30s")
    pods = kube132.json("get", "pods", "-n", "sets", "-l", "app=web")["items"]
    assert sorted((p["metadata"]["name"], p["spec"]["hostname"], p["spec"]["subdomain"],
                   p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]) for p in pods) == \
        [(f"web-{i}", f"web-{i}", "web", str(i)) for i in range(3)]
    assert kube132.kubectl("get", "sts", "web", "-n", "sets").stdout.split()[:5] == ["NAME", "READY", "AGE", "web",
                                                                                     "3/3"]
    claims = {c["metadata"]["name"]: c for c in kube132.json("get", "pvc", "-n", "sets")["items"]}
    assert sorted(claims) == ["data-web-0", "data-web-1", "data-web-2"]
    assert {c["status"]["phase"] for c in claims.values()} == {"Bound"}
    spec = kube132.json("get", "statefulset", "web", "-n", "sets")["spec"]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["revisionHistoryLimit"] == 10

    moved = kube132.kubectl("apply", "-f", "-", stdin=_statefulset("web", "elsewhere", 3), check=False)
    assert moved.returncode == 1
    assert ('The StatefulSet "web" is invalid: spec: Forbidden: updates to statefulset spec for fields other than '
            "'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
            "'minReadySeconds' are forbidden") in moved.stderr

    kube132.kubectl("scale", "statefulset/web", "-n", "sets", "--replicas", "1")  # highest ordinal first
    kube132.kubectl("wait", "--for=delete", "pod/web-2", "-n", "sets", "--timeout", "30s")
    kube132.kubectl("wait", "--for=delete", "pod/web-1", "-n", "sets", "--timeout", "30s")
    assert kube132.kubectl("get", "pods", "-n", "sets", "-l", "app=web", "-o", "name").stdout.split() == ["pod/web-0"]
    assert len(kube132.json("get", "pvc", "-n", "sets")["items"]) == 3  # claims outlive their pods (Retain)
    reasons = [(e["reason"], e["message"]) for e in kube132.json("get", "events", "-n", "sets")["items"]
               if e["involvedObject"]["kind"] == "StatefulSet"]
    assert reasons[-2:] == [("SuccessfulDelete", "delete Pod web-2 in StatefulSet web successful"),
                            ("SuccessfulDelete", "delete Pod web-1 in StatefulSet web successful")]


def test_a_claim_binds_only_through_a_class_with_a_provisioner(kube132):
    kube132.kubectl("create", "namespace", "claims")

    def claim(name: str, *storage_class: str) -> dict:
        spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
        if storage_class:
            spec["storageClassName"] = storage_class[0]
        kube132.kubectl("apply", "-n", "claims", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}))
        return kube132.json("get", "pvc", name, "-n", "claims")

    bound = claim("defaulted")
    assert (bound["spec"]["storageClassName"], bound["status"]["phase"]) == ("standard", "Bound")
    volume = kube132.json("get", "pv", bound["spec"]["volumeName"])
    assert volume["spec"]["claimRef"]["name"] == "defaulted" and volume["status"]["phase"] == "Bound"
    assert claim("nowhere", "no-such-class")["status"]["phase"] == "Pending"

    grown = kube132.kubectl("patch", "pvc", "defaulted", "-n", "claims", "-p",
                            '{"spec": {"resources": {"requests": {"storage": "3Gi"}}}}')
    assert grown.returncode == 0
    changed = kube132.kubectl("patch", "pvc", "defaulted", "-n", "claims", "-p",
                              '{"spec": {"accessModes": ["ReadWriteMany"]}}', check=False)
    assert changed.returncode == 1 and 'The PersistentVolumeClaim "defaulted" is invalid: spec: Forbidden: spec is ' \
        "immutable after creation except resources.requests and volumeAttributesClassName for bound claims" \
        in changed.stderr
    kube132.kubectl("delete", "pvc", "defaulted", "-n", "claims")
    gone = kube132.kubectl("get", "pv", bound["spec"]["volumeName"], check=False)
    assert "NotFound" in gone.stderr  # reclaimPolicy Delete


def test_a_state_saved_by_1_32_is_served_by_1_24_at_its_versions(tmp_path):
    state = tmp_path / "objects.json"
    (tmp_path / "1.32").mkdir()
    (tmp_path / "1.24").mkdir()
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "kept"},
              "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "kept"}}}}
    with _emulator(tmp_path / "1.32", "--kube-version", "1.32", "--state", str(state)) as lab:
        lab.kubectl("apply", "-n", "default", "-f", "-", stdin=json.dumps(budget))
    with _emulator(tmp_path / "1.24", "--kube-version", "1.24", "--state", str(state)) as lab:
        old = lab.json("get", "poddisruptionbudgets.v1beta1.policy", "kept", "-n", "default")
        assert (old["apiVersion"], old["spec"]["maxUnavailable"]) == ("policy/v1beta1", 1)
        assert lab.json("get", "pdb", "kept", "-n", "default")["apiVersion"] == "policy/v1"


def test_a_secrets_string_data_is_stored_as_data_and_must_be_strings(kube132):
    kube132.kubectl("create", "namespace", "secrets")

    def secret(string_data: dict) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "secrets"},
                           "stringData": string_data})

    kube132.kubectl("apply", "-f", "-", stdin=secret({"token": "abc"}))
    stored = kube132.json("get", "secret", "s", "-n", "secrets")
    assert (stored["type"], stored["data"], "stringData" in stored) == ("Opaque", {"token": "YWJj"}, False)
    refused = kube132.kubectl("apply", "-f", "-", stdin=secret({"count": 3}), check=False)
    assert refused.returncode == 1 and ('Secret in version "v1" cannot be handled as a Secret: json: cannot '
                                        "unmarshal number into Go struct field Secret.stringData of type string"
                                        ) in refused.stderr
