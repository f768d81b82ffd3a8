"""The object diff helm.upgrade shows before it touches a release."""
from fabfile import manifests

SECRET = "0123456789abcdef0123456789abcdef"

DEPLOYED = """
apiVersion: v1
kind: Secret
metadata: {name: hub-secret}
data: {proxy.token: c2VjcmV0LW9uZQ==, values.yaml: c2FtZQ==}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: binder, namespace: binder}
spec: {replicas: 1}
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: binder}
"""
WANTED = f"""
apiVersion: v1
kind: Secret
metadata: {{name: hub-secret}}
data: {{proxy.token: {SECRET}, values.yaml: c2FtZQ==}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: binder, namespace: binder}}
spec: {{replicas: 2}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: user-scheduler}}
"""


def test_the_diff_names_each_changed_object_and_masks_every_secret_value():
    text = manifests.diff(manifests.parse(DEPLOYED), manifests.parse(WANTED), "binder")
    assert "Deployment binder/binder (deployed)" in text and "-  replicas: 1" in text and "+  replicas: 2" in text
    assert "+++ ConfigMap binder/user-scheduler (rendered)" in text  # added
    assert "--- PodDisruptionBudget binder/binder (deployed)" in text and "+++ /dev/null" in text  # removed
    assert SECRET not in text and "c2VjcmV0LW9uZQ==" not in text and "c2FtZQ==" not in text
    assert "+  proxy.token: '******** (changed)'" in text
    assert "values.yaml: '********'\n" in text and "values.yaml: '******** (changed)'" not in text


def test_an_unchanged_release_has_no_diff():
    objects = manifests.parse(DEPLOYED)
    assert manifests.diff(objects, manifests.parse(DEPLOYED), "binder") == ""

