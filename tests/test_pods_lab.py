"""The lab's kubelet (lab.apps.runner) runs the chart's pods with the real software: BinderHub,
the chart's JupyterHub with KubeSpawner, configurable-http-proxy, and the user pods KubeSpawner
creates, each in its own network namespace with its pod IP, reached through kube-proxy's rules.
Checked from the hosts as a user of the cluster would, with the real kubectl on the control plane
and curl on the proxy host. (A `_lab.py` file: it runs with the lab's tests.)"""
from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.conftest import lab_inventory, run_task, runner_status, ssh, until

pytestmark = pytest.mark.lab
CP, PROXY = "lab-node1", "lab-proxy"
NAMESPACE = "binder"
USER = "podslab"
# The hub API token the chart gives the binder service (pinned: Secret binder-secret; current: Secret hub).
TOKEN = ("T=$( (kubectl -n binder get secret hub -o jsonpath='{.data.hub\\.services\\.binder\\.apiToken}' "
         "2>/dev/null; kubectl -n binder get secret binder-secret -o jsonpath='{.data.binder\\.hub-token}' "
         "2>/dev/null) | base64 -d 2>/dev/null)")


def kubectl(*args: str, check: bool = True) -> str:
    return ssh(CP, shlex.join(["kubectl", "-n", NAMESPACE, *args]), check=check)


def _json(*args: str) -> dict:
    return json.loads(kubectl(*args, "-o", "json"))


def _pod(component: str) -> dict | None:
    items = _json("get", "pods", "-l", f"component={component}")["items"]
    return next((p for p in items if not p["metadata"].get("deletionTimestamp")), None)


def _ready(pod: dict | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _hub_api() -> str:
    """The hub's API URL on the floating IP (the proxy-public Service's load-balancer IP)."""
    service = _json("get", "service", "proxy-public")
    hub = _json("get", "deployment", "hub")["spec"]["template"]["spec"]["containers"][0]
    base = hub["readinessProbe"]["httpGet"]["path"].rpartition("hub/health")[0]
    return f"http://{service['status']['loadBalancer']['ingress'][0]['ip']}{base}hub/api"


def _hub(method: str, path: str, body: dict | None = None) -> str:
    """Ask the hub API as the binder service on the control plane (the token stays in its shell)."""
    data = f" -d {shlex.quote(json.dumps(body))}" if body is not None else ""
    return ssh(CP, f"{TOKEN}; curl -sS -m 30 -o /dev/null -w '%{{http_code}}' -H \"Authorization: token $T\" "
                   f"-X {method}{data} {shlex.quote(_hub_api() + path)}")


def _singleuser_image() -> str:
    """The chart's singleuser sample image, of the hub's era."""
    hub = _json("get", "deployment", "hub")["spec"]["template"]["spec"]["containers"][0]["image"]
    return hub.replace("k8s-hub", "k8s-singleuser-sample")


def _start_server() -> dict:
    """Start USER's server through the hub API (as BinderHub's launcher does); its pod once Ready."""
    _hub("POST", f"/users/{USER}")
    assert _hub("POST", f"/users/{USER}/server", {"token": "podslab", "image": _singleuser_image()}) in ("201", "202")
    return until("the user pod ready", lambda: (p := _pod("singleuser-server")) and _ready(p) and p)


def _running(prefix: str) -> dict:
    """The runner's record of a pod's container: pid, argv, ip."""
    running = runner_status()["running"]
    return next((v for k, v in running.items() if k.startswith(prefix)), {})


def test_the_charts_binder_hub_and_proxy_run_for_real(deployed):
    for component in ("binder", "hub", "proxy"):
        pod = until(f"{component} ready", lambda c=component: (p := _pod(c)) and _ready(p) and p)
        record = _running(pod["metadata"]["name"] + "/")
        assert record["ip"] == pod["status"]["podIP"], record
    # the lab's chart is the pinned one: its hub image's JupyterHub 1.3 (lab.apps.images)
    assert _running("hub-")["argv"][0].endswith("/.venv-hub-0.11/bin/jupyterhub")
    assert "lab.apps.labbinder" in _running("binder-")["argv"]
    node_port = next(p["nodePort"] for p in _json("get", "service", "binder")["spec"]["ports"])
    path = _json("get", "deployment", "binder")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"][
        "httpGet"]["path"]
    versions = json.loads(ssh(PROXY, f"curl -sS -m 5 http://10.77.0.11:{node_port}{path}"))
    assert "binderhub" in versions, versions  # the real BinderHub's /versions, through the NodePort
    answer = json.loads(ssh(PROXY, f"curl -sS -m 5 {_hub_api()}"))
    assert answer["version"].startswith("1.3."), answer  # the real JupyterHub, through the floating IP


def test_a_user_pod_runs_with_its_ip_and_is_gone_after_the_hub_stops_it(deployed):
    try:
        pod = _start_server()
        ip, uid = pod["status"]["podIP"], pod["metadata"]["uid"]
        record = until("the runner's record", lambda: _running(pod["metadata"]["name"] + "/"))
        assert record["ip"] == ip
        assert ssh(CP, f"sudo -n ip netns exec lab-{uid} ip -4 -o addr show dev eth0").split()[3] == f"{ip}/32"
        until("the hub to route the server", lambda: '"ready": true' in ssh(
            CP, f"{TOKEN}; curl -sS -m 5 -H \"Authorization: token $T\" {_hub_api()}/users/{USER}"))
        status = ssh(PROXY, f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' "
                            f"'{_hub_api()[:-len('hub/api')]}user/{USER}/api/status?token=podslab'")
        assert status == "200"  # through the proxy, to the pod IP
        assert _hub("DELETE", f"/users/{USER}/server") in ("202", "204")
        until("the user pod gone", lambda: _pod("singleuser-server") is None)
        until("its process gone", lambda: ssh(CP, f"ps -p {record['pid']} >/dev/null || echo gone", check=False))
        left = ssh(CP, f"sudo -n ip netns list | grep -c {uid}; sudo -n ls /run/labapps/pods | grep -c {uid}",
                   check=False).split()
        assert left == ["0", "0"]
    finally:
        _hub("DELETE", f"/users/{USER}/server")
        _hub("DELETE", f"/users/{USER}")


def test_a_deleted_hub_pod_is_replaced_and_the_new_one_runs(deployed):
    old = _pod("hub")
    kubectl("delete", "pod", old["metadata"]["name"])
    new = until("a new hub pod ready", lambda: (p := _pod("hub")) and p["metadata"]["uid"] != old["metadata"]["uid"]
                 and _ready(p) and p, timeout=60)
    assert _running(new["metadata"]["name"] + "/")["ip"] == new["status"]["podIP"]
    assert json.loads(ssh(PROXY, f"curl -sS -m 5 {_hub_api()}"))["version"]


def test_a_pod_whose_image_cannot_be_pulled_is_not_started(deployed):
    image = _singleuser_image().rpartition(":")[0] + ":no-such-tag"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "podslab-nopull", "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "notebook", "image": image}]}}
    ssh(CP, f"echo {shlex.quote(json.dumps(pod))} | kubectl create -f -")
    try:
        found = until("the pull to fail", lambda: (p := _json("get", "pod", "podslab-nopull"))
                       and (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                       .get("reason") in ("ErrImagePull", "ImagePullBackOff") and p)
        time.sleep(2)  # two rounds of the runner
        assert not _running("podslab-nopull/")
        assert "held" in runner_status()["waiting"].get("podslab-nopull", "")
        assert ssh(CP, f"sudo -n ip netns list | grep -c {found['metadata']['uid']}", check=False).strip() == "0"
    finally:
        kubectl("delete", "pod", "podslab-nopull", "--ignore-not-found")


def test_a_storage_enabled_launch_mounts_the_claim_the_charts_values_name(deployed, tmp_path):
    """storage.per_user makes the chart's `jupyterhub.singleuser.storage.type: dynamic`: KubeSpawner
    creates the claim its pvcNameTemplate names and the pod mounts it at the home directory."""
    inventory = lab_inventory(tmp_path, storage={"per_user": {"capacity": "1Gi"}})
    claim, old = None, _pod("hub")["metadata"]["uid"]
    try:
        code, out = run_task("deploy", "--env", "lab", "--inventory", str(inventory), "--skip-smoke", "--break-lock")
        assert code == 0, out
        until("the new hub ready", lambda: (p := _pod("hub")) and p["metadata"]["uid"] != old and _ready(p) and "200"
               in ssh(PROXY, f"curl -sS -m 3 -o /dev/null -w '%{{http_code}}' {_hub_api()}", check=False), timeout=60)
        pod = _start_server()
        claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                     if "persistentVolumeClaim" in v)
        assert claim.startswith(f"claim-{USER}")
        assert _json("get", "pvc", claim)["status"]["phase"] == "Bound"
        pid = until("the runner's record", lambda: _running(pod["metadata"]["name"] + "/"))["pid"]
        target = next(m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]
                      if m["name"] == next(v["name"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v))
        mounts = ssh(CP, f"sudo -n cat /proc/{pid}/mountinfo")
        sources = [line.split()[3] for line in mounts.splitlines() if line.split()[4] == target.rstrip("/")]
        volume = _json("get", "pvc", claim)["spec"]["volumeName"]  # the claim's data is its volume's
        assert sources and sources[-1].endswith(f"/labapps/volumes/{volume}"), (target, sources)
    finally:
        _hub("DELETE", f"/users/{USER}/server")
        _hub("DELETE", f"/users/{USER}")
        if claim:
            kubectl("delete", "pvc", claim, "--ignore-not-found", "--wait=false")
        code, out = run_task("deploy", "--env", "lab", "--skip-smoke", "--break-lock")
        assert code == 0, out
