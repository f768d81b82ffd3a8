"""Rendered chart values and the secrets file, without any host."""
import json
import os
import stat
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from fabfile import inventory, secretfile, values
from fabfile.inventory import InventoryError
from fabfile.secretfile import Secret, SecretsError

SCHEMAS = Path(__file__).resolve().parent / "data" / "chart-schemas"  # see its README.md
MARKER = "SECRET-MARKER-7f3a"

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
        allowed_users: [alice]
      storage:
        per_user: {storage_class: rook-cephfs, capacity: 10Gi}
        shared: {claim: binderhub-data-rw-pvc, mount_path: /home/jovyan/shared-workflows}
      profiles:
        - {display_name: Default, default: true}
        - {display_name: Data science, image: "jupyter/datascience-notebook:latest"}
    hosts:
      head.example.org: {roles: [node, control-plane]}
"""


def host(tmp_path, env="prod", text=INVENTORY):
    path = tmp_path / "hosts.yaml"
    path.write_text(textwrap.dedent(text))
    return inventory.load(env, path).with_role("control-plane")[0]


def secrets(**extra):
    names = ["binder_api_token", "proxy_secret_token", "registry_password", "oauth_client_secret"]
    return {n: Secret(f"{MARKER}-{n}") for n in names} | extra


def test_runbook_keys_are_rendered_and_urls_agree(tmp_path):
    merged = values.render(host(tmp_path), "prod", secrets()).merged()
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
    merged = values.render(host(tmp_path, "prod", old), "prod", secrets()).merged()
    assert merged["jupyterhub"]["proxy"]["service"] == {"type": "LoadBalancer", "loadBalancerIP": "10.77.0.240"}


def test_secrets_stay_out_of_config_and_repr(tmp_path):
    rendered = values.render(host(tmp_path, "full"), "full", secrets())
    assert MARKER not in rendered.config and MARKER not in repr(rendered)
    assert MARKER in rendered.secret
    assert MARKER not in repr(secrets()) and MARKER not in str(secrets()["binder_api_token"])


def test_options_render_auth_storage_and_profiles(tmp_path):
    merged = values.render(host(tmp_path, "full"), "full", secrets()).merged()
    assert merged["config"]["BinderHub"]["auth_enabled"] is True
    hub = merged["jupyterhub"]["hub"]
    oauth = hub["config"]["GenericOAuthenticator"]
    assert oauth["client_secret"] == f"{MARKER}-oauth_client_secret"
    assert oauth["oauth_callback_url"] == "https://binder.example.org/jupyterhub/hub/oauth_callback"
    assert hub["services"]["binder"]["oauth_redirect_uri"] == "https://binder.example.org/binderhub/oauth_callback"
    assert hub["services"]["binder"]["oauth_client_id"].startswith("service-")  # JupyterHub 2+ refuses others
    assert hub["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert oauth["allowed_users"] == ["alice"] and "allow_all" not in oauth
    assert "access:services!service=binder" in hub["loadRoles"]["user"]["scopes"]
    assert merged["jupyterhub"]["singleuser"]["cmd"] == "jupyterhub-singleuser"
    storage = merged["jupyterhub"]["singleuser"]["storage"]
    assert storage["type"] == "dynamic" and storage["dynamic"]["storageClass"] == "rook-cephfs"
    assert storage["extraVolumes"][0]["persistentVolumeClaim"]["claimName"] == "binderhub-data-rw-pvc"
    profiles = merged["jupyterhub"]["singleuser"]["profileList"]
    assert profiles[1]["kubespawner_override"]["image"] == "jupyter/datascience-notebook:latest"
    assert "auth" not in merged["jupyterhub"]  # removed in z2jh 1.0; the runbook's file still had it


@pytest.mark.parametrize("env", ["prod", "full"])
def test_values_pass_the_chart_schemas_merged_over_the_defaults(tmp_path, env):
    rendered = values.render(host(tmp_path, env), env, secrets()).merged()
    defaults = yaml.safe_load((SCHEMAS / "binderhub-main-2026-04.values.yaml").read_text())
    merged = values.deep_merge(defaults, rendered)
    jsonschema.validate(merged, json.loads((SCHEMAS / "binderhub.values.schema.json").read_text()))
    # The jupyterhub subchart's own defaults (not in chart-schemas/) provide its required keys:
    # check types and unknown keys, not presence.
    jupyterhub = json.loads((SCHEMAS / "jupyterhub-4.2.0.values.schema.json").read_text(),
                            object_hook=lambda d: {k: v for k, v in d.items() if k != "required"})
    jsonschema.validate(merged["jupyterhub"], jupyterhub)
    pinned = yaml.safe_load((SCHEMAS / "binderhub-0.2.0-n600.h36369a7.values.yaml").read_text())
    assert set(rendered) <= set(pinned), "a top-level key the pinned chart does not know"


def test_missing_public_url_or_secrets_are_refused(tmp_path):
    bare = host(tmp_path, "x", "environments: {x: {hosts: {h: {roles: [control-plane]}}}}")
    with pytest.raises(InventoryError, match="vars.public_url is not set"):
        values.render(bare, "x", secrets())
    with pytest.raises(InventoryError, match="lacks registry_password; run `invoke secrets.init --env prod`"):
        values.render(host(tmp_path), "prod", {k: v for k, v in secrets().items() if k != "registry_password"})


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
    wanted = values.render(host(tmp_path), "prod", secrets()).merged()
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
