"""Custom resources are checked against their CRD's schema as the apiserver checks them: unknown fields
pruned (an error under kubectl's default strict validation), schema errors 422 Invalid, defaults set.
Each expectation is from Kubernetes' documentation or source (cited), checked with the real pinned
kubectl against the emulator on loopback; the CRDs are created here and deleted at the end."""
from __future__ import annotations

import json

import pytest
import yaml

from lab import hosts as labhosts
from tests.test_labcluster import HELM, KUBECTL, Lab, _emulator

pytestmark = pytest.mark.skipif(not (KUBECTL.exists() and HELM.exists()),
                                reason="pinned kubectl/helm missing: run scripts/install-k8s-tools")

WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.conformance.example.com"},
    "spec": {"group": "conformance.example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {
                     "type": "object", "required": ["size"], "properties": {
                         "size": {"type": "integer", "minimum": 1},
                         "color": {"type": "string", "enum": ["red", "blue"]},
                         "mode": {"type": "string", "default": "fast"},
                         "code": {"type": "string", "pattern": "^[a-z]+$"},
                         "note": {"type": "string"},
                         "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                         "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}}}]}}
METALLB = labhosts.REPO / "lab/metallb/metallb-native-v0.14.8.yaml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with _emulator(tmp_path_factory.mktemp("conformance-crd")) as running:
        metallb = [d for d in yaml.safe_load_all(METALLB.read_text())
                   if d and d["kind"] in ("Namespace", "CustomResourceDefinition")]
        _apply(running, {"apiVersion": "v1", "kind": "List", "items": [WIDGETS, *metallb]}, check=True)
        try:
            yield running
        finally:
            crds = [d["metadata"]["name"] for d in metallb if d["kind"] == "CustomResourceDefinition"]
            running.kubectl("delete", "crd", WIDGETS["metadata"]["name"], *crds)


def _widget(name: str, **spec) -> dict:
    return {"apiVersion": "conformance.example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": 1, **spec}}


def _apply(lab: Lab, obj: dict, *args: str, check: bool = False):
    return lab.kubectl("apply", "-f", "-", *args, stdin=json.dumps(obj), check=check)


# 1. Unknown fields. apiextensions-apiserver pkg/apiserver/customresource_handler.go (unstructuredDecoder:
# the pruned paths, sorted, become a strict decoding error), pkg/apiserver/schema/pruning/algorithm.go;
# staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go (transformDecodeError's message). Docs:
# https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning
# and https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation (kubectl's default is Strict).

def test_an_unknown_field_is_a_strict_decoding_error_and_nothing_is_stored(lab):
    refused = _apply(lab, _widget("strict", x=1, labels={"a": "b"}, free={"anything": {"goes": 1}}))
    assert refused.returncode == 1
    assert ('Error from server (BadRequest): error when creating "STDIN": Widget in version "v1" cannot be handled '
            'as a Widget: strict decoding error: unknown field "spec.x"') in refused.stderr
    assert lab.kubectl("get", "widget", "strict", check=False).returncode == 1


# On an existing object kubectl apply sends a merge patch: its strict error is a 422 on the field `patch`
# (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go, jsonPatcher.applyPatchToCurrentObject).
def test_applying_an_unknown_field_to_an_existing_object_is_an_invalid_patch(lab):
    _apply(lab, _widget("patched"), check=True)
    try:
        refused = _apply(lab, _widget("patched", size=2, zz=1))
        assert refused.returncode == 1
        assert refused.stderr.startswith('The request is invalid: patch: Invalid value: "{')
        assert refused.stderr.rstrip().endswith('": strict decoding error: unknown field "spec.zz"')
        assert lab.json("get", "widget", "patched")["spec"] == {"size": 1, "mode": "fast"}
    finally:
        lab.kubectl("delete", "widget", "patched")


def test_with_validate_warn_unknown_fields_are_pruned_with_a_warning_and_preserved_subtrees_kept(lab):
    body = _widget("warned", x=1, labels={"a": "b"}, free={"anything": {"goes": 1}})
    body["extra"] = "top"
    warned = _apply(lab, body, "--validate=warn", check=True)
    assert 'Warning: unknown field "extra"' in warned.stderr and 'Warning: unknown field "spec.x"' in warned.stderr
    stored = lab.json("get", "widget", "warned")
    assert "extra" not in stored
    assert stored["spec"] == {"size": 1, "mode": "fast", "labels": {"a": "b"}, "free": {"anything": {"goes": 1}}}
    ignored = _apply(lab, _widget("ignored", y=2), "--validate=false", check=True)
    assert "unknown field" not in ignored.stderr and "y" not in lab.json("get", "widget", "ignored")["spec"]
    lab.kubectl("delete", "widget", "warned", "ignored")


# 2. Schema errors: 422 Invalid, one cause per field. apiextensions-apiserver
# pkg/apiserver/validation/validation.go (kubeOpenAPIResultToFieldErrors), messages from
# k8s.io/kube-openapi/pkg/validation/errors (schema.go: typeFailWithData, patternFail, minIncFail).

def test_type_required_enum_pattern_and_minimum_errors_are_invalid(lab):
    body = _widget("bad", color="green", code="ABC", note=5)
    body["spec"]["size"] = 0
    refused = _apply(lab, body)
    assert refused.returncode == 1
    assert refused.stderr.startswith('The Widget "bad" is invalid: ')
    assert set(refused.stderr.splitlines()[1:]) == {
        '* spec.color: Unsupported value: "green": supported values: "red", "blue"',
        "* spec.code: Invalid value: \"ABC\": spec.code in body should match '^[a-z]+$'",
        '* spec.note: Invalid value: "integer": spec.note in body must be of type string: "integer"',
        "* spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"}
    missing = _apply(lab, {**_widget("missing"), "spec": {"size": "big"}})
    assert 'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"' in missing.stderr
    empty = _apply(lab, {**_widget("empty"), "spec": {}})
    assert 'The Widget "empty" is invalid: spec.size: Required value' in empty.stderr
    assert lab.kubectl("get", "widgets", "-o", "name").stdout == ""


# 3. Defaulting and nulls: the schema's defaults are set, a null where the schema is not nullable is
# dropped first. Docs: .../custom-resource-definitions/#defaulting and #defaulting-and-nullable;
# apiextensions-apiserver pkg/apiserver/schema/defaulting (algorithm.go, prunenulls.go).

def test_defaults_are_applied_and_non_nullable_nulls_dropped(lab):
    _apply(lab, _widget("defaulted", note=None), check=True)
    assert lab.json("get", "widget", "defaulted")["spec"] == {"size": 1, "mode": "fast"}
    lab.kubectl("delete", "widget", "defaulted")


def test_metallb_pool_is_checked_against_its_crd_and_defaulted(lab):
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "pool", "namespace": "metallb-system"}, "spec": {"autoAssign": "yes"}}
    refused = _apply(lab, pool)
    assert refused.stderr.splitlines()[1:] == [
        "* spec.addresses: Required value",
        '* spec.autoAssign: Invalid value: "string": spec.autoAssign in body must be of type boolean: "string"']
    pool["spec"] = {"addresses": ["10.0.0.1/32"], "bogus": True}
    assert 'unknown field "spec.bogus"' in _apply(lab, pool).stderr
    del pool["spec"]["bogus"]
    _apply(lab, pool, check=True)
    assert lab.json("get", "ipaddresspool", "pool", "-n", "metallb-system")["spec"] == {
        "addresses": ["10.0.0.1/32"], "autoAssign": True, "avoidBuggyIPs": False}
    lab.kubectl("delete", "ipaddresspool", "pool", "-n", "metallb-system")
