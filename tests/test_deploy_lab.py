"""deploy on the lab: stages, resume, the lock, confirmation, faults and Ctrl-C."""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from lab import hosts as labhosts
from tests.conftest import REPO, lab_ca, lab_inventory, ssh
from tests.test_cluster_lab import _put_release_in_pending_upgrade

pytestmark = pytest.mark.lab

CP = "lab-node1"
NODES = ["lab-node1", "lab-node2", "lab-node3"]
LOCK = "kubectl get configmap binderhub-ops-deploy-lock -n kube-system -o name"


@pytest.fixture
def env_secrets(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("BHOPS_LAB_SSH_CONFIG", str(lab / "ssh_config"))
    ssh(CP, "kubectl delete configmap binderhub-ops-deploy-lock -n kube-system --ignore-not-found >/dev/null")
    return tmp_path


def stages(out: str) -> dict[str, str]:
    """The `stages:` line: stage -> its outcome (ok, failed, not run, interrupted)."""
    line = next(l for l in out.splitlines() if l.startswith("stages: "))
    return dict(part.split(" ", 1) for part in line[len("stages: "):].split(", "))


def lock_exists() -> bool:
    return bool(ssh(CP, LOCK + " 2>/dev/null", check=False).strip())


def test_an_unreachable_node_stops_the_deploy_with_the_resume_command(env_secrets, cli):
    labhosts.stop_host("node3")
    try:
        code, out = cli("deploy", "--env", "lab", "--skip-smoke")
    finally:
        labhosts.start_host("node3")
    assert code == 1
    assert re.search(r"lab-node3 \| nodes.mirror \| unreachable \| cannot reach deploy@10.77.0.13", out)
    assert stages(out) == {"nodes": "failed", "secrets": "not run", "cluster": "not run", "metallb": "not run",
                           "proxy": "not run"}
    assert "resume with: invoke deploy --env lab --from nodes" in out
    assert "RECAP deploy (lab)" in out
    assert not lock_exists(), "the deploy lock was left behind"
    paths = re.search(r"log: (\S+), report: (\S+)", out)
    data = json.loads(open(paths.group(2)).read())
    assert data["stages"]["nodes"] == "failed" and data["stages"]["cluster"] == "not run"
    node3 = [r for r in data["results"] if r["host"] == "lab-node3"]
    assert node3 and node3[0]["status"] == "unreachable" and node3[0]["stage"] == "nodes"
    assert "nodes.mirror" in open(paths.group(1)).read()


def test_a_release_left_pending_is_recovered_by_the_next_deploy(env_secrets, cli):
    assert cli("deploy", "--env", "lab", "--only", "secrets,cluster")[0] == 0
    _put_release_in_pending_upgrade()
    code, out = cli("deploy", "--env", "lab", "--only", "cluster")
    assert code == 0, out
    assert re.search(r"lab-node1 \| helm.rollback \| changed \| rolled back to revision \d+", out)
    assert json.loads(ssh(CP, "helm list -n binder -o json"))[0]["status"] == "deployed"


def test_a_held_lock_refuses_a_second_deploy_until_broken(env_secrets, cli):
    now = time.time()
    for expires, expect in ((now + 600, "wait for that deploy to end, or pass --break-lock"),
                            (now - 60, "stale deploy lock held by")):
        ssh(CP, "kubectl delete configmap binderhub-ops-deploy-lock -n kube-system --ignore-not-found >/dev/null; "
                "kubectl create configmap binderhub-ops-deploy-lock -n kube-system --from-literal=owner=alice@laptop "
                f"--from-literal=env=lab --from-literal=started={now - 1200:.0f} --from-literal=expires={expires:.0f} "
                "--from-literal=token=theirs >/dev/null")
        code, out = cli("deploy", "--env", "lab", "--only", "secrets")
        assert code == 1 and "alice@laptop, deploying lab since 20 min ago" in out and expect in out
        assert "== stage" not in out and "resume with: invoke deploy --env lab --from secrets" in out
        report = re.search(r"log: \S+, report: (\S+)", out).group(1)
        assert json.loads(open(report).read())["stages"] == {"secrets": "not run"}
    code, out = cli("deploy", "--env", "lab", "--only", "secrets", "--break-lock")
    assert code == 0 and "broke the deploy lock of alice@laptop" in out
    assert not lock_exists()


def test_production_needs_confirmation_and_bad_input_is_refused(env_secrets, cli, tmp_path):
    guarded = tmp_path / "guarded"
    guarded.mkdir()
    inventory = lab_inventory(guarded)
    text = inventory.read_text().replace("  lab:\n", "  lab:\n    confirm: true\n", 1)
    inventory.write_text(text)
    code, out = cli("deploy", "--env", "lab", "--inventory", str(inventory), "--only", "secrets")
    assert code == 1 and "lab needs a confirmation: run in a terminal, or pass --yes" in out
    assert cli("deploy", "--env", "lab", "--inventory", str(inventory), "--only", "secrets", "--yes")[0] == 0

    code, out = cli("deploy", "--env", "lab", "--only", "nodes,bogus")
    assert code == 1
    assert "unknown stage 'bogus'; stages, in order: nodes, secrets, cluster, metallb, proxy, smoke" in out
    broken = tmp_path / "broken.yaml"
    broken.write_text("environments: {lab: [\n")
    code, out = cli("deploy", "--env", "lab", "--inventory", str(broken))
    assert code == 1 and "not valid YAML" in out
    outside = tmp_path / "outside"
    outside.mkdir()
    outside_pool = lab_inventory(outside, floating_ip="10.77.0.250")
    code, out = cli("metallb.pool", "--env", "lab", "--inventory", str(outside_pool))
    assert code == 1 and "floating_ip 10.77.0.250 is outside metallb_addresses" in out
    nochart = tmp_path / "nochart"
    nochart.mkdir()
    code, out = cli("deploy", "--env", "lab", "--only", "secrets,cluster",
                    "--inventory", str(lab_inventory(nochart, chart_version="0.0.1-nope")))
    assert code == 1 and "chart version '0.0.1-nope' is not one the values templates know" in out
    assert "stage" not in out  # refused when the inventory loads: no stage ran


def test_dry_run_plans_every_stage_and_changes_nothing(env_secrets, cli):
    before = {n: ssh(n, "sudo sha256sum /etc/docker/daemon.json") for n in NODES}
    code, out = cli("deploy", "--env", "lab", "--dry-run")
    assert code == 0, out
    assert [l for l in out.splitlines() if l.startswith("== stage")] == [
        f"== stage {s}" for s in ("nodes", "secrets", "cluster", "metallb", "proxy", "smoke")]
    assert "deploy lock is free" in out and not lock_exists()
    assert {n: ssh(n, "sudo sha256sum /etc/docker/daemon.json") for n in NODES} == before
    assert not (env_secrets / "secrets" / "lab.yaml").exists()


def test_ctrl_c_lets_the_step_under_way_finish_and_releases_the_lock(env_secrets):
    left_before = {node: set(ssh(node, "ls -a /tmp /etc/docker").split()) for node in NODES}  # by other tests
    for node in NODES:  # a change to roll out, so that the deploy is busy restarting docker
        ssh(node, "echo '{\"log-driver\": \"json-file\"}' | sudo tee /etc/docker/daemon.json >/dev/null")
    # As from a terminal: Ctrl-C delivered, even when the tests run where SIGINT is ignored (a
    # background job of a shell without job control), which Python would keep ignoring.
    proc = subprocess.Popen([str(REPO / ".venv/bin/invoke"), "deploy", "--env", "lab", "--only", "nodes"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ}, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "nodes.mirror" in line:  # the first node is done: interrupt during the second
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 130, out
    assert "interrupted in stage nodes" in out and "resume with: invoke deploy --env lab --from nodes" in out
    assert "RECAP deploy (lab)" in out
    assert not lock_exists()
    for node in NODES:
        json.loads(ssh(node, "sudo cat /etc/docker/daemon.json"))  # never half-written
        left = set(ssh(node, "ls -a /tmp /etc/docker").split()) - left_before[node]
        assert not [name for name in left if "bhops." in name], f"{node}: {left}"


def test_deploy_runs_the_whole_runbook_and_a_rerun_changes_nothing(deployed, cli):
    code, out = cli("deploy", "--env", "lab")
    assert code == 0, out
    assert stages(out) == {s: "ok" for s in ("nodes", "secrets", "cluster", "metallb", "proxy", "smoke")}
    assert not re.search(r"\| (changed|failed|unreachable) \|", out), "a converged lab changed on re-deploy"
    assert "smoke | smoke | ok | gh/binder-examples/requirements/HEAD: built and launched" in out
    code, out = cli("status", "--env", "lab")
    assert code == 0, out
    assert "smoke | status.smoke | ok | last smoke: passed at" in out
    # every lab node runs docker: builds keep the node's own docker (the charts' default), no dind
    daemonsets = ssh(CP, "kubectl get daemonsets -n binder -o name").split()
    assert daemonsets == ["daemonset.apps/binder-image-cleaner"]
    assert "local | values.builder | ok | image builder host: every node runs dockerd" in out


def test_binder_down_at_smoke_time_fails_the_smoke_stage_with_diagnostics(deployed, cli):
    ssh(CP, "kubectl delete deployment binder -n binder >/dev/null")
    try:
        for _ in range(50):  # the lab's runner stops the binder process within a few seconds
            if requests.get("https://10.77.0.5/binderhub/versions", timeout=5, verify=lab_ca()).status_code == 502:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the binder still answered 10 s after its deployment was deleted")
        code, out = cli("deploy", "--env", "lab", "--only", "smoke")
    finally:  # as cluster.wait says: a rollback to the current revision recreates it
        revision = json.loads(ssh(CP, "helm list -n binder -o json"))[0]["revision"]
        ssh(CP, f"helm rollback binder {revision} -n binder >/dev/null")
    assert code == 1
    assert re.search(r"smoke \| smoke \| failed \| failed in phase (connect|request).*502", out), out
    assert re.search(r"smoke \| diagnostics: \S+\.tar\.gz", out), out
    assert "resume with: invoke deploy --env lab --from smoke" in out


def test_rollback_puts_back_the_release_the_site_and_daemon_json(deployed, cli, tmp_path):
    before = {"values": json.loads(ssh(CP, "helm get values binder -n binder -o json")),
              "site": ssh("lab-proxy", "sudo sha256sum /etc/nginx/sites-available/binderhub"),
              "daemon": {n: json.loads(ssh(n, "sudo cat /etc/docker/daemon.json")) for n in NODES}}
    changed = lab_inventory(tmp_path, image_prefix="lab/changed-", nginx_log_dir="/var/log",
                            docker_mirrors=["https://mirror.example.org"], mirror_check_image=None)
    code, out = cli("deploy", "--env", "lab", "--skip-smoke", "--inventory", str(changed))
    assert code == 0, out
    assert json.loads(ssh(CP, "helm get values binder -n binder -o json")) != before["values"]

    code, out = cli("rollback", "--env", "lab")
    assert code == 0, out
    assert re.search(r"lab-node1 \| helm.rollback \| changed \| rolled back to revision \d+", out)
    assert "lab-proxy | rollback.site | changed" in out
    assert json.loads(ssh(CP, "helm get values binder -n binder -o json")) == before["values"]
    assert ssh("lab-proxy", "sudo sha256sum /etc/nginx/sites-available/binderhub") == before["site"]
    assert {n: json.loads(ssh(n, "sudo cat /etc/docker/daemon.json")) for n in NODES} == before["daemon"]
    mirrors = json.loads(ssh("lab-node2", "sudo docker info --format '{{json .RegistryConfig.Mirrors}}'"))
    assert mirrors == [m.rstrip("/") + "/" for m in before["daemon"]["lab-node2"]["registry-mirrors"]]
    code, out = cli("status", "--env", "lab")
    assert "status.release | ok" in out and "status.site | ok" in out


def test_a_node_going_down_mid_rollout_is_reported_and_the_others_converge(env_secrets):
    for node in NODES:  # a change to roll out, one node after the other
        ssh(node, "echo '{\"log-driver\": \"json-file\"}' | sudo tee /etc/docker/daemon.json >/dev/null")
    proc = subprocess.Popen([str(REPO / ".venv/bin/invoke"), "deploy", "--env", "lab", "--only", "nodes"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("lab-node1 | nodes.mirror | changed"):  # its connection is already open
                labhosts.stop_host("node3")
                break
        out = "".join(lines) + proc.stdout.read()
        assert proc.wait(timeout=120) == 1, out
    finally:
        labhosts.start_host("node3")
    assert "lab-node2 | nodes.mirror | changed" in out
    assert re.search(r"lab-node3 \| nodes.mirror \| unreachable \| connection lost", out), out
    assert "resume with: invoke deploy --env lab --from nodes" in out and not lock_exists()
    json.loads(ssh("lab-node3", "sudo cat /etc/docker/daemon.json"))  # its file is whole, old or new


def _dead(*names: str) -> dict:
    """The lab's hosts, those named pointing at addresses of the lab network where nothing listens."""
    roles = {"lab-node1": ["node", "control-plane"], "lab-node2": ["node"], "lab-node3": ["node"],
             "lab-proxy": ["proxy"]}
    return {name: {"roles": r, **({"hostname": f"10.77.0.{90 + i}"} if name in names else {})}
            for i, (name, r) in enumerate(roles.items())}


def test_an_unreachable_control_plane_still_gets_a_recap_a_report_and_the_resume_line(env_secrets, cli, tmp_path):
    hosts = _dead("lab-node1")
    code, out = cli("deploy", "--env", "lab", "--skip-smoke", "--inventory", str(lab_inventory(tmp_path, hosts)))
    assert code == 1
    assert re.search(r"lab-node1 \| deploy.lock \| unreachable \| cannot reach deploy@10.77.0.90", out)
    recap = out[out.index("RECAP deploy (lab)"):].splitlines()
    assert {line.split()[0] for line in recap[2:] if line.strip()} >= set(hosts)
    assert "resume with: invoke deploy --env lab --from nodes" in out
    log, report = (Path(p) for p in re.search(r"log: (\S+), report: (\S+)", out).groups())
    data = json.loads(report.read_text())
    assert data["stages"] == {"nodes": "not run", "secrets": "not run", "cluster": "not run", "metallb": "not run",
                              "proxy": "not run"}
    assert {r["host"] for r in data["results"]} == set(hosts)
    assert "deploy.lock" in log.read_text()
    assert [stat.S_IMODE(p.stat().st_mode) for p in (log, report, log.parent)] == [0o600, 0o600, 0o700]


def test_status_reports_an_unreachable_proxy_as_unreachable(deployed, cli, tmp_path):
    inventory = lab_inventory(tmp_path, _dead("lab-node1", "lab-proxy"))  # no cluster facts either
    code, out = cli("status", "--env", "lab", "--inventory", str(inventory))
    assert code == 1
    assert re.search(r"lab-node1 \| status.release \| unreachable \| cannot reach deploy@10.77.0.90", out), out
    assert re.search(r"lab-proxy \| status.site \| unreachable \| cannot reach deploy@10.77.0.93", out), out
    assert "pin vars" not in out and "RECAP status (lab)" in out


def test_diagnose_runs_without_a_secrets_file_and_fails_when_it_reaches_no_host(env_secrets, cli, tmp_path):
    secrets = env_secrets / "secrets"
    code, out = cli("diagnose", "--env", "lab")
    assert code == 0, out
    assert not secrets.exists() or not any(secrets.iterdir()), "diagnose made secrets"
    bundle = Path(re.search(r"bundle written: (\S+)", out).group(1))
    assert bundle.is_file()
    dead = tmp_path / "dead"
    dead.mkdir()
    code, out = cli("diagnose", "--env", "lab", "--inventory", str(lab_inventory(dead, _dead(*_dead()))))
    assert code == 1
    assert re.search(r"lab-node1 \| diagnose \| unreachable", out)
    assert re.search(r"lab-proxy \| diagnose \| unreachable", out)


def test_status_without_a_secrets_file_says_so_and_checks_the_rest(deployed, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(tmp_path / "none"))
    code, out = cli("status", "--env", "lab")
    assert code == 1
    assert "local | status.release | failed | no secrets file for lab" in out
    assert "lab-proxy | status.site | ok" in out and "lab-node2 | nodes.status | ok" in out, out
    assert not (tmp_path / "none").exists(), "status made a secrets file"
