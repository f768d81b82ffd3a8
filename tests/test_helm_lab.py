"""helm.upgrade and helm.rollback on the lab: no secret on the host's disk, the deploy lock,
and --revision checked before connecting."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from fabfile import inventory, lock
from fabfile.connections import Pool
from tests.conftest import lab_inventory, ssh, stop
from tests.test_cluster_lab import CP, MARKER, cluster, helm_release, line  # noqa: F401 (a fixture)
from tests.test_secretfile import unreachable_inventory

pytestmark = pytest.mark.lab

#: Every file under the host's temp directories and the login user's home holding the marker.
FIND = f'grep -rlF {MARKER} /tmp /var/tmp /dev/shm "$HOME" 2>/dev/null'
#: The same, again and again, for as long as it runs.
WATCH = f"while :; do {FIND}; sleep 0.05; done"


def watch(lab) -> subprocess.Popen:
    """The watcher on the control plane, as the login user helm runs as."""
    proc = subprocess.Popen(["ssh", "-F", str(lab / "ssh_config"), CP, WATCH], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    ssh(CP, "sleep 1")  # its first round is under way
    return proc


def test_upgrade_hands_the_secrets_to_helm_on_stdin_never_in_a_file(cluster, cli, commands, lab, tmp_path):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    watcher = watch(lab)
    try:
        changed = lab_inventory(tmp_path, image_prefix="lab/changed-")
        code, out = cli("helm.upgrade", "--env", "lab", "--inventory", str(changed))
    finally:
        stop(watcher)
    seen = watcher.stdout.read()
    assert code == 0 and "changed | upgraded binder: revision 2 deployed" in line(out, "helm.upgrade"), out
    assert seen == "", f"a file on {CP} held a secret during the upgrade: {seen}"
    helm_lines = [c for c in commands if c.startswith("helm ") and (" upgrade " in c or " template " in c)]
    assert helm_lines and all("--values -" in c for c in helm_lines)
    assert not [c for c in commands if " -f " in c or "--values /" in c], "a values file on the host"
    assert not [c for c in commands if MARKER in c], "a secret was on a command line"
    assert MARKER not in out
    deployed = json.loads(ssh(CP, "helm get values binder -n binder -o json"))
    assert deployed["jupyterhub"]["hub"]["services"]["binder"]["apiToken"] == MARKER + "-api"
    assert deployed["config"]["BinderHub"]["image_prefix"] == "lab/changed-"
    assert "bhops." not in ssh(CP, "ls -a /tmp"), "a private directory was left behind"
    assert ssh(CP, FIND, check=False) == "", "a secret was left on the host's disk"


@pytest.fixture
def held_lock(cluster):
    """The deploy lock taken as another deploy takes it, released afterwards."""
    env = inventory.load("lab")
    host = env.with_role("control-plane")[0]
    pool = Pool()
    conn = pool.get(host)
    uid, _ = lock.acquire(conn, host, "lab", False)
    yield
    lock.release(conn, host, uid)
    pool.close()


def test_a_lock_broken_by_another_deploy_is_not_given_back_by_the_first(cluster):
    env = inventory.load("lab")
    host = env.with_role("control-plane")[0]
    pool = Pool()
    conn = pool.get(host)
    held = "kubectl get configmap binderhub-ops-deploy-lock -n kube-system -o jsonpath={.metadata.uid}"
    try:
        first, _ = lock.acquire(conn, host, "lab", False)
        second, note = lock.acquire(conn, host, "lab", True)
        assert note.startswith("broke the deploy lock of ") and second != first
        lock.release(conn, host, first)  # the first deploy ends late: the lock is no longer its own
        assert ssh(CP, held) == second, "the first deploy gave back a lock it no longer held"
        lock.release(conn, host, second)
        assert not ssh(CP, held + " --ignore-not-found"), "the second deploy's lock was not given back"
    finally:
        pool.close()


def test_a_held_lock_stops_upgrade_and_rollback_naming_the_holder(held_lock, cli, tmp_path):
    changed = lab_inventory(tmp_path, image_prefix="lab/changed-")
    for task in (["helm.upgrade", "--inventory", str(changed)], ["helm.rollback", "--revision", "1"],
                 ["cluster.floating-ip"], ["rollback"]):
        code, out = cli(*task, "--env", "lab")
        assert code == 1, out
        assert "deploy.lock | failed | deploy lock held by " in out and f"(pid {os.getpid()}), deploying lab" in out
        assert "wait for that deploy to end, or pass --break-lock" in out
        went_on = [s for s in ("helm.upgrade |", "helm.rollback |", "cluster.floating-ip |", "rollback.") if s in out]
        assert not went_on, f"{task[0]} went on: {out}"
    assert helm_release() is None, "the release was touched"
    code, out = cli("helm.upgrade", "--env", "lab", "--break-lock")
    assert code == 0 and "deploy.lock | ok | broke the deploy lock of " in out, out
    assert helm_release()["revision"] == "1"


def test_upgrade_alone_takes_and_gives_back_the_lock(cluster, cli):
    code, out = cli("helm.upgrade", "--env", "lab")
    assert code == 0 and "deploy.lock | ok | took the deploy lock" in out, out
    assert not ssh(CP, "kubectl get configmap binderhub-ops-deploy-lock -n kube-system -o name 2>/dev/null",
                   check=False).strip(), "the lock was left behind"


@pytest.mark.parametrize("revision", ["abc", "0", "-1", "1.5", ""])
def test_a_bad_rollback_revision_is_refused_before_connecting(revision, cli, tmp_path):
    code, out = cli("helm.rollback", "--env", "t", "--inventory", unreachable_inventory(tmp_path),
                    "--revision", revision)
    assert code == 1
    assert out.strip() == f"--revision must be a revision number from 1 up (see `helm history`), not {revision!r}"


def _with_other_selector(name: str) -> None:
    """Replace the live Deployment `name` with one whose selector holds one more label, as a
    chart of another version would have made it: the upgrade cannot patch it."""
    live = json.loads(ssh(CP, f"kubectl get deployment {name} -n binder -o json"))
    spec = live["spec"]
    spec["selector"]["matchLabels"]["tier"] = "old"
    spec["template"]["metadata"]["labels"]["tier"] = "old"
    fresh = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": spec,
             "metadata": {k: live["metadata"][k] for k in ("name", "namespace", "labels", "annotations")}}
    ssh(CP, f"kubectl delete deployment {name} -n binder >/dev/null && "
            f"kubectl create -f - >/dev/null <<'EOF'\n{json.dumps(fresh)}\nEOF")


def _selector(name: str) -> dict:
    return json.loads(ssh(CP, f"kubectl get deployment {name} -n binder -o json"))["spec"]["selector"]["matchLabels"]


def test_an_upgrade_changing_an_immutable_field_is_refused_then_recreates_with_recreate(cluster, cli, tmp_path):
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    _with_other_selector("binder")
    changed = str(lab_inventory(tmp_path, image_prefix="lab/changed-"))
    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", changed)
    assert code == 1
    assert ("failed | nothing was changed: the upgrade changes fields the cluster cannot change in place: "
            "Deployment binder/binder (spec.selector); re-run with --recreate (`invoke helm.upgrade --env lab "
            "--recreate`, or deploy --recreate) to delete it first") in line(out, "helm.upgrade"), out
    assert helm_release()["revision"] == "1"

    code, out = cli("deploy", "--env", "lab", "--inventory", changed, "--only", "cluster", "--recreate", "--dry-run")
    assert code == 0 and "would change | delete Deployment binder/binder (spec.selector), then upgrade binder" \
        in line(out, "helm.upgrade"), out
    assert "recreate: Deployment binder/binder (spec.selector): delete it, the upgrade creates it anew" in out
    assert _selector("binder")["tier"] == "old" and helm_release()["revision"] == "1"

    code, out = cli("helm.upgrade", "--env", "lab", "--inventory", changed, "--recreate")
    assert code == 0 and "changed | upgraded binder: revision 2 deployed (recreated Deployment binder)" \
        in line(out, "helm.upgrade"), out
    assert "tier" not in _selector("binder")
