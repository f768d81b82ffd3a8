"""Where the lab keeps its hosts' files, which Kubernetes it can be and where its charts come from (no lab
needed)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from lab import charts as labcharts
from lab import hosts as labhosts
from lab.cluster import chartrepo


@pytest.mark.parametrize("top", labhosts.PRIVATE_DIRS)
def test_a_state_dir_under_a_private_dir_keeps_the_hosts_files_outside_them(top):
    """An overlay refuses an upper dir inside its lower dir (`mount: /opt: ... Too many levels of
    symbolic links`): a checkout in /opt/binderhub-ops must still get a lab."""
    state = Path(top) / "binderhub-ops" / ".lab"
    root = labhosts.hosts_dir(state)
    assert root.parent == labhosts.HOSTS_ROOT
    assert not any(root.is_relative_to(d) for d in labhosts.PRIVATE_DIRS)
    assert labhosts.host_dir("node1", state) == root / "hosts" / "node1"
    assert root == labhosts.hosts_dir(state) != labhosts.hosts_dir(Path(top) / "other" / ".lab")


def test_elsewhere_the_hosts_files_stay_in_the_state_dir():
    assert labhosts.hosts_dir(Path("/work/binderhub-ops/.lab")) == Path("/work/binderhub-ops/.lab")


def test_the_lab_offers_the_kubernetes_versions_its_emulator_serves():
    from lab.cluster import apis
    assert (labhosts.KUBE_VERSIONS, labhosts.DEFAULT_KUBE_VERSION) == (apis.SUPPORTED, apis.DEFAULT)


def test_an_unknown_kubernetes_version_is_refused_before_anything_is_made(tmp_path):
    with pytest.raises(labhosts.LabError, match=r"^unknown Kubernetes version '1.30': the lab's cluster can be "
                                                r"1.24 or 1.32$"):
        labhosts.up(state=tmp_path / ".lab", kube_version="1.30")
    assert not (tmp_path / ".lab").exists()


# Where the lab's charts come from (lab.charts): $BHOPS_CHARTS, else `helm pull` into the state dir.

def _archives(directory: Path, versions=labcharts.VERSIONS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for version in versions:
        (directory / labcharts.archive_name(version)).write_bytes(b"chart " + version.encode())
    return [directory / labcharts.archive_name(v) for v in versions]


def _failing_helm(tmp_path: Path) -> Path:
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\necho \"helm $*\" >&2\nexit 1\n")
    helm.chmod(0o755)
    return helm


def test_a_chart_directory_missing_a_version_names_the_file_and_both_fixes(tmp_path, monkeypatch):
    charts = tmp_path / "charts"
    _archives(charts, labcharts.VERSIONS[:1])
    monkeypatch.setenv("BHOPS_CHARTS", str(charts))
    current = labcharts.VERSIONS[1]
    with pytest.raises(labcharts.ChartsError) as caught:
        labcharts.archives(tmp_path / "cache", _failing_helm(tmp_path))
    assert str(caught.value) == (
        f"BHOPS_CHARTS={charts} has no binderhub-{current}.tgz: put that packaged chart there, or unset "
        f"BHOPS_CHARTS so that the lab fetches it (`helm pull jupyterhub/binderhub --version {current}` from "
        "https://hub.jupyter.org/helm-chart/)")
    assert not (tmp_path / "cache").exists()


def test_a_chart_directory_that_is_not_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_CHARTS", str(tmp_path / "nowhere"))
    with pytest.raises(labcharts.ChartsError, match=r"BHOPS_CHARTS=.*/nowhere is not a directory: point it at"):
        labcharts.archives(tmp_path / "cache", _failing_helm(tmp_path))


def test_the_chart_directory_wins_and_nothing_is_fetched(tmp_path, monkeypatch):
    expected = _archives(tmp_path / "charts")
    monkeypatch.setenv("BHOPS_CHARTS", str(tmp_path / "charts"))
    assert labcharts.archives(tmp_path / "cache", _failing_helm(tmp_path)) == expected
    monkeypatch.delenv("BHOPS_CHARTS")
    assert labcharts.archives(tmp_path / "cache", _failing_helm(tmp_path), tmp_path / "charts") == expected


def test_without_a_chart_directory_each_chart_is_pulled_once_into_the_cache(tmp_path, monkeypatch):
    """The real repository is out of reach here: a stand-in helm records its argv and writes the archive
    where `helm pull --destination` would."""
    monkeypatch.delenv("BHOPS_CHARTS", raising=False)
    calls, helm = tmp_path / "calls", tmp_path / "helm"
    helm.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n'
                    'while [ $# -gt 0 ]; do case $1 in --version) v=$2;; --destination) d=$2;; esac; shift; done\n'
                    'echo chart > "$d/binderhub-$v.tgz"\n')
    helm.chmod(0o755)
    cache = tmp_path / "state" / "charts"
    assert labcharts.archives(cache, helm) == [cache / labcharts.archive_name(v) for v in labcharts.VERSIONS]
    assert labcharts.archives(cache, helm) == [cache / labcharts.archive_name(v) for v in labcharts.VERSIONS]
    assert calls.read_text().splitlines() == [
        f"pull binderhub --repo https://hub.jupyter.org/helm-chart/ --version {v} --destination {cache}"
        for v in labcharts.VERSIONS]


def test_a_failed_pull_says_how_to_do_without_internet(tmp_path, monkeypatch):
    monkeypatch.delenv("BHOPS_CHARTS", raising=False)
    with pytest.raises(labcharts.ChartsError, match=r"^`helm pull jupyterhub/binderhub --version 0.2.0-n600.h36369a7` "
                       r"from https://hub.jupyter.org/helm-chart/ failed: helm pull binderhub .*; without internet "
                       r"access, set BHOPS_CHARTS to a directory holding binderhub-0.2.0-n600.h36369a7.tgz$"):
        labcharts.archives(tmp_path / "cache", _failing_helm(tmp_path))


def test_the_repository_serves_both_real_charts_indexed_by_helm(real_charts, tmp_path):
    out = tmp_path / "repo"
    (out).mkdir()
    (out / "binderhub-0.0.1.tgz").write_text("stale")
    archives = chartrepo.build(out, "http://10.77.0.11:8879/", real_charts, labhosts.HELM)
    assert [a.name for a in archives] == sorted(labcharts.archive_name(v) for v in labcharts.VERSIONS)
    assert not (out / "binderhub-0.0.1.tgz").exists()
    index = yaml.safe_load((out / "index.yaml").read_text())
    assert {(e["version"], e["urls"][0], e["digest"]) for e in index["entries"]["binderhub"]} == {
        (v, f"http://10.77.0.11:8879/binderhub-{v}.tgz",
         hashlib.sha256((real_charts / labcharts.archive_name(v)).read_bytes()).hexdigest())
        for v in labcharts.VERSIONS}
