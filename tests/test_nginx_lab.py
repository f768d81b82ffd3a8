"""nginx.reload and nginx.check against the lab's proxy host: real nginx, real reloads."""
from __future__ import annotations

import re
import time

import pytest
import requests

from fabfile import nginx
from tests.conftest import lab_ca, lab_inventory, ssh

pytestmark = pytest.mark.lab

PROXY = "lab-proxy"
SITE = "/etc/nginx/sites-available/binderhub"
OLD_SITE = """server {
    listen 80;
    server_name 10.77.0.5;
    location /old/ { return 200 "old site\\n"; }
}
"""


def fetch(path: str) -> tuple[int, str]:
    """GET through the proxy host's plain-http old site from outside, as a user would."""
    # not following a redirect: an https site the reload replaces may still answer for a moment
    response = requests.get(f"http://10.77.0.5{path}", timeout=10, allow_redirects=False)
    return response.status_code, response.text.strip()


@pytest.fixture
def old_site(lab):
    """A live site the tasks must not lose: it answers /old/."""
    ssh(PROXY, f"printf %s '{OLD_SITE}' | sudo tee {SITE} >/dev/null && "
               f"sudo ln -sfn {SITE} /etc/nginx/sites-enabled/binderhub && sudo rm -f {SITE}.bhops-*.bak && "
               "sudo service nginx reload >/dev/null")
    for _ in range(20):  # the reload is graceful: old workers may answer a moment longer
        if fetch("/old/") == (200, "old site"):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the old site does not answer /old/ 4 s after the reload: {fetch('/old/')}")
    yield ssh(PROXY, f"sudo sha256sum {SITE}")
    ssh(PROXY, f"sudo rm -f {SITE} {SITE}.bhops-*.bak /etc/nginx/sites-enabled/binderhub; "
               "sudo service nginx reload >/dev/null")


def test_a_value_that_breaks_nginx_leaves_the_old_site_serving(old_site, cli, tmp_path):
    broken = lab_inventory(tmp_path, nginx_log_dir="/nonexistent/logs")
    code, out = cli("nginx.reload", "--env", "lab", "--inventory", str(broken))
    assert code == 1
    assert re.search(r"lab-proxy \| nginx.reload \| failed \| nginx -t rejected the new site; the live one is "
                     r"untouched: .*/nonexistent/logs/binderhub-access.log", out), out
    assert ssh(PROXY, f"sudo sha256sum {SITE}") == old_site
    assert fetch("/old/") == (200, "old site")
    assert "bhops" not in ssh(PROXY, "ls -a /tmp")


def test_a_failed_probe_restores_the_old_site(old_site, cli, tmp_path, monkeypatch):
    monkeypatch.setattr(nginx, "UPSTREAM_SECONDS", 3)  # not 30 s waiting for a binder that is not there
    # node3 runs no binder: the new site's /binderhub/ answers 502 through the proxy
    nowhere = lab_inventory(tmp_path, binder_node_address="10.77.0.13")
    code, out = cli("nginx.reload", "--env", "lab", "--inventory", str(nowhere))
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("lab-proxy | nginx.reload |"))
    assert "failed | probe through the proxy failed (/binderhub/versions -> 502" in line
    assert f"restored the previous site from {SITE}.bhops-" in line
    assert "connect() failed (111: Connection refused)" in line
    assert ssh(PROXY, f"sudo sha256sum {SITE}") == old_site
    assert fetch("/old/") == (200, "old site")


def test_dry_run_shows_the_site_diff_and_writes_nothing(old_site, cli):
    code, out = cli("nginx.reload", "--env", "lab", "--dry-run")
    assert code == 0
    assert "lab-proxy | nginx.reload | would change | write /etc/nginx/sites-available/binderhub" in out
    assert "lab-proxy |   +    location /binderhub/ {" in out
    assert "lab-proxy |   +        proxy_pass http://10.77.0.11:32574$request_uri;" in out
    assert "lab-proxy |   +        proxy_pass http://10.77.0.240:80/jupyterhub/;" in out
    assert "lab-proxy |   -    location /old/" in out
    assert ssh(PROXY, f"sudo sha256sum {SITE}") == old_site


def test_check_names_each_mismatch_with_its_fix(old_site, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("BHOPS_SECRETS_DIR", str(tmp_path))
    ssh("lab-node1", "kubectl create namespace binder >/dev/null 2>&1; true")
    assert cli("secrets.init", "--env", "lab")[0] == 0
    assert cli("helm.upgrade", "--env", "lab")[0] == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    code, out = cli("nginx.check", "--env", "lab", "--inventory", str(lab_inventory(moved, binder_base_url="/binder/")))
    assert code == 1
    failures = [l.split(" | ", 3)[3] for l in out.splitlines() if l.startswith("lab-proxy | nginx.check | failed")]
    assert ("config.BinderHub.base_url is '/binderhub/' in the release, the inventory says '/binder/': "
            "run helm.upgrade") in failures
    assert "the site has no `location /binder/` (base URLs changed?): run nginx.reload" in failures
    assert "the site has no `location /jupyterhub/` (base URLs changed?): run nginx.reload" in failures


def test_a_certificate_clients_would_not_trust_fails_the_probe_and_restores_the_old_site(old_site, cli, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setattr(nginx, "UPSTREAM_SECONDS", 3)  # no release here: not 30 s waiting for its upstreams
    # A certificate the lab CA never signed: nginx -t accepts it, browsers (and the proxy host's curl) do not.
    ssh(PROXY, "sudo openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=10.77.0.5 "
               "-addext subjectAltName=IP:10.77.0.5 -keyout /etc/ssl/bhlab/self.key -out /etc/ssl/bhlab/self.crt "
               "2>/dev/null")
    try:
        self_signed = lab_inventory(tmp_path, tls_certificate="/etc/ssl/bhlab/self.crt",
                                    tls_certificate_key="/etc/ssl/bhlab/self.key")
        code, out = cli("nginx.reload", "--env", "lab", "--inventory", str(self_signed))
    finally:
        ssh(PROXY, "sudo rm -f /etc/ssl/bhlab/self.key /etc/ssl/bhlab/self.crt")
    assert code == 1
    line = next(l for l in out.splitlines() if l.startswith("lab-proxy | nginx.reload |"))
    assert "failed | probe through the proxy failed (/binderhub/versions -> curl: (60) SSL certificate problem: " \
           "self-signed certificate" in line, line
    assert f"restored the previous site from {SITE}.bhops-" in line
    assert ssh(PROXY, f"sudo sha256sum {SITE}") == old_site
    assert fetch("/old/") == (200, "old site")


def test_the_site_converges_and_serves_both_paths_over_https(deployed, cli):
    ssh(PROXY, f"sudo rm -f {SITE} /etc/nginx/sites-enabled/binderhub && sudo service nginx reload >/dev/null")
    code, out = cli("nginx.reload", "--env", "lab")
    assert code == 0, out
    assert "lab-proxy | nginx.reload | changed | wrote /etc/nginx/sites-available/binderhub, reloaded nginx, " \
           "/binderhub/ and /jupyterhub/ answer" in out
    code, out = cli("nginx.reload", "--env", "lab")
    assert code == 0 and "lab-proxy | nginx.reload | ok | /etc/nginx/sites-available/binderhub is current" in out

    # The lab CA's certificate, checked as a browser checks it; plain http is sent to https.
    versions = requests.get("https://10.77.0.5/binderhub/versions", timeout=10, verify=lab_ca())
    assert versions.status_code == 200 and "binderhub" in versions.json()
    assert requests.get("https://10.77.0.5/jupyterhub/hub/health", timeout=10, verify=lab_ca()).status_code == 200
    moved = requests.get("http://10.77.0.5/binderhub/versions", timeout=10, allow_redirects=False)
    assert (moved.status_code, moved.headers["Location"]) == (301, "https://10.77.0.5/binderhub/versions")
    with pytest.raises(requests.exceptions.SSLError):  # a client without the lab CA refuses the proxy
        requests.get("https://10.77.0.5/binderhub/versions", timeout=10)
    hub = requests.get("http://10.77.0.240/jupyterhub/hub/api/", timeout=10)  # the floating IP itself
    assert hub.status_code == 200 and "version" in hub.json()
    code, out = cli("nginx.check", "--env", "lab")
    assert code == 0 and "ok | base URLs, hub_url, nginx locations, NodePort and floating IP agree" in out
