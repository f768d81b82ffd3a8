"""The lab's Kubernetes API emulator, driven by the real pinned kubectl and helm, as a user would."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp.web
import pytest
import yaml

from lab import charts as labcharts
from lab.cluster import chartrepo
from tests.conftest import die_with_parent, stop

REPO = Path(__file__).resolve().parent.parent
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
HELM = REPO / ".tools" / "bin" / "helm"
PINNED, CURRENT = labcharts.VERSIONS

pytestmark = pytest.mark.skipif(
    not (KUBECTL.exists() and HELM.exists()),
    reason="pinned kubectl/helm missing: run scripts/install-k8s-tools")


class Lab:
    """A running emulator and the environment kubectl and helm use to reach it."""

    def __init__(self, workdir: Path, kubeconfig: Path):
        self.kubeconfig = kubeconfig
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "KUBECONFIG": str(kubeconfig),
                    "HELM_CACHE_HOME": str(workdir / "helm-cache"), "HELM_CONFIG_HOME": str(workdir / "helm-config"),
                    "HELM_DATA_HOME": str(workdir / "helm-data")}

    def run(self, tool: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(tool), *args], input=stdin, capture_output=True, text=True, env=self.env, timeout=60)
        if check and proc.returncode:
            raise AssertionError(f"{tool.name} {' '.join(args)}: rc {proc.returncode}\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(KUBECTL, *args, **kwargs)

    def helm(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(HELM, *args, **kwargs)

    def json(self, *kubectl_args: str) -> dict:
        return json.loads(self.kubectl(*kubectl_args, "-o", "json").stdout)


def _start(argv: list[str], ready: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server process; wait until it creates `ready`."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=die_with_parent)
    deadline = time.monotonic() + 15
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, 5)
            pytest.fail(f"{argv[2:4]} did not start:\n{log.read_text()}")
        time.sleep(0.02)
    return proc


@contextlib.contextmanager
def _emulator(workdir: Path, *args: str, env: dict[str, str] | None = None):
    """The emulator on 127.0.0.1 (a free port it picks), stopped by its PID at the end."""
    kubeconfig = workdir / "kubeconfig"
    proc = _start([sys.executable, "-m", "lab.cluster", "serve", "--address", "127.0.0.1", "--port", "0",
                   "--kubeconfig", str(kubeconfig), "--ready-delay", "0.2", *args], kubeconfig, workdir / "server.log",
                  env)
    try:
        yield Lab(workdir, kubeconfig)
    finally:
        stop(proc, 30)  # a clean exit can take seconds on a machine busy with the other worker's tests
    assert proc.returncode == 0, (workdir / "server.log").read_text()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The emulator with its default single node, pods' logs read from pod-logs/ beside its kubeconfig."""
    workdir = tmp_path_factory.mktemp("labcluster")
    with _emulator(workdir, "--pod-logs", str(workdir / "pod-logs")) as running:
        yield running


def _server_url(lab: Lab) -> str:
    return yaml.safe_load(lab.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


def test_kubeconfig_points_at_loopback_and_kubectl_sees_a_server(lab):
    assert _server_url(lab).startswith("http://127.0.0.1:")
    version = json.loads(lab.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    assert "default" in lab.kubectl("get", "ns").stdout


def test_creating_a_namespace_twice_fails_with_already_exists(lab):
    assert lab.kubectl("create", "namespace", "twice").stdout.strip() == "namespace/twice created"
    again = lab.kubectl("create", "namespace", "twice", check=False)
    assert again.returncode == 1
    assert 'Error from server (AlreadyExists): namespaces "twice" already exists' in again.stderr
    assert lab.json("get", "namespace", "twice")["status"]["phase"] == "Active"


def _nodeport_service(name: str, node_port: int | None = None) -> str:
    port = {"port": 80, "targetPort": 8080, **({"nodePort": node_port} if node_port else {})}
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ports"},
                       "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]}})


def test_node_ports_are_allocated_in_range_and_a_taken_one_is_refused(lab):
    lab.kubectl("create", "namespace", "ports")
    lab.kubectl("apply", "-f", "-", stdin=_nodeport_service("first"))
    first = lab.json("get", "svc", "first", "-n", "ports")
    allocated = first["spec"]["ports"][0]["nodePort"]
    assert 30000 <= allocated <= 32767
    assert ipaddress.ip_address(first["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")

    taken = lab.kubectl("apply", "-f", "-", stdin=_nodeport_service("second", allocated), check=False)
    assert taken.returncode != 0
    assert f"spec.ports[0].nodePort: Invalid value: {allocated}: provided port is already allocated" in taken.stderr
    assert lab.kubectl("get", "svc", "second", "-n", "ports", check=False).returncode != 0

    wanted = 30000 if allocated != 30000 else 30001
    lab.kubectl("apply", "-f", "-", stdin=_nodeport_service("third", wanted))
    assert lab.json("get", "svc", "third", "-n", "ports")["spec"]["ports"][0]["nodePort"] == wanted


def test_patching_a_service_merge_and_json(lab):
    lab.kubectl("create", "namespace", "patches")
    lab.kubectl("apply", "-f", "-", stdin=_nodeport_service("web").replace('"ports"}', '"patches"}'))
    lab.kubectl("patch", "svc", "web", "-n", "patches", "--type", "merge", "-p", '{"spec":{"type":"LoadBalancer"}}')
    table = lab.kubectl("get", "svc", "web", "-n", "patches").stdout
    assert "LoadBalancer" in table and "<pending>" in table  # MetalLB is not installed
    lab.kubectl("patch", "svc", "web", "-n", "patches", "--type", "json",
                "-p", '[{"op":"replace","path":"/spec/type","value":"ClusterIP"}]')
    spec = lab.json("get", "svc", "web", "-n", "patches")["spec"]
    assert spec["type"] == "ClusterIP" and "nodePort" not in spec["ports"][0]


def _web_deployment(image: str, env: dict[str, str]) -> str:
    container = {"name": "web", "image": image, "ports": [{"containerPort": 8080}],
                 "env": [{"name": k, "value": v} for k, v in env.items()]}
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}
    meta = {"name": "web", "namespace": "merges"}
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                       "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}})


def test_apply_merges_containers_and_env_by_name(lab):
    def containers() -> list[tuple]:
        return [(c["name"], c["image"], [p["containerPort"] for p in c["ports"]],
                 [(e["name"], e["value"]) for e in c["env"]])
                for c in lab.json("get", "deploy", "web", "-n", "merges")["spec"]["template"]["spec"]["containers"]]

    lab.kubectl("create", "namespace", "merges")
    lab.kubectl("create", "-f", "-", stdin=_web_deployment("web:1", {"A": "1", "B": "2"}))  # no last-applied
    lab.kubectl("apply", "-f", "-", stdin=_web_deployment("web:2", {"A": "1", "B": "3", "C": "4"}))
    assert containers() == [("web", "web:2", [8080], [("A", "1"), ("B", "3"), ("C", "4")])]
    lab.kubectl("apply", "-f", "-", stdin=_web_deployment("web:2", {"C": "4", "A": "1"}))  # B: `$patch: delete`
    assert containers() == [("web", "web:2", [8080], [("C", "4"), ("A", "1")])]


VALUES = {
    "config": {"BinderHub": {"hub_url": "http://hub.lab.invalid/jupyterhub/", "base_url": "/binderhub/",
                             "use_registry": False}},
    "service": {"type": "NodePort", "nodePort": 30574},
    "jupyterhub": {"hub": {"baseUrl": "/jupyterhub/", "services": {"binder": {"apiToken": "a" * 64}}},
                   "proxy": {"secretToken": "b" * 64, "service": {"type": "NodePort"}}},
}


def _helm_upgrade(lab: Lab, chart: Path, values: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return lab.helm("upgrade", "--install", "binder", str(chart), "--namespace", "binder", "-f", str(values),
                    "--wait", "--cleanup-on-fail", "--timeout", "30s", *extra, check=check)


def _release(lab: Lab) -> dict:
    return json.loads(lab.helm("status", "binder", "-n", "binder", "-o", "json").stdout)


@pytest.fixture(scope="module")
def release(lab, tmp_path_factory, real_charts):
    """The current real chart installed as release `binder` in namespace `binder`, as in the runbook:
    the chart and the values file."""
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    lab.kubectl("create", "namespace", "binder")
    chart = real_charts / labcharts.archive_name(CURRENT)
    _helm_upgrade(lab, chart, values)
    return chart, values


def test_install_is_revision_1_and_creates_the_charts_services(lab, release):
    history = json.loads(lab.helm("history", "binder", "-n", "binder", "-o", "json").stdout)
    assert history[0]["revision"] == 1 and history[0]["description"] == "Install complete"
    listed = json.loads(lab.helm("list", "-n", "binder", "-o", "json").stdout)
    assert [(r["name"], r["chart"]) for r in listed] == [("binder", f"binderhub-{CURRENT}")]
    services = {s["metadata"]["name"]: s["spec"] for s in lab.json("get", "svc", "-n", "binder")["items"]}
    assert set(services) == {"binder", "hub", "proxy-api", "proxy-public"}
    assert services["binder"]["type"] == "NodePort" and services["binder"]["ports"][0]["nodePort"] == 30574
    assert services["hub"]["ports"][0]["port"] == 8081 and services["proxy-api"]["ports"][0]["port"] == 8001


def test_upgrade_with_a_changed_value_is_the_next_revision(lab, release):
    before = _release(lab)["version"]
    _helm_upgrade(lab, *release, "--set", "config.BinderHub.base_url=/changed/")
    assert _release(lab)["version"] == before + 1
    config = lab.json("get", "secret", "binder-secret", "-n", "binder")["data"]["values.yaml"]
    assert yaml.safe_load(base64.b64decode(config))["config"]["BinderHub"]["base_url"] == "/changed/"
    assert json.loads(lab.helm("get", "values", "binder", "-n", "binder", "-o", "json").stdout)[
        "config"]["BinderHub"]["base_url"] == "/changed/"


def test_unknown_top_level_value_fails_and_leaves_the_release_as_it_was(lab, release):
    before = _release(lab)
    failed = _helm_upgrade(lab, *release, "--set", "notAChartKey=1", check=False)
    assert failed.returncode != 0
    assert "Additional property notAChartKey is not allowed" in failed.stderr
    after = _release(lab)
    assert (after["version"], after["info"]["status"]) == (before["version"], "deployed")


def test_rollout_status_succeeds_for_each_workload(lab, release):
    for workload in ("deployment/hub", "deployment/binder", "deployment/proxy", "deployment/user-scheduler",
                     "daemonset/binder-image-cleaner"):
        done = lab.kubectl("rollout", "status", workload, "-n", "binder", "--timeout", "30s")
        assert "successfully rolled out" in done.stdout
    done = lab.kubectl("rollout", "status", "statefulset/user-placeholder", "-n", "binder", "--timeout", "30s")
    assert done.stdout == "partitioned roll out complete: 0 new pods have been updated...\n"  # replicas: 0


def test_kubectl_logs_reads_what_the_deployments_player_wrote(lab, release):
    written = lab.kubeconfig.parent / "pod-logs" / "binder" / "hub.log"
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text("".join(f"hub line {i}\n" for i in range(1, 6)))
    assert lab.kubectl("logs", "deployment/hub", "-n", "binder", "--tail=2").stdout == "hub line 4\nhub line 5\n"
    assert lab.kubectl("logs", "deployment/binder", "-n", "binder").stdout == ""  # nothing written yet
    missing = lab.kubectl("logs", "deployment/hub", "-n", "binder", "-c", "nope", check=False)
    assert missing.returncode != 0 and "container nope is not valid" in missing.stderr


def test_pods_are_listed_running_like_the_runbooks_step_6(lab, release):
    lines = lab.kubectl("get", "pods", "-n", "binder").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = [line.split() for line in lines[1:]]
    assert all(row[1:4] == ["1/1", "Running", "0"] for row in rows), lines
    # Pod names as controllers make them: <deployment>-<template hash>-<5>, <daemonset>-<5>.
    owners = sorted(re.sub(r"(-[a-z0-9]{10})?-[a-z0-9]{5}$", "", row[0]) for row in rows)
    assert owners == ["binder", "binder-image-cleaner", "hub", "proxy", "user-scheduler", "user-scheduler"]


def test_a_release_label_selector_misses_the_real_charts_unlabelled_workloads(lab, release):
    labelled = lab.kubectl("get", "deploy,ds,sts", "-n", "binder", "-l", "release=binder", "-o", "name").stdout
    assert sorted(labelled.split()) == ["deployment.apps/hub", "deployment.apps/proxy",
                                        "deployment.apps/user-scheduler", "statefulset.apps/user-placeholder"]
    documents = yaml.safe_load_all(lab.helm("get", "manifest", "binder", "-n", "binder").stdout)
    assert {(d["kind"], d["metadata"]["name"]) for d in documents if d and d["kind"] in ("Deployment", "DaemonSet")} \
        >= {("Deployment", "binder"), ("DaemonSet", "binder-image-cleaner")}


def _from_manifest(lab: Lab, kind: str, name: str) -> dict:
    """One object of the release as `helm get manifest` prints it: no namespace, no last-applied annotation."""
    documents = yaml.safe_load_all(lab.helm("get", "manifest", "binder", "-n", "binder").stdout)
    return next(d for d in documents if d and (d["kind"], d["metadata"]["name"]) == (kind, name))


def test_a_deleted_deployment_applied_from_the_manifest_is_created_in_the_namespace_given(lab, release):
    deployment = json.dumps(_from_manifest(lab, "Deployment", "binder"))
    lab.kubectl("delete", "deployment", "binder", "-n", "binder")
    # Without -n, kubectl sends a namespace-less object to its context's namespace, `default`, as it
    # does with a real apiserver: created there, `configured` the next time, and binder/binder stays gone.
    # `configured`, not `unchanged`: the chart's `strategy` has only `rollingUpdate`, the apiserver
    # defaults its `type` (pkg/apis/apps/v1/defaults.go SetDefaults_Deployment), and `strategy` has
    # patchStrategy retainKeys, so kubectl's three-way patch of the live object carries
    # `$retainKeys: [rollingUpdate]` each time (apimachinery strategicpatch diffMaps, hasAdditionalNewField).
    assert lab.kubectl("apply", "-f", "-", stdin=deployment).stdout.strip() == "deployment.apps/binder created"
    assert lab.kubectl("apply", "-f", "-", stdin=deployment).stdout.strip() == "deployment.apps/binder configured"
    assert "NotFound" in lab.kubectl("get", "deploy", "binder", "-n", "binder", check=False).stderr
    lab.kubectl("delete", "deployment", "binder", "-n", "default")

    applied = lab.kubectl("apply", "-f", "-", "-n", "binder", stdin=deployment)
    assert applied.stdout.strip() == "deployment.apps/binder created"
    assert "deployment.apps/binder" in lab.kubectl("get", "deploy", "-n", "binder", "-o", "name").stdout.split()
    lab.kubectl("rollout", "status", "deployment/binder", "-n", "binder", "--timeout", "30s")


def test_applying_a_helm_made_service_keeps_its_node_port_and_merges_ports_by_port(lab, release):
    service = _from_manifest(lab, "Service", "binder")

    def apply(target_port: int, *namespace: str) -> subprocess.CompletedProcess:
        service["spec"]["ports"][0]["targetPort"] = target_port
        return lab.kubectl("apply", "-f", "-", *namespace, stdin=json.dumps(service), check=False)

    def ports() -> list[tuple[int, int, int]]:
        return [(p["port"], p["nodePort"], p["targetPort"])
                for p in lab.json("get", "svc", "binder", "-n", "binder")["spec"]["ports"]]

    original = service["spec"]["ports"][0]["targetPort"]
    assert ports() == [(80, 30574, original)]
    # The first apply only adds kubectl's last-applied annotation. A changed targetPort sends the port's
    # entry, nodePort included, which merges into the entry with the same `port` (its merge key).
    assert apply(original, "-n", "binder").stdout.strip() == "service/binder configured"
    assert apply(original, "-n", "binder").stdout.strip() == "service/binder unchanged"
    assert apply(original + 1, "-n", "binder").stdout.strip() == "service/binder configured"
    assert ports() == [(80, 30574, original + 1)]
    apply(original, "-n", "binder")
    assert ports() == [(80, 30574, original)]
    # Without -n it is another Service, default/binder, asking for the port binder/binder holds.
    elsewhere = apply(original)
    assert "spec.ports[0].nodePort: Invalid value: 30574: provided port is already allocated" in elsewhere.stderr


def test_chart_repository_offers_both_real_charts(lab, tmp_path, real_charts):
    repo_dir = tmp_path / "repo"
    log = tmp_path / "http.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0",
                                   "--directory", str(repo_dir)], stdout=out, stderr=subprocess.STDOUT,
                                  preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 10
        while " port " not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, \
                f"http.server did not start: {log.read_text()}"
            time.sleep(0.02)
        port = log.read_text().split(" port ")[1].split()[0]
        url = f"http://127.0.0.1:{port}/"
        chartrepo.build(repo_dir, url, real_charts, helm=HELM)
        lab.helm("repo", "add", "jupyterhub", url)
        found = json.loads(lab.helm("search", "repo", "jupyterhub/binderhub", "--devel", "--versions",
                                    "-o", "json").stdout)
        assert [c["version"] for c in found] == [CURRENT, PINNED]
        shown = lab.helm("show", "chart", "jupyterhub/binderhub", "--version", PINNED).stdout
        assert f"version: {PINNED}" in shown
        missing = lab.helm("show", "chart", "jupyterhub/binderhub", "--version", "0.2.0-n999.h0000000", check=False)
        assert missing.returncode != 0 and "0.2.0-n999.h0000000" in missing.stderr
    finally:
        stop(server, 5)


def test_a_fault_injected_with_kmocks_dsl_reaches_kubectl(tmp_path):
    """In-process use: kmock reactions answer before the emulator, e.g. to fail one endpoint."""
    from lab.cluster.api import LabCluster
    from lab.cluster.server import write_kubeconfig

    async def scenario() -> tuple[int, str, str]:
        emulator = LabCluster()
        emulator.bootstrap()
        emulator["get /api/v1/namespaces"] << 503 << {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                      "reason": "ServiceUnavailable", "code": 503,
                                                      "message": "injected by the test"}
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator))
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{runner.addresses[0][1]}")
        lab = Lab(tmp_path, tmp_path / "kubeconfig")
        try:
            async with emulator:
                async def kubectl(*args: str) -> tuple[int, str]:
                    proc = await asyncio.create_subprocess_exec(str(KUBECTL), *args, env=lab.env,
                                                                stdout=asyncio.subprocess.PIPE,
                                                                stderr=asyncio.subprocess.STDOUT)
                    return await proc.wait(), (await proc.stdout.read()).decode()
                failed, message = await kubectl("get", "namespaces")
                _, pods = await kubectl("get", "pods", "-A")
                return failed, message, pods
        finally:
            await runner.cleanup()

    failed, message, pods = asyncio.run(scenario())
    assert failed == 1 and "injected by the test" in message
    assert "No resources found" in pods  # everything else is still served


# Cordon, drain and uncordon, on an emulator with three nodes.
NODES = {"lab-node-1": "10.77.0.11", "lab-node-2": "10.77.0.12", "lab-node-3": "10.77.0.13"}
WORKLOADS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: maint}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
      volumes: [{name: scratch, emptyDir: {}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: maint}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox}]
"""
DRAIN = ("--ignore-daemonsets", "--delete-emptydir-data", "--timeout", "60s")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Three nodes running a 3-replica Deployment `web` (one pod per node) and a DaemonSet `agent`."""
    node_args = [f"--node={name}={ip}" for name, ip in NODES.items()]
    with _emulator(tmp_path_factory.mktemp("nodes"), *node_args) as running:
        running.kubectl("create", "namespace", "maint")
        running.kubectl("apply", "-f", "-", stdin=WORKLOADS)
        running.kubectl("rollout", "status", "deployment/web", "-n", "maint", "--timeout", "30s")
        yield running


def _pods(lab: Lab, app: str) -> dict[str, tuple[str, str | None]]:
    """Pod name -> (phase, node) for the pods of `app` in namespace maint."""
    items = lab.json("get", "pods", "-n", "maint", "-l", f"app={app}")["items"]
    return {p["metadata"]["name"]: (p["status"]["phase"], p["spec"].get("nodeName")) for p in items}


def _web_pods_once(lab: Lab, ok) -> dict[str, tuple[str, str | None]]:
    """The `web` pods once `ok(pods)` holds (polled for up to 10 s, then the test fails)."""
    deadline = time.monotonic() + 10
    while not ok(pods := _pods(lab, "web")):
        assert time.monotonic() < deadline, f"the web pods did not get there in 10 s: {pods}"
        time.sleep(0.1)
    return pods


def _node_status(lab: Lab) -> dict[str, str]:
    return dict(line.split()[:2] for line in lab.kubectl("get", "nodes").stdout.splitlines()[1:])


def test_cordon_shows_scheduling_disabled_and_uncordon_clears_it(nodes):
    assert nodes.kubectl("cordon", "lab-node-3").stdout.strip() == "node/lab-node-3 cordoned"
    assert _node_status(nodes) == {"lab-node-1": "Ready", "lab-node-2": "Ready",
                                   "lab-node-3": "Ready,SchedulingDisabled"}
    spec = nodes.json("get", "node", "lab-node-3")["spec"]
    assert spec["unschedulable"] is True
    assert [(t["key"], t["effect"]) for t in spec["taints"]] == [("node.kubernetes.io/unschedulable", "NoSchedule")]

    assert nodes.kubectl("uncordon", "lab-node-3").stdout.strip() == "node/lab-node-3 uncordoned"
    assert _node_status(nodes)["lab-node-3"] == "Ready"
    assert nodes.json("get", "node", "lab-node-3").get("spec", {}) == {}


def test_drain_evicts_deployment_pods_to_other_nodes_and_leaves_daemonset_pods(nodes):
    agents = _pods(nodes, "agent")
    on_node = [name for name, (_, node) in _pods(nodes, "web").items() if node == "lab-node-2"]
    assert len(on_node) == 1 and "lab-node-2" in {node for _, node in agents.values()}
    try:
        drained = nodes.kubectl("drain", "lab-node-2", *DRAIN)
        assert f"pod/{on_node[0]} evicted" in drained.stdout  # the eviction API, not a plain delete
        assert "node/lab-node-2 drained" in drained.stdout
        assert "Warning: ignoring DaemonSet-managed Pods: maint/agent-" in drained.stderr
        assert _node_status(nodes)["lab-node-2"] == "Ready,SchedulingDisabled"

        web = _web_pods_once(nodes, lambda pods: len(pods) == 3 and on_node[0] not in pods)
        assert sorted(node for _, node in web.values()) == ["lab-node-1", "lab-node-1", "lab-node-3"]
        assert {phase for phase, _ in web.values()} == {"Running"}
        nodes.kubectl("rollout", "status", "deployment/web", "-n", "maint", "--timeout", "30s")
        assert _pods(nodes, "agent") == agents  # DaemonSet pods stay, on the drained node too
    finally:
        nodes.kubectl("uncordon", "lab-node-2")


def _bare_pod(lab: Lab, name: str, node: str) -> None:
    """A pod no controller manages, bound to `node` by its spec."""
    lab.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "maint"},
        "spec": {"nodeName": node, "containers": [{"name": name, "image": "busybox"}]}}))


def test_drain_with_force_evicts_a_pod_no_controller_manages(nodes):
    _bare_pod(nodes, "bare", "lab-node-3")
    try:
        refused = nodes.kubectl("drain", "lab-node-3", *DRAIN, check=False)
        assert refused.returncode == 1
        assert "cannot delete Pods that declare no controller (use --force to override): maint/bare" in refused.stderr
        forced = nodes.kubectl("drain", "lab-node-3", *DRAIN, "--force")
        assert "pod/bare evicted" in forced.stdout and "node/lab-node-3 drained" in forced.stdout
        assert "NotFound" in nodes.kubectl("get", "pod", "bare", "-n", "maint", check=False).stderr
        web = _web_pods_once(nodes, lambda pods: len(pods) == 3 and None not in (node for _, node in pods.values()))
        assert "lab-node-3" not in {node for _, node in web.values()}
    finally:
        nodes.kubectl("uncordon", "lab-node-3")


def test_with_every_node_cordoned_a_replacement_waits_pending_until_uncordon(nodes):
    for node in NODES:
        nodes.kubectl("cordon", node)
    try:
        nodes.kubectl("delete", "pod", next(iter(_pods(nodes, "web"))), "-n", "maint")
        web = _web_pods_once(nodes, lambda pods: len(pods) == 3)
        pending = [name for name, (phase, _) in web.items() if phase == "Pending"]
        assert len(pending) == 1 and web[pending[0]][1] is None
        scheduled = next(c for c in nodes.json("get", "pod", pending[0], "-n", "maint")["status"]["conditions"]
                         if c["type"] == "PodScheduled")
        assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
        assert "3 node(s) were unschedulable" in scheduled["message"]
        assert nodes.kubectl("get", "deployment", "web", "-n", "maint").stdout.splitlines()[1].split()[1] == "2/3"

        nodes.kubectl("uncordon", "lab-node-2")
        web = _web_pods_once(nodes, lambda pods: pods[pending[0]][0] == "Running")
        assert web[pending[0]] == ("Running", "lab-node-2")
        nodes.kubectl("rollout", "status", "deployment/web", "-n", "maint", "--timeout", "30s")
    finally:
        for node in NODES:
            nodes.kubectl("uncordon", node)


def test_draining_a_node_that_does_not_exist_fails_with_not_found(nodes):
    missing = nodes.kubectl("drain", "lab-node-9", *DRAIN, check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): nodes "lab-node-9" not found' in missing.stderr


def test_the_eviction_subresource_answers_as_the_apiserver_does(nodes):
    _bare_pod(nodes, "evictee", "lab-node-1")
    url = "/api/v1/namespaces/maint/pods/{}/eviction"

    def evict(pod: str, named: str) -> subprocess.CompletedProcess:
        body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": named}})
        return nodes.kubectl("create", "--raw", url.format(pod), "-f", "-", stdin=body, check=False)

    mismatched = evict("evictee", "other")
    assert "(BadRequest): name in URL does not match name in Eviction object" in mismatched.stderr
    assert json.loads(evict("evictee", "evictee").stdout) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    assert 'Error from server (NotFound): pods "evictee" not found' in evict("evictee", "evictee").stderr


# Custom resources, on the emulator with its default node.
WIDGETS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.lab.example}
spec:
  group: lab.example
  scope: Cluster
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
              colours: {type: array, items: {type: string}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Colours, type: string, jsonPath: .spec.colours}
"""


def test_a_cluster_scoped_crd_is_served_until_deleted(lab):
    assert lab.kubectl("apply", "-f", "-", stdin=WIDGETS).stdout.strip() == (
        "customresourcedefinition.apiextensions.k8s.io/widgets.lab.example created")
    resources = lab.kubectl("api-resources", "--api-group", "lab.example").stdout.splitlines()
    assert resources[1].split() == ["widgets", "wg", "lab.example/v1", "false", "Widget"]
    lab.kubectl("apply", "-f", "-", stdin="apiVersion: lab.example/v1\nkind: Widget\nmetadata: {name: w1}\n"
                                          "spec: {colours: [red, blue]}\n")
    rows = [line.split(None, 3) for line in lab.kubectl("get", "wg").stdout.splitlines()]
    assert rows == [["NAME", "SIZE", "COLOURS"], ["w1", "3", '["red","blue"]']]  # the schema's default size
    lab.kubectl("delete", "crd", "widgets.lab.example")
    gone = lab.kubectl("get", "widgets", check=False)
    assert gone.returncode == 1 and "the server could not find the requested resource" in gone.stderr


# MetalLB, from the stand-in manifests in lab/metallb, each version configured in the format it reads.
METALLB = REPO / "lab" / "metallb"
MANIFESTS = {"0.9.3": METALLB / "metallb-v0.9.3.yaml", "0.14.8": METALLB / "metallb-native-v0.14.8.yaml"}
CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    address-pools:
    - {name: default, protocol: layer2, addresses: [%s]}
    - {name: quiet, protocol: bgp, auto-assign: false, addresses: [10.77.0.245/32]}
"""
RESOURCES = """
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: default, namespace: metallb-system}
spec: {addresses: [%s]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: quiet, namespace: metallb-system}
spec: {addresses: [10.77.0.245/32], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: default, namespace: metallb-system}
spec: {ipAddressPools: [default]}
"""
POOL = "10.77.0.240-10.77.0.242"
IGNORED = "10.77.0.250"  # in the pool of the format the version does not read
LOAD_BALANCER_IPS = "metallb.universe.tf/loadBalancerIPs"


def _configure(lab: Lab, version: str, addresses: str) -> None:
    lab.kubectl("apply", "-f", "-", stdin=(CONFIGMAP if version == "0.9.3" else RESOURCES) % addresses)


@pytest.fixture(scope="module", params=list(MANIFESTS))
def metallb(request, tmp_path_factory):
    """(lab, version): one node, MetalLB installed from its stand-in manifest and configured in its
    version's format with POOL, and the other format holding IGNORED."""
    version = request.param
    with _emulator(tmp_path_factory.mktemp(f"metallb-{version}"), "--node", "lab-node1=10.77.0.11") as lab:
        lab.kubectl("apply", "-f", str(MANIFESTS[version]))
        if version == "0.9.3":  # the install's own next step (0.13+'s controller creates it)
            lab.kubectl("create", "secret", "generic", "memberlist", "-n", "metallb-system",
                        "--from-literal=secretkey=lab-not-secret")
        _configure(lab, version, POOL)
        if version == "0.9.3":
            crds = [d for d in yaml.safe_load_all(MANIFESTS["0.14.8"].read_text())
                    if d["kind"] == "CustomResourceDefinition"]
            lab.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
            lab.kubectl("apply", "-f", "-", stdin=RESOURCES % IGNORED)
        else:
            lab.kubectl("apply", "-f", "-", stdin=CONFIGMAP % IGNORED)
        yield lab, version


def _service(name: str, annotated: str | None = None, spec_ip: str | None = None) -> dict:
    """A LoadBalancer Service, asking for an IP by annotation and/or spec.loadBalancerIP."""
    meta: dict = {"name": name, **({"annotations": {LOAD_BALANCER_IPS: annotated}} if annotated else {})}
    spec = {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}],
            **({"loadBalancerIP": spec_ip} if spec_ip else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


@contextlib.contextmanager
def _services(lab: Lab, namespace: str, *services: dict):
    """A namespace holding `services` (created in this order) for one test; deleted at the end,
    which frees their IPs."""
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    objects += [{**svc, "metadata": {**svc["metadata"], "namespace": namespace}} for svc in services]
    lab.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    try:
        yield namespace
    finally:
        lab.kubectl("delete", "namespace", namespace)


def _asking_for(version: str, ip: str) -> dict[str, str]:
    """How each version's users ask for an IP: 0.13+ documents the annotation, 0.9 the field."""
    return {"spec_ip": ip} if version == "0.9.3" else {"annotated": ip}


def _external_ips(lab: Lab, namespace: str) -> dict[str, str]:
    """Service name -> EXTERNAL-IP, as `kubectl get svc` shows them."""
    rows = lab.kubectl("get", "svc", "-n", namespace).stdout.splitlines()[1:]
    return {row.split()[0]: row.split()[3] for row in rows}


def _events(lab: Lab, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = lab.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items]


def _quoted(version: str, ip: str) -> str:
    return f'"{ip}"' if version == "0.9.3" else f'["{ip}"]'  # Go's %q of one IP (0.9), of a list (0.13+)


def test_a_speaker_without_its_memberlist_secret_cannot_start(metallb):
    # The kubelet resolves env secretKeyRef at container start: a missing Secret is
    # CreateContainerConfigError (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables), and the pod
    # starts once it exists.
    lab, version = metallb
    if version != "0.9.3":
        pytest.skip("from 0.13 MetalLB's controller creates the Secret")
    secret = lab.json("get", "secret", "memberlist", "-n", "metallb-system")
    lab.kubectl("delete", "secret", "memberlist", "-n", "metallb-system")
    try:
        lab.kubectl("delete", "pods", "-n", "metallb-system", "-l", "component=speaker", "--wait")
        deadline = time.monotonic() + 10
        while "CreateContainerConfigError" not in (rows := lab.kubectl(
                "get", "pods", "-n", "metallb-system", "-l", "component=speaker", "--no-headers").stdout):
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
    finally:
        lab.kubectl("create", "secret", "generic", "memberlist", "-n", "metallb-system",
                    "--from-literal=secretkey=" + base64.b64decode(secret["data"]["secretkey"]).decode())
    lab.kubectl("rollout", "status", "daemonset/speaker", "-n", "metallb-system", "--timeout", "30s")


def test_stand_in_manifest_rolls_out_its_version_and_applies_again_unchanged(metallb):
    lab, version = metallb
    for workload in ("deployment/controller", "daemonset/speaker"):
        lab.kubectl("rollout", "status", workload, "-n", "metallb-system", "--timeout", "30s")
    registry = "metallb" if version == "0.9.3" else "quay.io/metallb"
    images = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]["image"]
              for o in lab.json("get", "deployments,daemonsets", "-n", "metallb-system")["items"]}
    assert images == {"controller": f"{registry}/controller:v{version}", "speaker": f"{registry}/speaker:v{version}"}
    again = lab.kubectl("apply", "-f", str(MANIFESTS[version])).stdout.splitlines()
    assert len(again) > 10 and all(line.endswith(" unchanged") for line in again)


def test_a_service_gets_the_pools_first_address_announced_from_the_node(metallb):
    lab, version = metallb
    with _services(lab, "first", _service("web")) as ns:
        assert _external_ips(lab, ns) == {"web": "10.77.0.240"}
        protocol = "" if version == "0.9.3" else ' with protocol "layer2"'
        assert _events(lab, ns, "web") == [
            ("Normal", "IPAllocated", f"Assigned IP {_quoted(version, '10.77.0.240')}"),
            ("Normal", "nodeAssigned", f'announcing from node "lab-node1"{protocol}')]


def test_a_requested_free_ip_is_given_and_an_unannounced_pools_ip_is_not_announced(metallb):
    lab, version = metallb
    with _services(lab, "asks", _service("db", **_asking_for(version, "10.77.0.242")),
                   _service("quiet", **_asking_for(version, "10.77.0.245"))) as ns:  # a bgp pool / no L2Advertisement
        assert _external_ips(lab, ns) == {"db": "10.77.0.242", "quiet": "10.77.0.245"}
        assert [reason for _, reason, _ in _events(lab, ns, "quiet")] == ["IPAllocated"]


def test_an_ip_in_the_other_formats_pool_is_not_allowed(metallb):
    lab, version = metallb
    with _services(lab, "other", _service("web", **_asking_for(version, IGNORED))) as ns:
        assert _external_ips(lab, ns) == {"web": "<pending>"}
        assert _events(lab, ns, "web") == [("Warning", "AllocationFailed", 'Failed to allocate IP for "other/web": '
                                            f"{_quoted(version, IGNORED)} is not allowed in config")]


def test_runbook_step_9_a_held_ip_stays_pending_until_its_holder_lets_go(metallb):
    lab, version = metallb
    with _services(lab, "binder", _service("binder"),
                   _service("proxy-public", **_asking_for(version, "10.77.0.240"))) as ns:
        assert _external_ips(lab, ns) == {"binder": "10.77.0.240", "proxy-public": "<pending>"}
        message = ('Failed to allocate IP for "binder/proxy-public": can\'t change sharing key for '
                   '"binder/proxy-public", address also in use by binder/binder')
        assert re.search(rf"Warning +AllocationFailed +service/proxy-public +{re.escape(message)}",
                         lab.kubectl("get", "events", "-n", ns).stdout)
        assert re.search(rf"Warning +AllocationFailed +\S+ +metallb-controller +{re.escape(message)}",
                         lab.kubectl("describe", "svc", "proxy-public", "-n", ns).stdout)

        lab.kubectl("patch", "svc", "binder", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}')
        if version == "0.9.3":  # 0.9 retries a pending service only when it changes: the runbook's recheck
            assert _external_ips(lab, ns)["proxy-public"] == "<pending>"
            lab.kubectl("patch", "svc", "proxy-public", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}')
            lab.kubectl("patch", "svc", "proxy-public", "-n", ns, "-p", '{"spec":{"type":"LoadBalancer"}}')
        assert _external_ips(lab, ns) == {"binder": "<none>", "proxy-public": "10.77.0.240"}


def test_both_the_annotation_and_load_balancer_ip(metallb):
    """0.9 knows only the field; 0.13+ refuses a service that has both."""
    lab, version = metallb
    with _services(lab, "both", _service("proxy-public", annotated="10.77.0.241", spec_ip="10.77.0.241")) as ns:
        if version == "0.9.3":
            assert _external_ips(lab, ns) == {"proxy-public": "10.77.0.241"}
        else:
            assert _external_ips(lab, ns) == {"proxy-public": "<pending>"}
            assert _events(lab, ns, "proxy-public") == [("Warning", "AllocationFailed", (
                'Failed to allocate IP for "both/proxy-public": service can not have both '
                "metallb.universe.tf/loadBalancerIPs and svc.Spec.LoadBalancerIP"))]


def test_a_pool_change_leaving_out_an_assigned_ip(metallb):
    """0.9 refuses the new configuration (logged, as in the controller pod's log); 0.13+ moves the service."""
    lab, version = metallb
    with _services(lab, "moves", _service("web")) as ns:
        try:
            _configure(lab, version, "10.77.0.241-10.77.0.242")
            if version == "0.9.3":
                assert _external_ips(lab, ns) == {"web": "10.77.0.240"}
                assert ('new config not compatible with assigned IPs: service "moves/web" cannot own "10.77.0.240" '
                        "under new config") in (lab.kubeconfig.parent / "server.log").read_text()
            else:
                assert _external_ips(lab, ns) == {"web": "10.77.0.241"}
                assert [(reason, message) for _, reason, message in _events(lab, ns, "web")][2:4] == [
                    ("ClearAssignment", 'current IP for "moves/web" not allowed by config, will attempt for new IP '
                                        'assignment: ["10.77.0.240"] is not allowed in config'),
                    ("IPAllocated", 'Assigned IP ["10.77.0.241"]')]
        finally:
            _configure(lab, version, POOL)


def test_without_metallb_installed_load_balancers_stay_pending(lab):
    lab.kubectl("create", "namespace", "metallb-system")
    _configure(lab, "0.9.3", POOL)
    with _services(lab, "nolb", _service("web")) as ns:
        assert _external_ips(lab, ns) == {"web": "<pending>"} and _events(lab, ns, "web") == []


def test_announce_dev_adds_each_announced_ip_to_the_device_and_deletes_it(tmp_path):
    """`--announce-dev` runs `ip addr add|del IP/32 dev DEV` (here a stand-in `ip` that records its argv)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "ip-calls"
    bin_dir.mkdir()
    (bin_dir / "ip").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "ip").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    with _emulator(tmp_path, "--announce-dev", "lab0", env=env) as lab:
        lab.kubectl("apply", "-f", str(MANIFESTS["0.14.8"]))
        _configure(lab, "0.14.8", POOL)
        with _services(lab, "announced", _service("web"), _service("quiet", annotated="10.77.0.245"), _service("db")):
            lab.kubectl("delete", "svc", "web", "-n", "announced")
            assert calls.read_text().splitlines() == [  # "quiet" is assigned, but its pool is not announced
                "addr add 10.77.0.240/32 dev lab0", "addr add 10.77.0.241/32 dev lab0",
                "addr del 10.77.0.240/32 dev lab0"]
        lab.kubectl("apply", "-f", "-", stdin=json.dumps(_service("web")))
    assert calls.read_text().splitlines()[3:] == [
        "addr del 10.77.0.241/32 dev lab0", "addr add 10.77.0.240/32 dev lab0",  # namespace deleted, new service
        "addr del 10.77.0.240/32 dev lab0"]  # at shutdown
