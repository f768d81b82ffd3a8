"""openapi.problems: rendered objects checked strictly against a cluster's OpenAPI v3 schemas.

The Deployment schema is the lab's /openapi/v3/apis/apps/v1 (Kubernetes 1.32's own definitions),
trimmed to what a Deployment refers to and without descriptions."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from fabfile import openapi

APPS = json.loads((Path(__file__).parent / "data" / "openapi-v3-apps-v1-deployment.json").read_text())
DOCUMENTS = {"apis/apps/v1": APPS}
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hub", "labels": {"app": "hub"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hub"}},
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
             "template": {"metadata": {"labels": {"app": "hub"}, "annotations": None},
                          "spec": {"containers": [{"name": "hub", "image": "jupyterhub/k8s-hub:4.0.0",
                                                   "ports": [{"containerPort": 8081, "name": "http"}],
                                                   "resources": {"requests": {"cpu": 0.2, "memory": "512Mi"}}}]}}},
}


def _deployment(**changes) -> dict:
    obj = copy.deepcopy(DEPLOYMENT)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    for path, value in changes.items():
        target = container if path.startswith("container_") else obj["spec"]
        target[path.removeprefix("container_")] = value
    return obj


def test_a_valid_deployment_has_no_problem_int_or_string_quantities_and_nulls_included():
    assert openapi.problems(DOCUMENTS, [DEPLOYMENT]) == []


def test_unknown_fields_are_named_with_their_path():
    found = openapi.problems(DOCUMENTS, [_deployment(foo=1, container_imagePullPolicyy="Always")])
    assert found == ["Deployment/hub: spec.foo: unknown field",
                     "Deployment/hub: spec.template.spec.containers[0].imagePullPolicyy: unknown field"]


def test_wrong_types_and_missing_required_fields():
    obj = _deployment(replicas="three", container_ports=[{"containerPort": "80"}])
    del obj["spec"]["selector"]
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = True
    assert openapi.problems(DOCUMENTS, [obj]) == [
        "Deployment/hub: spec.replicas: string given, integer wanted",
        "Deployment/hub: spec.selector: required field missing",
        "Deployment/hub: spec.strategy.rollingUpdate.maxSurge: boolean given, integer or string wanted",
        "Deployment/hub: spec.template.spec.containers[0].name: required field missing",
        "Deployment/hub: spec.template.spec.containers[0].ports[0].containerPort: string given, integer wanted"]


def test_maps_take_any_key_but_check_their_values():
    obj = _deployment()
    obj["metadata"]["labels"]["any.example.com/key"] = "x"
    assert openapi.problems(DOCUMENTS, [obj]) == []
    obj["metadata"]["labels"]["count"] = 3
    assert openapi.problems(DOCUMENTS, [obj]) == ["Deployment/hub: metadata.labels.count: integer given, string wanted"]


def test_kinds_the_cluster_publishes_no_schema_for_are_left_alone():
    unknown = [{"apiVersion": "apps/v1", "kind": "Nonesuch", "metadata": {"name": "x"}, "foo": 1},
               {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "foo": 1}]
    assert openapi.problems(DOCUMENTS, unknown) == []


def test_a_custom_resource_schema_preserve_unknown_fields_int_or_string_and_nullable():
    # A CRD version's openAPIV3Schema as the apiserver publishes it (x-kubernetes-* extensions, nullable).
    schema = {"type": "object", "x-kubernetes-group-version-kind": [
        {"group": "example.com", "version": "v1", "kind": "Widget"}], "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "note": {"type": "string", "nullable": True},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
                "known": {"type": "string"}}}}}}}
    documents = {"apis/example.com/v1": {"components": {"schemas": {"com.example.v1.Widget": schema}}}}
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": "10%", "note": None, "extra": {"anything": [1, 2]}}}
    assert openapi.problems(documents, [widget]) == []
    widget["spec"] = {"size": 1.5, "other": 1}
    assert openapi.problems(documents, [widget]) == ["Widget/w: spec.other: unknown field",
                                                     "Widget/w: spec.size: number given, integer or string wanted"]


def test_summary_shows_a_handful_and_counts_the_rest():
    found = [f"Deployment/d{i}: spec.foo: unknown field" for i in range(7)]
    assert openapi.summary(found) == "; ".join(found[:5]) + "; and 2 more"
