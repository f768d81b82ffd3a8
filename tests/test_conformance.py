"""The emulator says no where Kubernetes says no: each expectation from Kubernetes' documentation or
source (cited), checked with the real pinned kubectl and helm against the emulator on loopback."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from tests.test_labcluster import HELM, KUBECTL, Lab, _emulator

pytestmark = pytest.mark.skipif(not (KUBECTL.exists() and HELM.exists()),
                                reason="pinned kubectl/helm missing: run scripts/install-k8s-tools")

INVALID_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     r"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.fixture(scope="module", params=["1.32", "1.24"])
def lab(request, tmp_path_factory):
    with _emulator(tmp_path_factory.mktemp(f"conformance-{request.param}"), "--kube-version", request.param) as running:
        yield running


def _deployment(name: str = "web", labels: dict | None = None, selector: dict | None = None, **spec) -> dict:
    labels = {"app": name} if labels is None else labels
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels if selector is None else selector},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}
    body["spec"].update(spec)
    return body


def _apply(lab: Lab, obj: dict, *args: str, check: bool = False):
    return lab.kubectl("apply", "-f", "-", *args, stdin=json.dumps(obj), check=check)


def _request(lab: Lab, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    server = yaml.safe_load(lab.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    request = urllib.request.Request(server + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# 1. Strict decoding. kubectl's default --validate=strict sends fieldValidation=Strict; Warn drops the
# field with a warning, Ignore drops it silently; a wrong JSON type is a 400 whatever the mode.
# https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation
# staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go (transformDecodeError)

def test_an_unknown_field_is_a_strict_decoding_error_and_nothing_is_stored(lab):
    body = _deployment("strict")
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    body["spec"]["foo"] = "bar"
    refused = _apply(lab, body)
    assert refused.returncode == 1
    assert ('Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be '
            'handled as a Deployment: strict decoding error: unknown field "spec.foo", unknown field '
            '"spec.template.spec.containers[0].imagePullPolicyy"') in refused.stderr
    assert lab.kubectl("get", "deployment", "strict", check=False).returncode == 1


def test_with_validate_warn_the_unknown_field_is_dropped_with_a_warning_and_with_false_silently(lab):
    warned = _apply(lab, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "warned"}, "datta": {}},
                    "--validate=warn", check=True)
    assert 'Warning: unknown field "datta"' in warned.stderr
    ignored = _apply(lab, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}, "datta": {}},
                     "--validate=false", check=True)
    assert "unknown field" not in ignored.stderr
    assert "datta" not in lab.json("get", "configmap", "warned") and "datta" not in lab.json("get", "cm", "ignored")


@pytest.mark.parametrize("obj, message", [
    (_deployment("three", replicas="three"), 'Deployment in version "v1" cannot be handled as a Deployment: json: '
     "cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "numbers"}, "data": {"port": 8080}},
     'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct '
     "field ConfigMap.data of type string"),
    # k8s.io/apimachinery/pkg/api/resource/quantity.go: ErrFormatWrong, from Quantity.UnmarshalJSON
    ({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "lots"},
      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "lots"}}}},
     "PersistentVolumeClaim in version \"v1\" cannot be handled as a PersistentVolumeClaim: quantities must match "
     "the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
], ids=["replicas-string", "configmap-number", "quantity"])
def test_a_value_of_the_wrong_type_is_a_bad_request(lab, obj, message):
    refused = _apply(lab, obj)
    assert refused.returncode == 1
    assert f"Error from server (BadRequest): error when creating \"STDIN\": {message}" in refused.stderr


# 2. Semantic validation: 422 Invalid, one cause per field, as kubectl prints them.
# pkg/apis/apps/validation/validation.go (ValidateDeploymentSpec), pkg/apis/core/validation/validation.go
# (validateContainerCommon, ValidateService), k8s.io/apimachinery/pkg/util/validation/validation.go

def test_a_deployment_without_selector_uppercase_name_bad_label_and_no_image_is_invalid(lab):
    body = _deployment("Web")
    del body["spec"]["selector"]
    body["metadata"]["labels"] = {"bad key!": "x"}
    del body["spec"]["template"]["spec"]["containers"][0]["image"]
    refused = _apply(lab, body)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[1:] == [
        f'* metadata.name: Invalid value: "Web": {INVALID_SUBDOMAIN}',
        "* metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' "
        "or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        "* spec.selector: Required value",
        '* spec.template.metadata.labels: Invalid value: map[string]string{"app":"Web"}: `selector` does not match '
        "template `labels`",
        "* spec.template.spec.containers[0].image: Required value"]
    assert refused.stderr.startswith('The Deployment "Web" is invalid: ')


def test_a_selector_that_does_not_match_the_template_is_invalid(lab):
    refused = _apply(lab, _deployment("mismatch", selector={"app": "other"}))
    assert ('The Deployment "mismatch" is invalid: spec.template.metadata.labels: Invalid value: '
            'map[string]string{"app":"mismatch"}: `selector` does not match template `labels`') in refused.stderr


def test_a_service_needs_ports_unless_headless_and_a_name_is_a_dns_1035_label(lab):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "noports"}, "spec": {"selector": {"a": "b"}}}
    assert 'The Service "noports" is invalid: spec.ports: Required value' in _apply(lab, service).stderr
    service["spec"]["clusterIP"] = "None"
    _apply(lab, service, check=True)
    named = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1st"}, "spec": {"ports": [{"port": 80}]}}
    assert ('The Service "1st" is invalid: metadata.name: Invalid value: "1st": a DNS-1035 label must consist of '
            "lower case alphanumeric characters or '-', start with an alphabetic character"
            in _apply(lab, named).stderr)


def test_a_pod_without_image_is_invalid_and_the_status_carries_its_causes(lab):
    status, body = _request(lab, "POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"}, "spec": {"containers": [{"name": "c"}]}})
    assert (status, body["reason"], body["message"]) == (
        422, "Invalid", 'Pod "noimage" is invalid: spec.containers[0].image: Required value')
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}]


# 3. Immutable fields. pkg/apis/apps/validation/validation.go (ValidateDeploymentUpdate: selector),
# pkg/apis/core/validation/validation.go (ValidateConfigMapUpdate, ValidatePodUpdate)

def test_a_deployments_selector_is_immutable(lab):
    _apply(lab, _deployment("fixed"), check=True)
    patched = lab.kubectl("patch", "deployment", "fixed", "--type=merge", "-p", json.dumps(
        {"spec": {"selector": {"matchLabels": {"app": "fixed", "tier": "web"}},
                  "template": {"metadata": {"labels": {"app": "fixed", "tier": "web"}}}}}), check=False)
    assert patched.returncode == 1
    assert ('The Deployment "fixed" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:'
            'map[string]string{"app":"fixed", "tier":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
            "field is immutable") in patched.stderr


def test_helm_upgrade_changing_a_deployments_selector_fails_as_on_a_real_cluster(lab, tmp_path):
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: sel\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("tier: a\n")
    manifest = _deployment("sel", labels={"app": "sel", "tier": "TIER"})
    (chart / "templates" / "deployment.yaml").write_text(
        json.dumps(manifest).replace('"TIER"', "{{ .Values.tier | quote }}"))
    namespace = f"helm-{lab.json('version')['serverVersion']['minor']}"
    lab.helm("install", "sel", str(chart), "-n", namespace, "--create-namespace")
    upgraded = lab.helm("upgrade", "sel", str(chart), "-n", namespace, "--set", "tier=b", check=False)
    assert upgraded.returncode == 1
    assert 'cannot patch "sel" with kind Deployment: Deployment.apps "sel" is invalid: spec.selector' in upgraded.stderr
    assert "field is immutable" in upgraded.stderr


def test_an_immutable_configmap_keeps_its_data(lab):
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"}, "data": {"a": "1"},
                 "immutable": True}
    _apply(lab, configmap, check=True)
    configmap["data"]["a"] = "2"
    refused = _apply(lab, configmap)
    assert ('The ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set'
            in refused.stderr)


def test_a_pods_command_is_immutable_but_its_image_may_change(lab):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fixedpod"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "1"]}]}}
    _apply(lab, pod, check=True)
    refused = lab.kubectl("patch", "pod", "fixedpod", "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/containers/0/command", "value": ["sleep", "2"]}]), check=False)
    assert 'The Pod "fixedpod" is invalid: spec: Forbidden: pod updates may not change fields other than ' \
           "`spec.containers[*].image`" in refused.stderr
    lab.kubectl("set", "image", "pod/fixedpod", "c=busybox:1.37")
    assert lab.json("get", "pod", "fixedpod")["spec"]["containers"][0]["image"] == "busybox:1.37"


# 4. Defaults: pkg/apis/core/v1/defaults.go (SetDefaults_PodSpec, SetDefaults_Container, SetDefaults_Pod),
# the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins, pkg/apis/apps/v1/defaults.go

def test_a_pod_gets_the_apiservers_defaults(lab):
    _apply(lab, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "defaulted"},
                 "spec": {"containers": [{"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
                                         {"name": "b", "image": "nginx:1.27"}]}}, check=True)
    spec = lab.json("get", "pod", "defaulted")["spec"]
    assert {k: spec.get(k) for k in ("restartPolicy", "dnsPolicy", "schedulerName", "terminationGracePeriodSeconds",
                                     "securityContext", "serviceAccountName", "enableServiceLinks", "priority")} == {
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30, "securityContext": {}, "serviceAccountName": "default",
        "enableServiceLinks": True, "priority": 0}
    first, second = spec["containers"]
    assert (first["imagePullPolicy"], second["imagePullPolicy"]) == ("Always", "IfNotPresent")
    assert (first["terminationMessagePath"], first["terminationMessagePolicy"]) == ("/dev/termination-log", "File")
    assert first["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300} in spec["tolerations"]


def test_a_deployment_gets_its_strategy_and_template_defaults(lab):
    _apply(lab, _deployment("plain"), check=True)
    spec = lab.json("get", "deployment", "plain")["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"
    assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


# 5. DELETE. https://kubernetes.io/docs/concepts/architecture/garbage-collection/ (cascading deletion,
# finalizers), https://kubernetes.io/docs/reference/kubernetes-api/common-parameters/common-parameters/#dryrun,
# staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go (Delete, preconditions)

def test_a_server_dry_run_delete_deletes_nothing(lab):
    _apply(lab, _deployment("kept"), check=True)
    lab.kubectl("rollout", "status", "deployment/kept", "--timeout=20s")
    pods = lab.kubectl("get", "pods", "-l", "app=kept", "-o", "name").stdout
    out = lab.kubectl("delete", "deployment", "kept", "--dry-run=server").stdout
    assert out.strip() == 'deployment.apps "kept" deleted (server dry run)'
    assert lab.kubectl("get", "pods", "-l", "app=kept", "-o", "name").stdout == pods
    lab.kubectl("delete", "namespace", "default", "--dry-run=server")
    assert lab.json("get", "namespace", "default")["status"]["phase"] == "Active"


def test_cascade_orphan_leaves_the_replicaset_without_its_owner(lab):
    _apply(lab, _deployment("orphans"), check=True)
    lab.kubectl("rollout", "status", "deployment/orphans", "--timeout=20s")
    lab.kubectl("delete", "deployment", "orphans", "--cascade=orphan")
    replicasets = lab.json("get", "replicasets", "-l", "app=orphans")["items"]
    assert len(replicasets) == 1 and "ownerReferences" not in replicasets[0]["metadata"]


def test_an_object_with_a_finalizer_stays_until_the_finalizer_is_removed(lab):
    _apply(lab, {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, check=True)
    lab.kubectl("delete", "configmap", "held", "--wait=false")
    held = lab.json("get", "configmap", "held")
    assert held["metadata"]["deletionTimestamp"]
    lab.kubectl("patch", "configmap", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    assert lab.kubectl("get", "configmap", "held", check=False).returncode == 1


def test_a_delete_precondition_that_does_not_hold_is_a_conflict(lab):
    _apply(lab, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "precondition"}}, check=True)
    status, body = _request(lab, "DELETE", "/api/v1/namespaces/default/configmaps/precondition",
                            {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-its-uid"}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"].startswith('Operation cannot be fulfilled on configmaps "precondition": Precondition '
                                      "failed: UID in precondition: not-its-uid, UID in object meta: ")
    lab.kubectl("get", "configmap", "precondition")


def test_a_namespace_terminates_refuses_new_content_and_goes_once_empty(lab):
    lab.kubectl("create", "namespace", "ending")
    _apply(lab, {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "held", "namespace": "ending", "finalizers": ["example.com/hold"]}}, check=True)
    lab.kubectl("delete", "namespace", "ending", "--wait=false")
    time.sleep(0.3)
    assert lab.json("get", "namespace", "ending")["status"]["phase"] == "Terminating"
    refused = _apply(lab, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new", "namespace": "ending"}})
    assert ('configmaps "new" is forbidden: unable to create new content in namespace ending because it is being '
            "terminated") in refused.stderr
    lab.kubectl("patch", "configmap", "held", "-n", "ending", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    lab.kubectl("wait", "--for=delete", "namespace/ending", "--timeout=10s")


# 6. Field selectors: only the fields each kind supports. pkg/apis/core/v1/conversion.go
# (AddFieldLabelConversionsForPod, ...ForEvent), https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/

def test_field_selectors_take_only_the_supported_fields(lab):
    lab.kubectl("get", "pods", "--field-selector", "status.phase=Running,spec.nodeName=lab-node-1")
    lab.kubectl("get", "events", "--field-selector", "involvedObject.kind=Pod,type=Normal")
    refused = lab.kubectl("get", "pods", "--field-selector", "spec.containers.image=nginx", check=False)
    assert refused.returncode == 1
    assert "field label not supported: spec.containers.image" in refused.stderr
    assert "field label not supported: data.a" in lab.kubectl("get", "configmaps", "--field-selector", "data.a=1",
                                                              check=False).stderr


# 7. kubectl's everyday verbs: typed clients send protobuf for built-in kinds (decoded with k8s.io/api's
# generated.proto); https://kubernetes.io/docs/reference/kubectl/generated/kubectl_create/ ,
# https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access (SelfSubjectAccessReview)

def test_kubectl_create_and_expose_write_what_they_say(lab):
    namespace = f"verbs-{lab.json('version')['serverVersion']['minor']}"
    lab.kubectl("create", "namespace", namespace)
    for args in (("deployment", "web", "--image=nginx:1", "--replicas=2", "--port=80"),
                 ("deployment", "idle", "--image=nginx:1", "--replicas=0"),
                 ("service", "clusterip", "cip", "--tcp=80:8080"), ("secret", "generic", "s", "--from-literal=a=b"),
                 ("job", "once", "--image=busybox", "--", "echo", "hi"), ("serviceaccount", "robot"),
                 ("role", "reader", "--verb=get", "--resource=pods"), ("configmap", "c", "--from-literal=x=y"),
                 ("rolebinding", "read", "--role=reader", f"--serviceaccount={namespace}:robot")):
        lab.kubectl("create", "-n", namespace, *args)
    lab.kubectl("expose", "-n", namespace, "deployment", "web", "--port=8080", "--target-port=80")
    deployment = lab.json("get", "-n", namespace, "deployment", "web")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80,
                                                                                 "protocol": "TCP"}]
    assert lab.json("get", "-n", namespace, "deployment", "idle")["spec"]["replicas"] == 0  # a pointer's zero
    assert lab.json("get", "-n", namespace, "service", "web")["spec"]["selector"] == {"app": "web"}
    assert lab.json("get", "-n", namespace, "secret", "s")["data"] == {"a": "Yg=="}
    assert lab.json("get", "-n", namespace, "job", "once")["spec"]["template"]["spec"]["containers"][0][
        "command"] == ["echo", "hi"]
    assert lab.json("get", "-n", namespace, "role", "reader")["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    lab.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=20s")


def test_auth_can_i_answers_yes_as_the_emulator_authorizes_everything(lab):
    assert lab.kubectl("auth", "can-i", "delete", "nodes").stdout.strip() == "yes"


# 8. OpenAPI. kubectl explain reads /openapi/v3/<group-version>: it finds the kind's GVK on the path's
# operations, then the components.schemas entry carrying that `x-kubernetes-group-version-kind`, and
# follows the field path through properties, `allOf` refs, items and maps; a field that is not there is
# `error: field "NAME" does not exist` (staging/src/k8s.io/kubectl/pkg/explain/v2/templates/plaintext.tmpl).
# The field's description: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/
# (DeploymentSpec.strategy, DeploymentStrategy.type).

def test_kubectl_explain_prints_the_fields_real_description(lab):
    explained = lab.kubectl("explain", "deployment.spec.strategy").stdout
    assert explained.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n")
    assert "FIELD: strategy <DeploymentStrategy>" in explained
    assert "The deployment strategy to use to replace existing pods with new ones." in explained
    assert ('  type\t<string>\n    Type of deployment. Can be "Recreate" or "RollingUpdate". Default is\n'
            in explained)
    assert "FIELD: targetPort <IntOrString>" in lab.kubectl("explain", "service.spec.ports.targetPort").stdout


def test_kubectl_explain_of_a_field_that_does_not_exist_fails(lab):
    refused = lab.kubectl("explain", "deployment.spec.nosuchfield", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == 'error: field "nosuchfield" does not exist'


def test_kubectl_explain_from_openapi_v2_prints_the_same_field(lab):
    # /openapi/v2 in protobuf (gnostic's openapi.v2.Document), as `--output plaintext-openapiv2` reads it.
    explained = lab.kubectl("explain", "deployment.spec.strategy", "--output", "plaintext-openapiv2").stdout
    assert explained.startswith("KIND:     Deployment\nVERSION:  apps/v1\n\nRESOURCE: strategy <Object>\n")
    assert "The deployment strategy to use to replace existing pods with new ones." in explained


# A CRD's structural schema is published in the OpenAPI documents and `kubectl explain` reads it:
# https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#publish-validation-schema-in-openapi

def test_kubectl_explain_reads_a_custom_resources_published_schema(lab):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "crontabs.explain.example.com"},
           "spec": {"group": "explain.example.com", "scope": "Namespaced",
                    "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string", "description": "When the job runs, in cron format."}}}}}}}]}}
    _apply(lab, crd, check=True)
    try:
        lab.kubectl("wait", "--for=condition=Established", "crd/crontabs.explain.example.com", "--timeout=10s")
        explained = lab.kubectl("explain", "crontabs.spec.cronSpec").stdout
        assert explained.startswith("GROUP:      explain.example.com\nKIND:       CronTab\nVERSION:    v1\n")
        assert "FIELD: cronSpec <string>" in explained and "When the job runs, in cron format." in explained
        refused = lab.kubectl("explain", "crontabs.spec.nosuchfield", check=False)
        assert refused.stderr.strip() == 'error: field "nosuchfield" does not exist'
    finally:
        lab.kubectl("delete", "crd", "crontabs.explain.example.com")
