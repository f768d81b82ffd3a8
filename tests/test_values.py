"""Rendered chart values and the secrets file, without any host; the values through the real charts with
`helm template` (which enforces the current chart's schema)."""
import base64
import os
import stat
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest
import yaml

from fabfile import buildpath, eras, inventory, secretfile, values
from fabfile.inventory import InventoryError
from fabfile.secretfile import Secret, SecretsError

HELM = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "helm"
MARKER = "SECRET-MARKER-7f3a"
VERSIONS = [v for era in eras.ERAS for v in era.chart_versions]
HOST_BUILDER = buildpath.Builder("host", "every node runs dockerd")

INVENTORY = """
environments:
  prod:
    vars:
      public_url: https://binder.example.org
      registry_username: srcdev
      image_prefix: srcdev/binder-dev-
      floating_ip: 10.77.0.240
    hosts:
      head.example.org: {roles: [node, control-plane]}
  full:
    vars:
      public_url: https://binder.example.org/
      auth:
        login_service: ESCAPE IAM
        client_id: binder-client
        authorize_url: https://iam.example.org/authorize
        token_url: https://iam.example.org/token
        userdata_url: https://iam.example.org/userinfo
        username_key: email
        scope: [openid, email]
        allowed_users: [alice]
      storage:
        per_user: {storage_class: rook-cephfs, capacity: 10Gi}
        shared: {claim: binderhub-data-rw-pvc, mount_path: /home/jovyan/shared-workflows}
      profiles:
        - {display_name: Default, default: true}
        - {display_name: Data science, description: Pandas and friends, image: "jupyter/datascience-notebook:latest"}
      registry_url: https://registry.example.org
      registry_username: robot
      rate_limit: 10
      launch_retries: 2
      launch_retry_delay: 1
      spawn_timeout: 60
      floating_ip: 10.77.0.241
      floating_ip_request: loadBalancerIP
      pod_disruption_budgets: false
    hosts:
      head.example.org: {roles: [node, control-plane]}
  open:
    vars:
      public_url: https://binder.example.org
      use_registry: false
      auth:
        client_id: binder-client
        authorize_url: https://iam.example.org/authorize
        token_url: https://iam.example.org/token
        userdata_url: https://iam.example.org/userinfo
        allowed_users: [alice]
        allow_all: true
      storage:
        shared: {claim: binderhub-data-rw-pvc, mount_path: /home/jovyan/shared}
      rate_limit: 0
    hosts:
      head.example.org: {roles: [node, control-plane]}
"""


def host(tmp_path, env="prod", text=INVENTORY, version=None):
    path = tmp_path / "hosts.yaml"
    pin = f'defaults: {{vars: {{chart_version: "{version}"}}}}\n' if version else ""
    path.write_text(pin + textwrap.dedent(text))
    return inventory.load(env, path).with_role("control-plane")[0]


def secrets(**extra):
    names = ["binder_api_token", "proxy_secret_token", "registry_password", "oauth_client_secret"]
    return {n: Secret(f"{MARKER}-{n}") for n in names} | extra


def test_runbook_keys_are_rendered_and_urls_agree(tmp_path):
    merged = values.render(host(tmp_path), "prod", secrets(), HOST_BUILDER).merged()
    hub = merged["config"]["BinderHub"]
    assert hub == {"base_url": "/binderhub/", "hub_url": "https://binder.example.org/jupyterhub/",
                   "use_registry": True, "image_prefix": "srcdev/binder-dev-"}
    assert hub["hub_url"].endswith(merged["jupyterhub"]["hub"]["baseUrl"])
    assert merged["service"] == {"type": "NodePort", "nodePort": 32574}
    assert merged["registry"] == {"username": "srcdev", "password": f"{MARKER}-registry_password"}
    assert merged["jupyterhub"]["hub"]["services"]["binder"]["apiToken"] == f"{MARKER}-binder_api_token"
    assert merged["jupyterhub"]["proxy"]["secretToken"] == f"{MARKER}-proxy_secret_token"
    proxy_service = merged["jupyterhub"]["proxy"]["service"]
    # MetalLB 0.13+ refuses a service with both; older MetalLB reads only loadBalancerIP
    assert proxy_service == {"type": "LoadBalancer",
                             "annotations": {"metallb.universe.tf/loadBalancerIPs": "10.77.0.240"}}
    old = INVENTORY.replace("floating_ip: 10.77.0.240",
                            "floating_ip: 10.77.0.240\n      floating_ip_request: loadBalancerIP")
    merged = values.render(host(tmp_path, "prod", old), "prod", secrets(), HOST_BUILDER).merged()
    assert merged["jupyterhub"]["proxy"]["service"] == {"type": "LoadBalancer", "loadBalancerIP": "10.77.0.240"}


@pytest.mark.parametrize("env", ["prod", "full", "open"])
def test_secrets_stay_out_of_config_and_repr(tmp_path, env):
    rendered = values.render(host(tmp_path, env), env, secrets(), HOST_BUILDER)
    assert MARKER not in rendered.config and MARKER not in repr(rendered)
    assert MARKER in rendered.secret
    assert MARKER not in repr(secrets()) and MARKER not in str(secrets()["binder_api_token"])


def test_an_unknown_chart_version_is_refused_with_the_known_ones(tmp_path):
    known = (r"\(known: z2jh-0\.11 \(z2jh 0\.11\.1, .*\): 0\.2\.0-n600\.h36369a7; "
             r"z2jh-4 \(z2jh 4\.2\.0, .*\): 1\.0\.0-0\.dev\.git\.2227\.hb9fad995\); set chart_version to one of them$")
    with pytest.raises(InventoryError, match=r"vars.chart_version: chart version '0.2.0-n601.hdeadbee' is not one "
                                             r"the values templates know " + known):
        values.render(host(tmp_path, version="0.2.0-n601.hdeadbee"), "prod", secrets(), HOST_BUILDER)
    with pytest.raises(InventoryError, match=r"^x.chart_version: chart version '1.0.0' "):
        eras.era_of("1.0.0", "x.chart_version")
    assert [eras.era_of(v).name for v in VERSIONS] == ["z2jh-0.11", "z2jh-4"]
    assert values.render(host(tmp_path), "prod", secrets(), HOST_BUILDER).config.startswith(
        "# BinderHub chart values for prod (z2jh-0.11 chart)")  # the default is the runbook's pin


# --- through the real charts ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> Path:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run scripts/install-k8s-tools", pytrace=False)
    return HELM


def helm_template(helm: Path, chart: Path, rendered: values.Values, home: Path) -> list[dict]:
    """The objects `helm template` makes of the chart with both files (the secrets on stdin, as helm.upgrade
    passes them) for a cluster that serves policy/v1 (Kubernetes 1.21+): offline, helm assumes it does not,
    and the current chart's own PDB would fall back to policy/v1beta1."""
    (home / "config.yaml").write_text(rendered.config)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    out = subprocess.run([str(helm), "template", "binder", str(chart), "--namespace", "binder",
                          "--api-versions", "policy/v1/PodDisruptionBudget",
                          "-f", str(home / "config.yaml"), "-f", "-"],
                         input=rendered.secret, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr.replace(MARKER, "<marker>")
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def file_in(obj: dict, key: str) -> str | None:
    """A file of a ConfigMap or Secret as its pod sees it."""
    if key in (obj.get("stringData") or {}):
        return obj["stringData"][key]
    data = (obj.get("data") or {}).get(key)
    return base64.b64decode(data).decode() if data and obj["kind"] == "Secret" else data


def values_read_by(objects: list[dict], deployment: str) -> dict:
    """The chart values a Deployment's container reads: the values.yaml of each ConfigMap or Secret it mounts
    as a directory, merged in mount order (config/ before secret/, as z2jh.py and binderhub_config.py do)."""
    pod = one(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    merged: dict = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        source = (("ConfigMap", volume["configMap"]["name"]) if "configMap" in volume
                  else ("Secret", volume["secret"]["secretName"]) if "secret" in volume else None)
        if mount["mountPath"].endswith("/") and source:
            text = file_in(one(objects, *source), "values.yaml")
            merged = values.deep_merge(merged, yaml.safe_load(text) if text else {})
    return merged


def env_of(objects: list[dict], deployment: str) -> dict:
    container = one(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("env", ["prod", "full", "open"])
def test_the_real_chart_takes_the_values_and_its_pods_read_what_the_operator_set(
        tmp_path, real_charts, helm, version, env):
    h = host(tmp_path, env, version=version)
    era, auth, opts = eras.era_of(version).name, h.vars["auth"], h.vars
    objects = helm_template(helm, real_charts / f"binderhub-{version}.tgz",
                            values.render(h, env, secrets(), HOST_BUILDER), tmp_path)
    binder, hub = values_read_by(objects, "binder"), values_read_by(objects, "hub")

    assert binder["config"]["BinderHub"] == {
        **binder["config"]["BinderHub"], "base_url": "/binderhub/", "hub_url": "https://binder.example.org/jupyterhub/",
        "use_registry": opts["use_registry"], "image_prefix": opts["image_prefix"]}
    limit = opts["rate_limit"]
    assert binder["config"].get("RateLimiter") == (None if limit is None else {"limit": limit})
    launcher = {k: opts[f"launch_{k}"] for k in ("retries", "retry_delay") if opts[f"launch_{k}"] is not None}
    assert binder["config"].get("Launcher") == (launcher or None)
    assert hub["hub"]["baseUrl"] == "/jupyterhub/"
    # z2jh's jupyterhub_config.py reads singleuser.startTimeout into KubeSpawner.start_timeout (both eras)
    assert hub["singleuser"].get("startTimeout") == (opts["spawn_timeout"] or 300)
    service = one(objects, "Service", "binder")["spec"]
    assert service["type"] == "NodePort" and service["ports"][0]["nodePort"] == 32574
    public = one(objects, "Service", "proxy-public")
    if opts["floating_ip_request"] == "loadBalancerIP":
        assert public["spec"]["loadBalancerIP"] == opts["floating_ip"]
    else:
        assert "loadBalancerIP" not in public["spec"]
        assert (public["metadata"].get("annotations") or {}).get("metallb.universe.tf/loadBalancerIPs") == \
            opts["floating_ip"]

    docker = [o for o in objects if o["metadata"]["name"] == "binder-build-docker-config"]
    if opts["use_registry"]:
        auths = yaml.safe_load(file_in(docker[0], "config.json"))["auths"]
        assert list(auths) == [opts["registry_url"] or ("https://index.docker.io/v1" if era == "z2jh-0.11"
                                                        else "https://index.docker.io/v1/")]
        user = base64.b64decode(next(iter(auths.values()))["auth"]).decode().partition(":")[0]
        assert user == opts["registry_username"]
    else:
        assert docker == []

    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    if opts["pod_disruption_budgets"]:
        api = "policy/v1beta1" if era == "z2jh-0.11" else "policy/v1"  # v1beta1: gone in Kubernetes 1.25
        assert sorted((o["apiVersion"], o["metadata"]["name"]) for o in pdbs) == [
            (api, "binderhub"), (api, "user-placeholder"), (api, "user-scheduler")]
    else:
        assert pdbs == [] and not [o for o in objects if o["metadata"]["name"] == "user-placeholder"]

    # The hub side of authentication, where each era's BinderSpawner reads it
    switch = (hub["custom"]["binderauth_enabled"] if era == "z2jh-0.11"
              else hub["hub"]["config"]["BinderSpawner"]["auth_enabled"])
    assert switch is bool(auth)
    assert ("binderauth_enabled" in hub["custom"]) is (era == "z2jh-0.11")
    assert ("BinderSpawner" in hub["hub"]["config"]) is (era == "z2jh-4")
    assert ("loadRoles" in hub["hub"]) is (era == "z2jh-4")  # the current chart's own binder role
    if auth:
        assert_auth(objects, binder, hub, era, auth)
    else:
        assert "auth_enabled" not in binder["config"]["BinderHub"]
        assert "JUPYTERHUB_CLIENT_ID" not in env_of(objects, "binder")
    assert_storage_and_profiles(hub["singleuser"], era, opts)


def assert_auth(objects, binder, hub, era, auth):
    assert binder["config"]["BinderHub"]["auth_enabled"] is True
    client = env_of(objects, "binder")
    assert client["JUPYTERHUB_CLIENT_ID"] == "service-binder"
    assert client["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "https://binder.example.org/binderhub/oauth_callback"
    assert hub["hub"]["services"]["binder"]["oauth_no_confirm"] is True
    assert hub["hub"]["redirectToServer"] is False and hub["cull"]["users"] is False
    assert hub["singleuser"]["cmd"] == "jupyterhub-singleuser"
    config = hub["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "generic-oauth"
    oauth = config["GenericOAuthenticator"]
    assert oauth["client_secret"] == f"{MARKER}-oauth_client_secret"
    assert oauth["oauth_callback_url"] == "https://binder.example.org/jupyterhub/hub/oauth_callback"
    assert oauth["login_service"] == (auth["login_service"] or "OAuth")
    assert oauth.get("scope") == (list(auth["scope"]) if auth["scope"] else None)
    username = auth["username_key"] or "preferred_username"
    if era == "z2jh-0.11":  # oauthenticator 0.12.3: username_key; no allow_all (empty allowed_users: anyone)
        assert oauth["username_key"] == username and "username_claim" not in oauth and "allow_all" not in oauth
        assert oauth.get("allowed_users") == (None if auth["allow_all"] else list(auth["allowed_users"]))
    else:  # oauthenticator 16+: username_claim; nobody in without allowed_users or allow_all
        assert oauth["username_claim"] == username and "username_key" not in oauth
        assert oauth.get("allow_all") == (True if auth["allow_all"] else None)
        assert oauth["allowed_users"] == list(auth["allowed_users"])
        assert "access:services!service=binder" in hub["hub"]["loadRoles"]["user"]["scopes"]


def assert_storage_and_profiles(singleuser, era, opts):
    storage, wanted = singleuser["storage"], opts["storage"] or {}
    per_user, shared = wanted.get("per_user"), wanted.get("shared")
    if per_user:
        claim = "claim-{username}{servername}" if era == "z2jh-0.11" else "claim-{user_server}"
        assert storage["type"] == "dynamic" and storage["dynamic"]["pvcNameTemplate"] == claim
        assert storage["dynamic"]["storageClass"] == per_user["storage_class"]
        assert storage["capacity"] == per_user["capacity"]
    else:
        assert storage["type"] == "none"  # both charts' own default: no home volume
    if shared:
        assert storage["extraVolumes"][0]["persistentVolumeClaim"]["claimName"] == shared["claim"]
        assert storage["extraVolumeMounts"][0]["mountPath"] == shared["mount_path"]
    profiles = [{k: v for k, v in p.items() if v is not None} for p in opts["profiles"]]
    assert [(p["display_name"], p.get("description"), p.get("default", False),
             (p.get("kubespawner_override") or {}).get("image")) for p in singleuser.get("profileList", [])] == \
        [(p["display_name"], p.get("description"), p.get("default", False), p.get("image")) for p in profiles]


def chart_defaults(chart: Path) -> dict:
    """The chart's values.yaml with its jupyterhub subchart's under `jupyterhub`, as helm merges them."""
    with tarfile.open(chart) as archive:
        read = lambda name: yaml.safe_load(archive.extractfile(name)) or {}  # noqa: E731
        return values.deep_merge({"jupyterhub": read("binderhub/charts/jupyterhub/values.yaml")},
                                 read("binderhub/values.yaml"))


#: Free-form mappings the charts hand on as they are (traitlets config, JupyterHub services and roles, kubespawner
#: lists, Service annotations): their keys are checked above, per era, against what the software reads.
PASSED_ON = ("config", "jupyterhub.hub.config", "jupyterhub.hub.services", "jupyterhub.hub.loadRoles",
             "jupyterhub.singleuser.profileList", "jupyterhub.singleuser.storage.extraVolumes",
             "jupyterhub.singleuser.storage.extraVolumeMounts", "jupyterhub.proxy.service.annotations")


def paths(data: dict, prefix: str = ""):
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in PASSED_ON:
            yield from paths(value, path + ".")
        else:
            yield path


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("env", ["prod", "full", "open"])
def test_every_key_rendered_is_one_the_chart_has(tmp_path, real_charts, version, env):
    rendered = values.render(host(tmp_path, env, version=version), env, secrets(), HOST_BUILDER).merged()
    known = set(paths(chart_defaults(real_charts / f"binderhub-{version}.tgz")))
    passed_on = tuple(f"{p}." for p in PASSED_ON if p in known)  # only where this chart has the mapping
    unknown = [p for p in paths(rendered) if p not in known and not p.startswith(passed_on)]
    assert unknown == [], f"keys the {eras.era_of(version).name} chart has not: {unknown}"


def test_missing_public_url_or_secrets_are_refused(tmp_path):
    bare = host(tmp_path, "x", "environments: {x: {hosts: {h: {roles: [control-plane]}}}}")
    with pytest.raises(InventoryError, match="vars.public_url is not set"):
        values.render(bare, "x", secrets(), HOST_BUILDER)
    with pytest.raises(InventoryError, match="lacks registry_password; run `invoke secrets.init --env prod`"):
        values.render(host(tmp_path), "prod", {k: v for k, v in secrets().items() if k != "registry_password"},
                      HOST_BUILDER)


def test_bad_option_shapes_are_refused(tmp_path):
    text = INVENTORY.replace("client_id: binder-client", "client: binder-client")
    with pytest.raises(InventoryError, match=r"vars.auth: unknown key\(s\) client"):
        host(tmp_path, "full", text)
    with pytest.raises(InventoryError, match="outside Kubernetes' NodePort range"):
        host(tmp_path, "prod", INVENTORY.replace("registry_username: srcdev", "binder_node_port: 80"))


def test_secrets_are_created_once_and_never_regenerated(tmp_path):
    path = tmp_path / "secrets" / "prod.yaml"
    asked = []
    report = secretfile.ensure(path, ["registry_password"], lambda n: asked.append(n) or MARKER)
    assert report == ["created binder_api_token", "created proxy_secret_token", "stored registry_password"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = secretfile.load(path)
    assert len(first["binder_api_token"].reveal()) == 64 and first["registry_password"].reveal() == MARKER
    assert secretfile.ensure(path, ["registry_password"], lambda n: pytest.fail("asked again")) == []
    assert secretfile.load(path) == first and asked == ["registry_password"]


def test_rotation_is_explicit_and_says_what_it_breaks(tmp_path):
    path = tmp_path / "prod.yaml"
    secretfile.ensure(path, [], lambda n: None)
    before = secretfile.load(path)
    report = secretfile.ensure(path, [], lambda n: None, rotate="proxy_secret_token")
    after = secretfile.load(path)
    assert report[0].startswith("rotated proxy_secret_token (effect: ")
    assert after["proxy_secret_token"] != before["proxy_secret_token"]
    assert after["binder_api_token"] == before["binder_api_token"]
    with pytest.raises(SecretsError, match="--rotate takes one of"):
        secretfile.ensure(path, [], lambda n: None, rotate="registry_password")


def test_unsafe_or_broken_secrets_files_are_refused_and_kept(tmp_path):
    path = tmp_path / "prod.yaml"
    path.write_text("binder_api_token: abc\n")
    os.chmod(path, 0o644)
    with pytest.raises(SecretsError, match="open to other users.*chmod 600"):
        secretfile.load(path)
    os.chmod(path, 0o600)
    path.write_text("binder_api_token: [abc\n")
    with pytest.raises(SecretsError, match="not valid YAML"):
        secretfile.ensure(path, [], lambda n: None)
    assert path.read_text() == "binder_api_token: [abc\n"
    with pytest.raises(SecretsError, match="registry_password is needed: set \\$BHOPS_REGISTRY_PASSWORD"):
        secretfile.ensure(tmp_path / "new.yaml", ["registry_password"], lambda n: None)


def test_values_diff_masks_secrets_old_and_new(tmp_path):
    wanted = values.render(host(tmp_path), "prod", secrets(), HOST_BUILDER).merged()
    deployed = values.deep_merge(wanted, {"jupyterhub": {"proxy": {"secretToken": "OLD-" + MARKER}},
                                          "config": {"BinderHub": {"base_url": "/old/"}}})
    patch = values.diff(deployed, wanted)
    assert MARKER not in patch
    assert "-    base_url: /old/" in patch and "+    base_url: /binderhub/" in patch
    assert "+    secretToken: '******** (changed)'" in patch
    assert "apiToken: '******** (changed)'" not in patch


def test_nginx_site_with_tls_redirects_http_and_keeps_acme_reachable():
    from fabfile.rendering import render
    site = render("nginx-site.conf.j2", env="prod", server_name="binder.example.org", port=443, http_port=80,
                  tls={"certificate": "/etc/ssl/c.pem", "key": "/etc/ssl/k.pem"}, binder_base_url="/binderhub/",
                  hub_base_url="/jupyterhub/", node_address="192.0.2.1", node_port=32574,
                  floating_ip="192.0.2.38", log_dir="/var/log/nginx")
    http, https = site.split("\nserver {")[1:]
    assert "listen 80;" in http and "return 301 https://$host$request_uri;" in http
    assert "location /.well-known/acme-challenge/" in http and "location /.well-known/acme-challenge/" in https
    assert "listen 443 ssl;" in https and "ssl_certificate /etc/ssl/c.pem;" in https
    assert "proxy_pass http://192.0.2.1:32574$request_uri;" in https
    assert "proxy_pass http://192.0.2.38:80/jupyterhub/;" in https
    assert https.count("proxy_buffering off;") == 2 and https.count("Upgrade $http_upgrade") == 2


def test_a_missing_secrets_file_says_how_to_make_it(tmp_path):
    with pytest.raises(SecretsError,
                       match=r"prod.yaml does not exist; create it with `invoke secrets.init --env prod`"):
        secretfile.load(tmp_path / "prod.yaml")


def pod_templates(objects: list[dict]) -> dict[str, dict]:
    """kind/name: the pod spec of every workload."""
    return {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"] for o in objects
            if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")}


@pytest.mark.parametrize("version,name", [(v, b) for v in VERSIONS for b in ("host", "dind", "pink")
                                          if not (b == "pink" and eras.era_of(v).name == "z2jh-0.11")])
def test_the_chosen_builder_is_the_only_socket_the_release_mounts(tmp_path, real_charts, helm, version, name):
    """On a containerd node a hostPath of type Socket that no daemon serves keeps its pod in ContainerCreating:
    with dind or pink, nothing of the release may mount the node's docker socket so."""
    builder = buildpath.Builder(name, "test")
    objects = helm_template(helm, real_charts / f"binderhub-{version}.tgz",
                            values.render(host(tmp_path, "full", version=version), "full", secrets(), builder),
                            tmp_path)
    templates = pod_templates(objects)
    sockets = {v["hostPath"]["path"] for spec in templates.values() for v in spec.get("volumes") or []
               if (v.get("hostPath") or {}).get("type") == "Socket"}
    daemons = {w for w in templates if w.startswith("DaemonSet/")}
    assert daemons == {"DaemonSet/binder-image-cleaner", *(() if name == "host" else (f"DaemonSet/binder-{name}",))}
    cleaner = templates["DaemonSet/binder-image-cleaner"]
    mounted = {v["hostPath"]["path"] for v in cleaner["volumes"] if "hostPath" in v}
    if eras.era_of(version).name == "z2jh-0.11":
        assert sockets == {builder.socket}  # the cleaner mounts the socket itself, typed
    else:  # the current chart's cleaner mounts the socket's directory
        assert sockets == set() and str(Path(builder.socket).parent) in mounted
    if name != "host":
        args = " ".join(templates[f"DaemonSet/binder-{name}"]["containers"][0]["args"])
        assert f"unix://{builder.socket}" in args
        assert "/var/run/docker.sock" not in mounted
    # with a registry (env full) the binder pod does not mount the node's docker socket either
    binder = templates["Deployment/binder"]
    assert all((v.get("hostPath") or {}).get("path") != "/var/run/docker.sock" for v in binder["volumes"])
    chart_values = values_read_by(objects, "binder")  # binderhub_config.py sets build_docker_host from these
    assert (chart_values.get("imageBuilderType") or ("dind" if chart_values["dind"].get("enabled") else "host")) == name
