"""metallb.install's memberlist Secret, without a host: which manifests leave it to the operator, and the
script that makes it hands the key to kubectl on stdin only."""
from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import yaml

from fabfile import metallb

MANIFESTS = Path(__file__).resolve().parents[1] / "lab/metallb"


def _manifest(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if isinstance(d, dict)]


def test_only_a_speaker_reading_memberlist_without_a_controller_making_it_needs_it_by_hand():
    assert metallb.memberlist_by_hand(_manifest("metallb-v0.9.3.yaml"))  # speaker env secretKeyRef
    assert not metallb.memberlist_by_hand(_manifest("metallb-native-v0.14.8.yaml"))  # METALLB_ML_SECRET_NAME
    assert not metallb.memberlist_by_hand([d for d in _manifest("metallb-v0.9.3.yaml") if d["kind"] != "DaemonSet"])


def test_the_key_is_made_by_the_script_and_reaches_kubectl_on_stdin_only(tmp_path):
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    fake.chmod(0o755)
    subprocess.run(["sh", "-c", metallb._CREATE_MEMBERLIST, "sh", str(fake), "--kubeconfig", "k"], check=True)
    key = (tmp_path / "stdin").read_text()
    assert len(base64.b64decode(key, validate=True)) == 128
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv == ["--kubeconfig", "k", "create", "secret", "generic", "memberlist", "-n", "metallb-system",
                    "--from-file=secretkey=/dev/stdin", "-o", "name"]
    assert key not in metallb._CREATE_MEMBERLIST
