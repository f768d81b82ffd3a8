"""The runner reads what each real BinderHub chart creates, by its real names and keys: both charts
rendered with the real `helm template`, the objects served to the runner as the API would (no
process is started)."""
from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from lab import charts as labcharts
from lab.apps import pods
from lab.apps.runner import Runner

HELM = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "helm"
PINNED, CURRENT = labcharts.VERSIONS
BINDER_TOKEN, PROXY_TOKEN, CLIENT_SECRET = secrets.token_hex(32), secrets.token_hex(32), "client-secret-marker-3b1"
COOKIE_SECRET, GITHUB_TOKEN = secrets.token_hex(32), "github-token-marker-9d2"
NODE_PORT = 31234

pytestmark = pytest.mark.skipif(not HELM.exists(), reason="run scripts/install-k8s-tools")


def chart_values(version: str) -> dict:
    """Minimal values as the project sets them for `version`'s era, with authentication on."""
    hub = {"baseUrl": "/hub-base/", "services": {"binder": {"apiToken": BINDER_TOKEN}},
           "config": {"JupyterHub": {"authenticator_class": "generic-oauth"},
                      "GenericOAuthenticator": {"client_id": "hub", "client_secret": CLIENT_SECRET}}}
    jupyterhub = {"hub": hub, "proxy": {"secretToken": PROXY_TOKEN, "service": {"type": "LoadBalancer"}}}
    values = {"config": {"BinderHub": {"hub_url": "http://192.0.2.1/hub-base/", "base_url": "/binder-base/",
                                       "auth_enabled": True, "use_registry": False},
                         "GitHubRepoProvider": {"access_token": GITHUB_TOKEN}},
              "service": {"type": "NodePort", "nodePort": NODE_PORT}, "jupyterhub": jupyterhub}
    if version == PINNED:
        hub["cookieSecret"] = COOKIE_SECRET
        jupyterhub["custom"] = {"binderauth_enabled": True}
        jupyterhub["scheduling"] = {"userScheduler": {"pdb": {"enabled": False}}, "userPlaceholder": {"enabled": False}}
        values["pdb"] = {"enabled": False}
    else:
        hub["config"]["BinderSpawner"] = {"auth_enabled": True}
    return values


class Manifest:
    """The rendered objects of namespace `binder`, read as the runner's Api reads the API server;
    Secrets as an API server stores them (stringData folded into data), proxy-public given an IP."""

    namespace, url = "binder", "manifest"

    def __init__(self, objects: list[dict]):
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        for (kind, _), obj in self.objects.items():
            if kind == "Secret":
                for key, value in (obj.pop("stringData", None) or {}).items():
                    obj.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()
        self.objects["Service", "proxy-public"]["status"] = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}

    def deployment(self, name):
        return self.objects.get(("Deployment", name))

    def service(self, name):
        return self.objects.get(("Service", name))

    def configmap(self, name):
        found = self.objects.get(("ConfigMap", name))
        return None if found is None else dict(found.get("data") or {})

    def secret(self, name):
        found = self.objects.get(("Secret", name))
        data = (found or {}).get("data") or {}
        return None if found is None else {k: base64.b64decode(v).decode() for k, v in data.items()}


def rendered(real_charts: Path, version: str, tmp_path: Path) -> Manifest:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(version)))
    out = subprocess.run([str(HELM), "template", "binder", str(real_charts / labcharts.archive_name(version)),
                          "-n", "binder", "-f", str(values)], capture_output=True, text=True, check=True,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout
    return Manifest([o for o in yaml.safe_load_all(out) if o])


def desired(manifest: Manifest, tmp_path: Path) -> dict:
    chp = tmp_path / "configurable-http-proxy"
    chp.touch()
    return Runner(manifest, "127.0.0.1", tmp_path / "state", chp=chp).desired()


@pytest.mark.parametrize("version", [PINNED, CURRENT], ids=["pinned", "current"])
def test_the_runner_starts_binder_and_hub_from_the_charts_objects(real_charts, tmp_path, version):
    apps = desired(rendered(real_charts, version, tmp_path), tmp_path)
    binder, hub = apps["binder"], apps["hub"]
    assert not isinstance(binder, str) and not isinstance(hub, str), apps
    assert binder.env["JUPYTERHUB_API_TOKEN"] == BINDER_TOKEN
    assert binder.argv[binder.argv.index("--port") + 1] == str(NODE_PORT)
    config = json.loads(next(iter(binder.files.values())))
    assert config["BinderHub"] == {"hub_url": "http://192.0.2.1/hub-base/", "base_url": "/binder-base/",
                                   "auth_enabled": True, "use_registry": False,
                                   **({} if version == PINNED else {"build_node_selector": {}})}
    assert config["GitHubRepoProvider"] == {"access_token": GITHUB_TOKEN}  # pinned: from binder-secret's values

    settings = json.loads(next(iter(hub.files.values())))
    assert settings["chart"] == {PINNED: "jupyterhub-0.11.1", CURRENT: "jupyterhub-4.2.0"}[version]
    assert (settings["base_url"], settings["proxy_token"], settings["binder_token"]) == (
        "/hub-base/", PROXY_TOKEN, BINDER_TOKEN)
    assert settings["values"]["hub"]["config"]["GenericOAuthenticator"]["client_secret"] == CLIENT_SECRET
    if version == PINNED:
        assert settings["cookie_secret"] == COOKIE_SECRET and settings["values"]["custom"]["binderauth_enabled"]
    else:  # seeded by the chart in Secret hub
        assert len(settings["cookie_secret"]) == 64 and settings["values"]["hub"]["config"]["BinderSpawner"] == {
            "auth_enabled": True}
    for text in (repr(binder), repr(hub)):
        assert BINDER_TOKEN not in text and CLIENT_SECRET not in text


@pytest.mark.parametrize(("version", "secret"), [(PINNED, "hub-secret"), (CURRENT, "hub")], ids=["pinned", "current"])
def test_without_the_hubs_secret_the_hub_waits_as_its_pod_would(real_charts, tmp_path, version, secret):
    manifest = rendered(real_charts, version, tmp_path)
    del manifest.objects["Secret", secret]
    reason = desired(manifest, tmp_path)["hub"]
    assert reason.startswith("hub does not start: CreateContainerConfigError: secret") and f'"{secret}"' in reason


def test_a_container_gets_env_and_files_as_a_kubelet_resolves_them():
    class Objects:
        namespace = "ns"

        def secret(self, name):
            return {"s": {"token": "t0k", "values.yaml": "a: 1"}}.get(name)

        def configmap(self, name):
            return {"c": {"values.yaml": "b: 2", "other": "x"}}.get(name)

    deployment = {"metadata": {"name": "d"}, "spec": {"template": {"spec": {
        "volumes": [{"name": "conf", "configMap": {"name": "c", "items": [{"key": "values.yaml", "path": "v.yaml"}]}},
                    {"name": "sec", "secret": {"secretName": "s"}}, {"name": "opt", "secret": {"secretName": "no",
                                                                                           "optional": True}}],
        "containers": [{"name": "app", "args": ["--x"], "env": [
            {"name": "PLAIN", "value": "v"},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "none", "optional": True}}}],
            "volumeMounts": [{"name": "conf", "mountPath": "/etc/app/config"},
                             {"name": "sec", "mountPath": "/etc/app/s/"},
                             {"name": "sec", "mountPath": "/etc/app/one", "subPath": "token"},
                             {"name": "opt", "mountPath": "/opt/"}]}]}}}}
    container = pods.container(Objects(), deployment, "app")
    assert container.env == {"PLAIN": "v", "NS": "ns", "TOKEN": "t0k"}
    assert container.mounts == {"/etc/app/config/": {"v.yaml": "b: 2"},
                                "/etc/app/s/": {"token": "t0k", "values.yaml": "a: 1"}, "/opt/": {}}
    assert container.file("/etc/app/s/values.yaml") == "a: 1" and container.file("/etc/app/one") is None
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "missing"}}})
    with pytest.raises(pods.NotStarting, match="key missing in secret s not found"):
        pods.container(Objects(), deployment, "app")
