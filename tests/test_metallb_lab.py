"""MetalLB and the floating IP against the lab's cluster: both pool formats, the audit, and the
runbook's "another LoadBalancer took the IP" case, with real kubectl over SSH."""
from __future__ import annotations

import base64
import json
import subprocess

import pytest

from lab import hosts as labhosts
from tests.conftest import lab_inventory, ssh

pytestmark = pytest.mark.lab

CP = "lab-node1"
IP = "10.77.0.240"
SQUATTER = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "squatter", "namespace": "other",
                         "annotations": {"metallb.universe.tf/loadBalancerIPs": IP}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}}


def kubectl_apply(obj: dict) -> None:
    subprocess.run(["ssh", "-F", str(labhosts.state_dir() / "ssh_config"), CP, "kubectl", "apply", "-f", "-"],
                   input=json.dumps(obj), capture_output=True, text=True, check=True)


def service(ns: str, name: str) -> dict:
    return json.loads(ssh(CP, f"kubectl get service {name} -n {ns} -o json"))


def holds(ns: str, name: str) -> str | None:
    ingress = service(ns, name).get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


@pytest.fixture
def bare(lab, tmp_path, monkeypatch, cli):
    """No MetalLB, no release, no squatter; secrets in a private directory."""
    ssh(CP, "helm uninstall binder -n binder --wait >/dev/null 2>&1; "
            "kubectl delete namespace metallb-system other --ignore-not-found >/dev/null; "
            "kubectl delete crd ipaddresspools.metallb.io l2advertisements.metallb.io --ignore-not-found >/dev/null; "
            "kubectl create namespace binder >/dev/null 2>&1; kubectl create namespace other >/dev/null; true")
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(tmp_path / "secrets"))
    assert cli("secrets.init", "--env", "lab")[0] == 0
    return tmp_path


def memberlist() -> dict:
    return json.loads(ssh(CP, "kubectl get secret memberlist -n metallb-system -o json"))


def test_pool_in_the_configmap_format_for_metallb_0_9(bare, cli, commands):
    old = lab_inventory(bare, metallb_manifest=str(labhosts.REPO / "lab/metallb/metallb-v0.9.3.yaml"),
                        floating_ip_request="loadBalancerIP")
    install = ("metallb.install", "--env", "lab", "--inventory", str(old))
    code, out = cli(*install, "--dry-run")
    assert code == 0 and "would change | apply" in out and "and create Secret metallb-system/memberlist" in out
    code, out = cli(*install)
    assert code == 0 and "created Secret metallb-system/memberlist" in out, out
    # 0.9's speakers need the key the operator creates once (the manifest's header); made on the host,
    # it shows in no output, command line or log.
    created = memberlist()
    key = base64.b64decode(created["data"]["secretkey"]).decode()
    assert len(key) == 172 and "ownerReferences" not in created["metadata"]
    assert key not in out and not any(key in command for command in commands)
    assert not [f for f in bare.rglob("*") if f.is_file() and key in f.read_text(errors="replace")]
    code, out = cli(*install)
    assert code == 0 and "ok | MetalLB 0.9.3 runs" in out and memberlist() == created
    ssh(CP, "kubectl delete secret memberlist -n metallb-system >/dev/null")  # lost: made again, nothing else
    code, out = cli(*install)
    assert code == 0 and "MetalLB 0.9.3: created Secret metallb-system/memberlist" in out
    assert memberlist()["data"] != created["data"]
    code, out = cli("metallb.pool", "--env", "lab", "--inventory", str(old))
    assert code == 0 and "MetalLB 0.9.3: set pool default" in out and "(ConfigMap metallb-system/config)" in out
    config = json.loads(ssh(CP, "kubectl get configmap config -n metallb-system -o json"))["data"]["config"]
    assert "10.77.0.240-10.77.0.245" in config and "layer2" in config
    assert "ok | MetalLB 0.9.3: pool default holds" in cli("metallb.pool", "--env", "lab", "--inventory", str(old))[1]
    code, out = cli("metallb.pool", "--env", "lab")  # the default inventory asks with the 0.13+ annotation
    assert code == 1 and "set vars.floating_ip_request: loadBalancerIP" in out
    assert cli("cluster.floating-ip", "--env", "lab", "--inventory", str(old))[0] == 0
    assert holds("binder", "proxy-public") == IP


def test_pool_as_ipaddresspool_for_metallb_0_14_and_proxy_public_holds_the_ip(bare, cli):
    code, out = cli("metallb.install", "--env", "lab")
    assert code == 0 and "installed MetalLB 0.14.8" in out and "created Secret" not in out
    owner = memberlist()["metadata"]["ownerReferences"][0]  # 0.13+: the controller makes it
    assert (owner["kind"], owner["name"]) == ("Deployment", "controller")
    code, out = cli("metallb.pool", "--env", "lab")
    assert code == 0 and "(IPAddressPool + L2Advertisement)" in out
    pools = json.loads(ssh(CP, "kubectl get ipaddresspools -n metallb-system -o json"))["items"]
    assert [p["spec"]["addresses"] for p in pools] == [["10.77.0.240-10.77.0.245"]]
    assert ssh(CP, "kubectl get l2advertisements -n metallb-system -o name").strip() == \
        "l2advertisement.metallb.io/default"
    code, out = cli("cluster.floating-ip", "--env", "lab")
    assert code == 0 and f"binder/proxy-public holds {IP}" in out
    assert holds("binder", "proxy-public") == IP
    assert f"inet {IP}/32" in ssh(CP, "ip -4 -o addr show eth0"), "no lab node answers for the floating IP"


def test_another_loadbalancer_holding_the_ip_is_found_refused_and_fixed(bare, cli):
    assert cli("metallb.install", "--env", "lab")[0] == 0 and cli("metallb.pool", "--env", "lab")[0] == 0
    kubectl_apply(SQUATTER)
    assert holds("other", "squatter") == IP

    code, out = cli("cluster.floating-ip", "--env", "lab", "--timeout", "5")
    assert code == 1
    assert f"{IP} is held by other/squatter; re-run with --fix" in out
    assert holds("binder", "proxy-public") is None

    code, out = cli("metallb.audit", "--env", "lab")
    assert code == 0 and f"floating IP {IP} held by other/squatter" in out
    assert "binder/proxy-public: AllocationFailed: Failed to allocate IP for \"binder/proxy-public\"" in out

    code, out = cli("cluster.floating-ip", "--env", "lab", "--fix")
    assert code == 0, out
    assert f"switched other/squatter to NodePort, re-applied binder/proxy-public: it holds {IP}" in out
    assert "undo: kubectl patch service squatter -n other --type merge" in out
    assert holds("binder", "proxy-public") == IP
    assert service("other", "squatter")["spec"]["type"] == "NodePort"
    assert "ok | binder/proxy-public holds" in cli("cluster.floating-ip", "--env", "lab")[1]
