"""docker.mirror rolled out in batches on ten lab nodes, one of which cannot restart: real dockerd,
real init scripts, the CLI as an operator types it.

The lab goes to ten nodes here, which restarts its control plane with an empty cluster; the file's
name sorts before the other lab tests, so in CI this happens before anything is deployed."""
from __future__ import annotations

import base64
import json
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import SimpleNamespace

import pytest
import yaml

from lab import hosts as labhosts
from tests.conftest import lab_inventory, ssh

pytestmark = pytest.mark.lab

NODES = [f"lab-node{i}" for i in range(1, 11)]
MIRROR = "https://10.77.0.6:5000"
LAB_DEFAULT = '{"log-driver": "json-file", "log-opts": {"max-size": "10m"}}\n'
# dockerd refuses to start when a directive is both a flag and in daemon.json ("the following
# directives are specified both as a flag and in the configuration file"); Debian's
# /etc/init.d/docker passes $DOCKER_OPTS from /etc/default/docker. The running dockerd is not
# affected until the rollout restarts it.
DEFAULTS = "/etc/default/docker"
FLAG = f'DOCKER_OPTS="--registry-mirror={MIRROR}"\n'
RESTART = ("service docker stop >/dev/null 2>&1 || true; service docker start >/dev/null; "
           "for i in $(seq 1 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1")
# dockerd's log lines: `time="2026-11-30T22:03:28.718244765Z" level=info msg="..."`.
LOG_TIME = re.compile(r'^time="([^".]+)\.(\d{6})\d*Z" .*msg="(Processing signal \'terminated\''
                      r'|API listen on /var/run/docker\.sock)"', re.M)
RESULT = re.compile(r"^(lab-node\d+) \| \S+\.mirror \| (\w+) \| (.*)$", re.M)


def on(nodes, fn):
    with ThreadPoolExecutor(max(1, len(nodes))) as pool:
        return dict(zip(nodes, pool.map(fn, nodes)))


def put(node, path, text, restart=False):
    """Write `text` to `path` on `node` (and restart docker on it)."""
    data = shlex.quote(base64.b64encode(text.encode()).decode())
    script = f"echo {data} | base64 -d > {path}" + (f"; {RESTART}" if restart else "")
    ssh(node, f"sudo sh -c {shlex.quote(script)}")


def state(node):
    """daemon.json, docker's pid, its mirrors and the backups beside daemon.json."""
    out = ssh(node, "sudo cat /etc/docker/daemon.json; echo '#'; cat /var/run/docker.pid; echo; "
                    "sudo docker info --format '{{json .RegistryConfig.Mirrors}}'; ls /etc/docker")
    text, rest = out.split("#\n", 1)
    pid, mirrors, *files = rest.splitlines()
    return {"daemon.json": text, "pid": pid, "mirrors": json.loads(mirrors),
            "backups": {f for f in files if f.endswith(".bak")}}


def restarts(node, since):
    """(stopped, answering) times of each docker restart on `node` after `since`, from dockerd's log."""
    stops, ready = [], []
    for day, micro, what in LOG_TIME.findall(ssh(node, "sudo cat /var/log/docker.log")):
        at = datetime.fromisoformat(f"{day}.{micro}+00:00").timestamp()
        if at >= since:
            (stops if what.startswith("Processing") else ready).append(at)
    return stops, ready


def restore(node, kept):
    """Put back the daemon.json `node` had (restarting docker on it) and remove the backups made since."""
    now = state(node)
    if now["daemon.json"] != kept["daemon.json"]:
        put(node, "/etc/docker/daemon.json", kept["daemon.json"], restart=True)
    if made := sorted(now["backups"] - kept["backups"]):
        ssh(node, shlex.join(["sudo", "rm", "-f", *(f"/etc/docker/{f}" for f in made)]))


@pytest.fixture
def ten_nodes(lab, real_charts, tmp_path):
    """The lab with ten docker nodes, none with a mirror; an inventory of them naming MIRROR, its
    nodes in batches of 3 (in the inventory's order), and the fifth node of that order failing to
    restart (the conflicting flag in its /etc/default/docker). Afterwards the lab as it was (three
    nodes, their files and docker)."""
    runtime, kept, defaults = labhosts.lab_runtime(), {}, None
    try:
        labhosts.up(nodes=10, charts_dir=real_charts, runtime="docker")
        kept.update(on(NODES[:3], state))
        on([n for n in NODES[:3] if kept[n]["daemon.json"] != LAB_DEFAULT or kept[n]["mirrors"]],
           lambda n: put(n, "/etc/docker/daemon.json", LAB_DEFAULT, restart=True))
        inventory = lab_inventory(tmp_path, docker_mirrors=[MIRROR], mirror_check_image=None)
        order = [n for n in yaml.safe_load(inventory.read_text())["environments"]["lab"]["hosts"] if n in NODES]
        failing = order[4]
        defaults = ssh(failing, f"cat {DEFAULTS}")
        put(failing, DEFAULTS, defaults + FLAG)
        yield SimpleNamespace(inventory=inventory, failing=failing,
                              batches=[order[i:i + 3] for i in range(0, len(order), 3)])
    finally:
        if defaults is not None:
            put(failing, DEFAULTS, defaults)
        on(list(kept), lambda n: restore(n, kept[n]))
        labhosts.up(nodes=3, charts_dir=real_charts, runtime=runtime)

def test_batches_of_3_on_10_nodes_stop_after_the_batch_with_a_failing_node(ten_nodes, cli):
    batches, failing = ten_nodes.batches, ten_nodes.failing
    before = on(NODES, state)
    since = datetime.now().timestamp()
    code, out = cli("docker.mirror", "--env", "lab", "--inventory", str(ten_nodes.inventory), "--batch", "3")
    after = on(NODES, state)

    assert code == 1, out
    lines = {(m[1], m[2]): m[3] for m in RESULT.finditer(out)}  # (host, status) -> detail
    for node in batches[0] + batches[1]:
        if node != failing:
            assert (node, "changed") in lines, out
            assert after[node]["mirrors"] == [MIRROR + "/"] and after[node]["pid"] != before[node]["pid"], node
    failed = lines[failing, "failed"]
    assert "specified both as a flag and in the configuration file: registry-mirrors" in failed
    assert re.search(r"restored the previous daemon\.json from /etc/docker/daemon\.json\.bhops-\S+\.bak; "
                     r"docker runs again on it$", failed)
    assert after[failing]["daemon.json"] == before[failing]["daemon.json"]
    assert after[failing]["mirrors"] == [MIRROR + "/"]  # docker answers again, the mirror from its flag
    assert [(host, detail) for (host, status), detail in lines.items() if status == "skipped"] == [
        (node, f"not touched: rollout stopped after {failing} failed") for node in batches[2] + batches[3]]
    for node in batches[2] + batches[3]:
        assert after[node] == before[node], node

    # The nodes of a batch restart together: each is down before any of them answers again; the
    # next batch starts once every node of the previous one answers.
    times = on(batches[0] + batches[1], lambda n: restarts(n, since))
    assert all(len(stops) == 1 for stops, _ in times.values()), times
    answered = []
    for batch in batches[:2]:
        stopped = [times[n][0][0] for n in batch]
        ready = [min(t for t in times[n][1] if t > times[n][0][0]) for n in batch]
        assert max(stopped) < min(ready), f"{batch} did not restart in parallel: stopped {stopped}, ready {ready}"
        answered.append(max(times[n][1][-1] for n in batch))
    assert answered[0] < min(times[n][0][0] for n in batches[1]), "the second batch began before the first ended"
