"""Conformance: pods fail on the emulator as they do on Kubernetes, checked with the real kubectl and
helm. Each expectation cites the Kubernetes documentation or source it comes from."""
from __future__ import annotations

import asyncio
import json
import tarfile
import time

import pytest
import yaml

from lab.cluster import kubelet
from tests.test_labcluster import HELM, KUBECTL, Lab, _emulator

pytestmark = pytest.mark.skipif(not (KUBECTL.exists() and HELM.exists()), reason="pinned kubectl/helm missing")
NODES = ("lab-a", "lab-b", "lab-c")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The emulator with three nodes, and a namespace `pods` for the workloads under test."""
    workdir = tmp_path_factory.mktemp("conformance-pods")
    with _emulator(workdir, *(f"--node={name}" for name in NODES)) as running:
        running.kubectl("create", "namespace", "pods")
        yield running


def _deployment(lab: Lab, name: str, pod_spec: dict, progress_deadline: int = 600) -> None:
    pod_spec = {"containers": [{"name": "web", "image": "nginx:1"}], **pod_spec}
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "pods"},
                "spec": {"replicas": 1, "progressDeadlineSeconds": progress_deadline,
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


def _pod(lab: Lab, app: str, until, timeout: float = 15) -> dict:
    """The app's pod once `until(pod)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        pods = lab.json("get", "pods", "-n", "pods", "-l", f"app={app}")["items"]
        if pods and until(pods[0]):
            return pods[0]
        assert time.monotonic() < deadline, pods
        time.sleep(0.3)


def _waiting(pod: dict) -> dict:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state", {}).get("waiting") or {}


def _condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def _events(lab: Lab, name: str) -> list[tuple[str, str, str]]:
    items = lab.json("get", "events", "-n", "pods", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def _value_images(values) -> set[str]:
    """Every `image: {name, tag}` in a chart's values (each component's image, enabled or not)."""
    if isinstance(values, list):
        return set().union(*map(_value_images, values)) if values else set()
    if not isinstance(values, dict):
        return set()
    image = values.get("image")
    found = {f"{image['name']}:{image['tag']}"} if isinstance(image, dict) and image.get("name") else set()
    return found.union(*map(_value_images, values.values()))


def test_every_image_of_both_real_charts_is_on_the_nodes(real_charts):
    """The lab's nodes have what the charts run (else the lab could not deploy them)."""
    for chart in sorted(real_charts.glob("*.tgz")):
        with tarfile.open(chart) as archive:
            images = set().union(*(_value_images(yaml.safe_load(archive.extractfile(member)))
                                   for member in archive.getmembers() if member.name.endswith("/values.yaml")))
        assert len(images) > 8 and {kubelet.normalise(i) for i in images} <= kubelet.NODE_IMAGES, images


def test_an_image_the_node_cannot_pull_stalls_the_rollout_past_its_deadline(lab):
    # https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff: ErrImagePull, then
    # ImagePullBackOff (container waiting reason); the pod is not Ready.
    _deployment(lab, "badimage", {"containers": [{"name": "web", "image": "example.invalid/nope:1"}]},
                progress_deadline=3)
    pod = _pod(lab, "badimage", lambda p: _waiting(p).get("reason") == "ImagePullBackOff")
    assert pod["status"]["phase"] == "Pending" and _condition(pod, "Ready")["status"] == "False"
    # `kubectl get pods` shows the container's waiting reason as STATUS, not the phase
    # (pkg/printers/internalversion/printers.go printPod).
    row = lab.kubectl("get", "pod", pod["metadata"]["name"], "-n", "pods", "--no-headers").stdout.split()
    assert row[1:4] == ["0/1", "ImagePullBackOff", "0"], row
    events = _events(lab, pod["metadata"]["name"])
    assert ("Warning", "Failed", "Error: ErrImagePull") in events
    assert any(e[:2] == ("Warning", "Failed") and e[2].startswith('Failed to pull image "example.invalid/nope:1"')
               for e in events)
    # https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#failed-deployment:
    # Progressing=False, reason ProgressDeadlineExceeded; `kubectl rollout status` exits non-zero
    # (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go: "exceeded its progress deadline").
    status = lab.kubectl("rollout", "status", "deployment/badimage", "-n", "pods", "--timeout", "20s", check=False)
    assert status.returncode == 1 and 'deployment "badimage" exceeded its progress deadline' in status.stderr
    progressing = _condition(lab.json("get", "deployment/badimage", "-n", "pods"), "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_rollout_status_waits_until_its_timeout_while_a_pod_cannot_start(lab):
    _deployment(lab, "waiting", {"containers": [{"name": "web", "image": "example.invalid/nope:2"}]})
    status = lab.kubectl("rollout", "status", "deployment/waiting", "-n", "pods", "--timeout", "3s", check=False)
    assert status.returncode == 1 and "timed out waiting for the condition" in status.stderr


def test_helm_upgrade_atomic_with_an_unpullable_image_rolls_back(lab, tmp_path):
    # https://helm.sh/docs/helm/helm_upgrade/: --atomic "the upgrade process rolls back changes made
    # in case of failed upgrade"; --wait waits for the Deployment's new ReplicaSet's pods to be ready.
    chart = tmp_path / "web"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("image: nginx:1\n")
    (chart / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: atomic}\nspec:\n  replicas: 1\n"
        "  selector: {matchLabels: {app: atomic}}\n  template:\n    metadata: {labels: {app: atomic}}\n"
        "    spec: {containers: [{name: web, image: '{{ .Values.image }}'}]}\n")
    lab.helm("install", "atomic", str(chart), "-n", "pods", "--wait", "--timeout", "30s")
    started = time.monotonic()
    upgrade = lab.helm("upgrade", "atomic", str(chart), "-n", "pods", "--set", "image=example.invalid/nope:1",
                       "--atomic", "--timeout", "5s", check=False)
    assert upgrade.returncode == 1 and time.monotonic() - started >= 5
    assert "has been rolled back due to atomic being set" in upgrade.stderr
    history = json.loads(lab.helm("history", "atomic", "-n", "pods", "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history][-1] == (3, "deployed")
    lab.kubectl("rollout", "status", "deployment/atomic", "-n", "pods", "--timeout", "20s")
    template = lab.json("get", "deployment/atomic", "-n", "pods")["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "nginx:1"


def test_a_missing_configmap_volume_keeps_the_pod_container_creating(lab):
    # pkg/volume/configmap/configmap.go SetUpAt: `configmap "N" not found` unless optional; the
    # kubelet's FailedMount event (pkg/kubelet/volumemanager): MountVolume.SetUp failed for volume.
    _deployment(lab, "nomount", {"volumes": [{"name": "config", "configMap": {"name": "absent"}}]})
    pod = _pod(lab, "nomount", lambda p: _waiting(p).get("reason") == "ContainerCreating")
    assert pod["status"]["phase"] == "Pending"
    assert ("Warning", "FailedMount", 'MountVolume.SetUp failed for volume "config" : configmap "absent" not found') \
        in _events(lab, pod["metadata"]["name"])
    lab.kubectl("create", "configmap", "absent", "-n", "pods")  # once it exists, the kubelet mounts it
    _pod(lab, "nomount", lambda p: _condition(p, "Ready").get("status") == "True")


def test_a_missing_secret_in_env_is_create_container_config_error(lab):
    # pkg/kubelet/kubelet_pods.go makeEnvironmentVariables: `secret "N" not found`;
    # kuberuntime_container.go: waiting reason CreateContainerConfigError, event `Error: ...`.
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "token"}}}]
    _deployment(lab, "noenv", {"containers": [{"name": "web", "image": "nginx:1", "env": env}]})
    pod = _pod(lab, "noenv", lambda p: _waiting(p).get("reason") == "CreateContainerConfigError")
    assert _waiting(pod)["message"] == 'secret "gone" not found'
    assert ("Warning", "Failed", 'Error: secret "gone" not found') in _events(lab, pod["metadata"]["name"])
    row = lab.kubectl("get", "pod", pod["metadata"]["name"], "-n", "pods", "--no-headers").stdout.split()
    assert row[1:3] == ["0/1", "CreateContainerConfigError"], row  # printPod: the waiting reason


def test_a_strategy_without_type_is_rolling_update_with_its_defaults(lab):
    # pkg/apis/apps/v1/defaults.go SetDefaults_Deployment: an empty strategy type is RollingUpdate,
    # maxUnavailable and maxSurge 25% unless set; SetDefaults_DaemonSet: RollingUpdate, 1 and 0.
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "notype", "namespace": "pods"},
                "spec": {"selector": {"matchLabels": {"app": "notype"}}, "strategy": {"rollingUpdate": {"maxSurge": 1}},
                         "template": {"metadata": {"labels": {"app": "notype"}},
                                      "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}
    daemonset = {**manifest, "kind": "DaemonSet", "metadata": {"name": "notype", "namespace": "pods"},
                 "spec": {k: v for k, v in manifest["spec"].items() if k != "strategy"}}
    lab.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                      "items": [manifest, daemonset]}))
    assert lab.json("get", "deployment/notype", "-n", "pods")["spec"]["strategy"] == \
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}
    assert lab.json("get", "daemonset/notype", "-n", "pods")["spec"]["updateStrategy"] == \
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    # So a second apply of the same manifest is `configured`: the live strategy has a type the
    # manifest lacks, and strategy's retainKeys patch strategy sends `$retainKeys` (apimachinery
    # strategicpatch diffMaps).
    again = lab.kubectl("apply", "-f", "-", stdin=json.dumps(manifest)).stdout.strip()
    assert again == "deployment.apps/notype configured"


def test_a_missing_service_account_keeps_the_replicaset_from_creating_pods(lab):
    # plugin/pkg/admission/serviceaccount/admission.go: "error looking up service account %s/%s: %v";
    # the ReplicaSet controller records FailedCreate "Error creating: ..." (pkg/controller/controller_utils.go).
    _deployment(lab, "nosa", {"serviceAccountName": "robot"})
    deadline = time.monotonic() + 15
    while not (found := [e for e in lab.json("get", "events", "-n", "pods")["items"] if e["reason"] == "FailedCreate"
                         and e["involvedObject"]["name"].startswith("nosa-")]):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert found[0]["message"].endswith(
        'is forbidden: error looking up service account pods/robot: serviceaccount "robot" not found')
    assert not lab.json("get", "pods", "-n", "pods", "-l", "app=nosa")["items"]


@pytest.mark.parametrize(("name", "pod_spec", "reason"), [
    # pkg/scheduler/framework/plugins/nodeaffinity: ErrReasonPod
    ("selector", {"nodeSelector": {"disktype": "ssd"}}, "3 node(s) didn't match Pod's node affinity/selector"),
    ("affinity", {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}]}}}},
     "3 node(s) didn't match Pod's node affinity/selector"),
    # pkg/scheduler/framework/plugins/noderesources/fit.go: "Insufficient cpu"/"Insufficient memory"
    ("huge", {"containers": [{"name": "web", "image": "nginx:1", "resources": {"requests": {"memory": "10Ti"}}}]},
     "3 Insufficient memory"),
])
def test_a_pod_no_node_fits_stays_pending_with_failed_scheduling(lab, name, pod_spec, reason):
    # pkg/scheduler/framework/types.go FitError.Error: "0/N nodes are available: <reasons>."
    _deployment(lab, name, pod_spec)
    pod = _pod(lab, name, lambda p: _condition(p, "PodScheduled").get("status") == "False")
    scheduled = _condition(pod, "PodScheduled")
    assert pod["status"]["phase"] == "Pending" and scheduled["reason"] == "Unschedulable"
    assert scheduled["message"].startswith(f"0/3 nodes are available: {reason}. preemption: 0/3 nodes are available")
    assert ("Warning", "FailedScheduling", scheduled["message"]) in _events(lab, pod["metadata"]["name"])


def test_nodes_post_allocatable_and_taints_keep_pods_off(lab):
    node = lab.json("get", "node", NODES[0])
    assert node["status"]["allocatable"]["cpu"] == "4" and node["status"]["allocatable"]["memory"] == "8Gi"
    for name in NODES:  # pkg/scheduler/framework/plugins/tainttoleration: "node(s) had untolerated taint {k: v}"
        lab.kubectl("taint", "node", name, "dedicated=gpu:NoSchedule")
    try:
        _deployment(lab, "tainted", {})
        pod = _pod(lab, "tainted", lambda p: _condition(p, "PodScheduled").get("status") == "False")
        assert _condition(pod, "PodScheduled")["message"].startswith(
            "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: gpu}.")
    finally:
        for name in NODES:
            lab.kubectl("taint", "node", name, "dedicated=gpu:NoSchedule-")
    lab.kubectl("rollout", "status", "deployment/tainted", "-n", "pods", "--timeout", "20s")


def test_claims_keep_pods_pending_until_bound(lab):
    # pkg/scheduler/framework/plugins/volumebinding: PreFilter `persistentvolumeclaim "N" not found`,
    # and "pod has unbound immediate PersistentVolumeClaims" for a claim no provisioner binds.
    _deployment(lab, "noclaim", {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]})
    pod = _pod(lab, "noclaim", lambda p: _condition(p, "PodScheduled").get("status") == "False")
    assert _condition(pod, "PodScheduled")["message"].startswith(
        '0/3 nodes are available: persistentvolumeclaim "data" not found.')
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "pods"},
             "spec": {"storageClassName": "nowhere", "accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "1Gi"}}}}
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(claim))
    _pod(lab, "noclaim", lambda p: "unbound immediate PersistentVolumeClaims" in
         _condition(p, "PodScheduled").get("message", ""))
    assert lab.json("get", "pvc/data", "-n", "pods")["status"]["phase"] == "Pending"
    # pkg/controller/volume/persistentvolume/pv_controller.go provisionClaim: ProvisioningFailed.
    assert ("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "nowhere" not found') in _events(lab, "data")
    # https://kubernetes.io/docs/concepts/storage/dynamic-provisioning/#defaulting-behavior: a claim
    # without a class gets the default one, whose provisioner binds it; then the pod starts.
    _deployment(lab, "claimed", {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "bound"}}]})
    del claim["spec"]["storageClassName"]
    claim["metadata"]["name"] = "bound"
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(claim))
    assert lab.json("get", "pvc/bound", "-n", "pods")["status"]["phase"] == "Bound"
    lab.kubectl("rollout", "status", "deployment/claimed", "-n", "pods", "--timeout", "20s")
    # https://kubernetes.io/docs/concepts/storage/persistent-volumes/#storage-object-in-use-protection:
    # a claim in use by a pod is not removed until no pod uses it; then its volume goes (reclaim Delete).
    volume = lab.json("get", "pvc/bound", "-n", "pods")["spec"]["volumeName"]
    lab.kubectl("delete", "pvc/bound", "-n", "pods", "--wait=false")
    time.sleep(2)
    assert lab.json("get", "pvc/bound", "-n", "pods")["metadata"]["deletionTimestamp"]
    lab.kubectl("delete", "deployment/claimed", "-n", "pods")
    lab.kubectl("wait", "--for=delete", "pvc/bound", "-n", "pods", "--timeout", "20s")
    lab.kubectl("wait", "--for=delete", f"pv/{volume}", "--timeout", "20s")


def _guarded(lab: Lab, name: str) -> dict:
    """A ready Deployment `name` of one pod, guarded by a PodDisruptionBudget minAvailable 1; its pod."""
    _deployment(lab, name, {})
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "pods"},
              "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": name}}}}
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(budget))
    lab.kubectl("rollout", "status", f"deployment/{name}", "-n", "pods", "--timeout", "20s")
    deadline = time.monotonic() + 10
    while lab.json("get", f"pdb/{name}", "-n", "pods").get("status", {}).get("currentHealthy") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    return _pod(lab, name, lambda p: True)


def test_an_eviction_a_budget_forbids_is_429(lab):
    # https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/#how-api-initiated-eviction-works:
    # "429 Too Many Requests ... the eviction is not currently allowed because of the configured PodDisruptionBudget".
    pod = _guarded(lab, "guarded")
    name = pod["metadata"]["name"]
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "pods"}}
    answer = lab.kubectl("create", "--raw", f"/api/v1/namespaces/pods/pods/{name}/eviction", "-f", "-",
                         stdin=json.dumps(eviction), check=False)
    assert answer.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in answer.stderr
    assert lab.json("get", f"pod/{name}", "-n", "pods")["metadata"]["name"] == name
    # kubectl drain retries a 429 every 5 s until its --timeout (k8s.io/kubectl/pkg/drain/drain.go evictPods).
    node = pod["spec"]["nodeName"]
    try:
        drain = lab.kubectl("drain", node, "--pod-selector", "app=guarded", "--timeout", "2s", check=False)
        assert drain.returncode != 0
        assert (f'error when evicting pods/"{name}" -n "pods" (will retry after 5s): Cannot evict pod as it would '
                "violate the pod's disruption budget.") in drain.stderr
    finally:
        lab.kubectl("uncordon", node)
    assert lab.json("get", f"pod/{name}", "-n", "pods")["metadata"]["name"] == name


def test_the_eviction_check_follows_the_budget():
    """disruption.check_eviction on the emulator in-process (what the eviction subresource asks)."""
    from lab.cluster import disruption, errors
    from lab.cluster.api import LabCluster

    async def scenario() -> None:
        emulator = LabCluster(nodes={"n1": None}, ready_delay=0.05)
        emulator.bootstrap()
        cluster = emulator.cluster
        template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        cluster.create(cluster.resource("apps", "v1", "deployments"), {"metadata": {"name": "web"}, "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template}}, "default")
        cluster.create(cluster.resource("policy", "v1", "poddisruptionbudgets"), {"metadata": {"name": "web"}, "spec": {
            "minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}, "default")
        await asyncio.sleep(0.5)
        first, second = (p["metadata"]["name"] for p in cluster.store.list(cluster.core("pods"), "default"))
        disruption.check_eviction(cluster, "default", first, dry_run=False)  # 2 healthy, 1 needed: allowed
        cluster.delete(cluster.core("pods"), "default", first)
        with pytest.raises(errors.ApiError) as refused:
            disruption.check_eviction(cluster, "default", second, dry_run=False)
        assert (refused.value.code, refused.value.reason) == (429, "TooManyRequests")
        cause = "The disruption budget web needs 1 healthy pods and has 1 currently"
        assert refused.value.details["causes"] == [{"reason": "DisruptionBudget", "message": cause}]

    asyncio.run(scenario())


def test_a_stalled_rolling_update_keeps_the_old_pod_serving(lab):
    # https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-update-deployment:
    # "at least 75% of the desired number of Pods are up" (maxUnavailable 25% of 1 rounds down to 0).
    _deployment(lab, "rolling", {})
    lab.kubectl("rollout", "status", "deployment/rolling", "-n", "pods", "--timeout", "20s")
    lab.kubectl("set", "image", "deployment/rolling", "web=example.invalid/nope:3", "-n", "pods")
    stalled = lab.kubectl("rollout", "status", "deployment/rolling", "-n", "pods", "--timeout", "3s", check=False)
    assert stalled.returncode == 1
    pods = lab.json("get", "pods", "-n", "pods", "-l", "app=rolling")["items"]
    ready = {p["spec"]["containers"][0]["image"]: _condition(p, "Ready")["status"] for p in pods}
    assert ready == {"nginx:1": "True", "example.invalid/nope:3": "False"}
    lab.kubectl("rollout", "undo", "deployment/rolling", "-n", "pods")
    lab.kubectl("rollout", "status", "deployment/rolling", "-n", "pods", "--timeout", "20s")
    deadline = time.monotonic() + 10
    while len(lab.json("get", "pods", "-n", "pods", "-l", "app=rolling")["items"]) != 1:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_a_pod_no_controller_owns_is_pending_then_scheduled_and_watch_true_watches(lab):
    # pkg/registry/core/pod/strategy.go PrepareForCreate: a new pod's status is Pending with its QoS
    # class, whatever was sent; the scheduler binds any unbound pod (pkg/scheduler), as it does
    # KubeSpawner's, and the node's kubelet runs it (phase Running, status.podIP).
    meta = {"name": "bare", "namespace": "pods", "labels": {"app": "bare"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}, "status": {"phase": "Running"}}
    created = json.loads(lab.kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(pod)).stdout)
    try:
        assert (created["status"]["phase"], created["status"]["qosClass"]) == ("Pending", "BestEffort")
        running = _pod(lab, "bare", lambda p: p["status"].get("phase") == "Running")
        assert running["spec"]["nodeName"] in NODES and running["status"]["podIP"].startswith("10.244.")
        # apimachinery pkg/runtime/conversion.go Convert_Slice_string_To_bool: any value but "", "0" and
        # "false" (any case) is true, so `watch=True`, as the Python clients send it, is a watch.
        lines = lab.kubectl("get", "--raw", "/api/v1/namespaces/pods/pods?watch=True&timeoutSeconds=1"
                            "&fieldSelector=metadata.name%3Dbare").stdout.splitlines()
        assert [json.loads(line)["type"] for line in lines] == ["ADDED"]
    finally:
        lab.kubectl("delete", "pod", "bare", "-n", "pods", "--ignore-not-found")


def test_rollout_undo_keeps_the_deployments_own_annotations(lab):
    # kubectl pkg/polymorphichelpers/rollback.go: undo replaces the Deployment's annotations with the
    # old ReplicaSet's (plus the ones the controller never copies); the controller copied the
    # Deployment's annotations to each new ReplicaSet (deployment_util.go copyDeploymentAnnotationsToReplicaSet),
    # so helm's ownership annotations survive an undo and the next `helm upgrade` still owns the object.
    _deployment(lab, "undone", {})
    lab.kubectl("annotate", "deployment/undone", "-n", "pods", "meta.helm.sh/release-name=undone")
    lab.kubectl("rollout", "status", "deployment/undone", "-n", "pods", "--timeout=30s")
    lab.kubectl("set", "image", "deployment/undone", "-n", "pods", "web=nginx:latest")
    lab.kubectl("rollout", "status", "deployment/undone", "-n", "pods", "--timeout=30s")
    lab.kubectl("rollout", "undo", "deployment/undone", "-n", "pods")
    deployment = lab.json("get", "deployment/undone", "-n", "pods")
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == "undone"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
