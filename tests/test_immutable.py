"""Which rendered objects an upgrade cannot patch over the live ones (fabfile/immutable.py), and
how helm's own refusal is reported; the fields are Kubernetes' (cited in fabfile/immutable.py)."""
from __future__ import annotations

import copy

from fabfile import helm, immutable, manifests

SELECTOR = {"matchLabels": {"app": "binder", "component": "binder"}}


def deployment(selector=SELECTOR, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "binder"},
            "spec": {"selector": copy.deepcopy(selector), "replicas": 1,
                     "template": {"metadata": {"labels": dict(selector["matchLabels"])},
                                  "spec": {"containers": [{"name": "b", "image": "b:1"}]}}, **spec}}


def live(obj: dict, **spec) -> dict:
    """`obj` as the API server keeps it: defaults filled in, status and metadata added."""
    out = copy.deepcopy(obj)
    out["metadata"].update(namespace="binder", uid="u", resourceVersion="7")
    out["spec"].update(spec)
    out["status"] = {"observedGeneration": 1}
    return out


def conflicts(rendered: list[dict], existing: list[dict]) -> list[str]:
    found = immutable.conflicts(rendered, {manifests.key(o, "binder"): o for o in existing}, "binder")
    return [str(c) for c in found]


def test_a_changed_deployment_selector_is_found_a_changed_image_is_not():
    old = live(deployment(), progressDeadlineSeconds=600, strategy={"type": "RollingUpdate"})
    new = deployment()
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "b:2"
    assert conflicts([new], [old]) == []
    wider = deployment({"matchLabels": {**SELECTOR["matchLabels"], "release": "binder"}})
    assert conflicts([wider], [old]) == ["Deployment binder/binder (spec.selector)"]


def test_a_selector_that_drops_a_label_is_a_change_though_the_live_one_covers_it():
    old = live(deployment({"matchLabels": {**SELECTOR["matchLabels"], "release": "binder"}}))
    assert conflicts([deployment()], [old]) == ["Deployment binder/binder (spec.selector)"]


def test_objects_not_in_the_cluster_are_created_not_patched():
    assert conflicts([deployment()], []) == []


def test_statefulset_fields_and_their_defaults():
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "user-placeholder"},
           "spec": {"selector": SELECTOR, "serviceName": "placeholder", "replicas": 0,
                    "template": {"metadata": {"labels": SELECTOR["matchLabels"]}, "spec": {"containers": []}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    old = live(sts, podManagementPolicy="OrderedReady", revisionHistoryLimit=10)
    old["spec"]["volumeClaimTemplates"][0].update(apiVersion="v1", kind="PersistentVolumeClaim",
                                                   status={"phase": "Pending"})
    old["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = "Filesystem"
    scaled = copy.deepcopy(sts)
    scaled["spec"]["replicas"] = 3
    assert conflicts([scaled], [old]) == [], "defaults and replicas are no change"
    moved = copy.deepcopy(sts)
    moved["spec"].update(serviceName="other", podManagementPolicy="Parallel")
    moved["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert conflicts([moved], [old]) == [
        "StatefulSet binder/user-placeholder (spec.serviceName, spec.volumeClaimTemplates, spec.podManagementPolicy)"]
    parallel = live(sts, podManagementPolicy="Parallel")
    assert conflicts([sts], [parallel]) == ["StatefulSet binder/user-placeholder (spec.podManagementPolicy)"], \
        "left out, podManagementPolicy goes back to its default OrderedReady"


def test_a_pvc_spec_may_change_only_its_requests():
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "hub-db-dir"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    old = live(pvc, storageClassName="standard", volumeMode="Filesystem", volumeName="pvc-1")
    bigger = copy.deepcopy(pvc)
    bigger["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert conflicts([bigger], [old]) == []
    other = copy.deepcopy(pvc)
    other["spec"].update(accessModes=["ReadWriteMany"], storageClassName="fast")
    assert conflicts([other], [old]) == ["PersistentVolumeClaim binder/hub-db-dir (spec.accessModes, "
                                         "spec.storageClassName)"]


def test_a_service_cluster_ip_counts_only_where_the_chart_sets_one():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hub"},
           "spec": {"ports": [{"port": 8081}], "selector": {"app": "hub"}}}
    old = live(svc, clusterIP="10.96.0.12", type="ClusterIP")
    assert conflicts([svc], [old]) == []
    headless = copy.deepcopy(svc)
    headless["spec"]["clusterIP"] = "None"
    assert conflicts([headless], [old]) == ["Service binder/hub (spec.clusterIP)"]


def test_a_job_template_change_is_found_the_generated_selector_is_not():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "m:1"}]}}}}
    old = live(job, selector={"matchLabels": {"controller-uid": "u"}}, backoffLimit=6)
    old["spec"]["template"]["metadata"] = {"labels": {"controller-uid": "u", "job-name": "migrate"}}
    assert conflicts([job], [old]) == []
    newer = copy.deepcopy(job)
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = "m:2"
    assert conflicts([newer], [old]) == ["Job binder/migrate (spec.template)"]


def test_refs_name_each_watched_object_as_kubectl_does():
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p", "namespace": "other"}}
    assert immutable.refs([deployment(), config, pvc], "binder") == {
        "binder": ["deployment.apps/binder"], "other": ["persistentvolumeclaim/p"]}


def test_helms_own_immutable_refusal_names_the_object_and_the_fix():
    # what helm 3.17 prints against the lab (tests/test_conformance.py) and a real cluster
    stderr = ('Error: UPGRADE FAILED: cannot patch "binder" with kind Deployment: Deployment.apps "binder" is '
              'invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b"}, '
              'MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable\n')
    text = helm._helm_failure(stderr, "binder", "prod")
    assert "\n" not in text
    assert "immutable fields of Deployment binder (spec.selector)" in text
    assert "delete them (`kubectl delete deployment binder -n binder`;" in text and "helm.upgrade --env prod" in text
    statefulset = ('Error: UPGRADE FAILED: cannot patch "user-placeholder" with kind StatefulSet: StatefulSet.apps '
                   '"user-placeholder" is invalid: spec: Forbidden: updates to statefulset spec for fields other than '
                   "'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                   "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden\n")
    assert "immutable fields of StatefulSet user-placeholder (spec)" in helm._helm_failure(statefulset, "b", "prod")
    assert helm._helm_failure("Error: UPGRADE FAILED: timed out\n", "binder", "prod") == \
        "helm upgrade failed: Error: UPGRADE FAILED: timed out"
