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


# Runtimes, the lab CA, the registry's image and the client files (lab.hosts, lab.ca, lab.images).

def test_each_runtime_gives_each_host_its_runtime():
    names = ["node1", "node2", "node3", "node4", "proxy", labhosts.REGISTRY]
    assert {runtime: [labhosts.node_runtime(n, runtime) for n in names] for runtime in (None, *labhosts.RUNTIMES)} == {
        None: ["docker"] * 4 + [None, None],
        "docker": ["docker"] * 4 + [None, None],
        "containerd": ["containerd"] * 4 + [None, None],
        "mixed": ["docker", "containerd", "docker", "containerd", None, None]}


@pytest.mark.parametrize("arguments, message", [
    ({"runtime": "cri-o"}, r"unknown runtime 'cri-o': the lab's nodes can run docker, containerd or mixed "
                           r"\(lab-node1 and odd nodes docker, even nodes containerd\)"),
    ({"nodes": 0}, r"the number of nodes must be between 1 and 50, not 0"),
])
def test_a_bad_argument_is_refused_in_one_line_before_anything_is_made(tmp_path, arguments, message):
    with pytest.raises(labhosts.LabError, match=rf"^{message}$"):
        labhosts.up(state=tmp_path / ".lab", **arguments)
    assert not (tmp_path / ".lab").exists()


def test_the_lab_ca_is_made_once_and_signs_server_certificates_for_their_addresses(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from lab import ca
    cert = ca.ensure(tmp_path)
    made = cert.read_bytes(), (tmp_path / "ca.key").read_bytes()
    assert ca.ensure(tmp_path) == cert and (cert.read_bytes(), (tmp_path / "ca.key").read_bytes()) == made
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    chain, key = ca.issue(tmp_path, "lab-proxy", ips=("10.77.0.5",), dns=("lab-proxy",))
    leaf, root = x509.load_pem_x509_certificates(chain)
    assert root == x509.load_pem_x509_certificate(cert.read_bytes())
    root.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.77.0.5"]
    assert names.get_values_for_type(x509.DNSName) == ["lab-proxy"]
    assert b"PRIVATE KEY" in key and key not in chain
    assert ca.bundle(tmp_path).endswith(cert.read_bytes())


def test_the_registrys_image_is_the_same_on_every_build_and_its_manifest_names_its_blobs():
    import gzip
    import json

    from lab import images
    image = images.hello_world()
    assert image == images.hello_world() and image.repository == "library/hello-world" and image.tag == "latest"
    assert all(images.digest(blob) == digest for digest, blob in image.blobs.items())
    manifest = json.loads(image.manifest)
    assert manifest["mediaType"] == images.MANIFEST_TYPE
    layer = image.blobs[manifest["layers"][0]["digest"]]
    config = json.loads(image.blobs[manifest["config"]["digest"]])
    assert config["rootfs"]["diff_ids"] == [images.digest(gzip.decompress(layer))]


def test_the_client_files_name_the_registry_for_ssh_only_and_the_inventory_gets_this_labs_ca(tmp_path, monkeypatch):
    """The committed inventory names `.lab/ca.crt` relative to itself; the generated one names the state dir's."""
    repo, state = tmp_path / "repo", tmp_path / "state"
    repo.mkdir()
    (repo / "hosts.yaml").write_text(yaml.safe_dump({"environments": {"lab": {
        "ssh_config": ".lab/ssh_config", "vars": {"tls_ca_bundle": ".lab/ca.crt"}, "hosts": {}}}}))
    monkeypatch.setattr(labhosts, "REPO", repo)
    monkeypatch.setattr(labhosts, "hosts_dir", lambda state=None: tmp_path / "hostfiles")
    names = ["node1", "proxy", labhosts.REGISTRY]
    for name in names:
        key = labhosts.host_dir(name, state) / "upper/etc/ssh/ssh_host_ed25519_key.pub"
        key.parent.mkdir(parents=True)
        key.write_text(f"ssh-ed25519 KEY{name} root@{name}\n")
    state.mkdir()
    labhosts._write_client_files(state, names)
    lab = yaml.safe_load((state / "hosts.yaml").read_text())["environments"]["lab"]
    assert list(lab["hosts"]) == ["lab-node1", "lab-proxy"]
    assert lab["vars"]["tls_ca_bundle"] == str(state / "ca.crt")
    assert "Host lab-registry\n    HostName 10.77.0.6\n" in (state / "ssh_config").read_text()
    assert "lab-registry,10.77.0.6 ssh-ed25519 KEYregistry\n" in (state / "known_hosts").read_text()
