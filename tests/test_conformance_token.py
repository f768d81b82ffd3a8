"""`kubectl create token SA`: the TokenRequest subresource (`serviceaccounts/token`) as the apiserver answers
it, checked with the real pinned kubectl against the emulator on loopback. Expectations from
pkg/registry/core/serviceaccount/storage/token.go (TokenREST.Create), pkg/apis/authentication/validation
(ValidateTokenRequest) and https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/
(expirationSeconds defaults to one hour, audiences to the apiserver's). The token itself is opaque here:
the emulator authenticates nobody (`lab.cluster.tokens`)."""
from __future__ import annotations

import datetime
import json

import pytest

from tests.test_labcluster import HELM, KUBECTL, _emulator

pytestmark = pytest.mark.skipif(not (KUBECTL.exists() and HELM.exists()),
                                reason="pinned kubectl/helm missing: run scripts/install-k8s-tools")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with _emulator(tmp_path_factory.mktemp("conformance-token")) as running:
        running.kubectl("create", "serviceaccount", "robot")
        yield running


def test_create_token_returns_a_token_request_with_token_and_expiry(lab):
    token = lab.kubectl("create", "token", "robot").stdout.strip()
    assert len(token) >= 32 and "\n" not in token
    answer = lab.json("create", "token", "robot", "--duration", "2h", "--audience", "https://example.org")
    assert (answer["kind"], answer["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
    assert answer["metadata"]["name"] == "robot" and answer["metadata"]["namespace"] == "default"
    assert answer["spec"]["audiences"] == ["https://example.org"] and answer["spec"]["expirationSeconds"] == 7200
    assert answer["status"]["token"] and answer["status"]["token"] != token
    expires = datetime.datetime.fromisoformat(answer["status"]["expirationTimestamp"].replace("Z", "+00:00"))
    left = expires - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=2) - datetime.timedelta(minutes=1) < left <= datetime.timedelta(hours=2)
    defaulted = lab.json("create", "token", "robot")["spec"]
    assert defaulted["expirationSeconds"] == 3600 and defaulted["audiences"]
    assert lab.kubectl("get", "secrets", "-o", "name").stdout == ""  # nothing is stored


def test_a_missing_service_account_is_not_found_and_a_short_duration_invalid(lab):
    missing = lab.kubectl("create", "token", "nobody", check=False)
    assert missing.returncode == 1 and 'serviceaccounts "nobody" not found' in missing.stderr
    short = lab.kubectl("create", "token", "robot", "--duration", "1m", check=False)
    assert short.returncode == 1 and ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
                                      "Invalid value: 60: may not specify a duration less than 10 minutes") \
        in short.stderr


def test_every_namespace_has_a_default_service_account_that_comes_back_when_deleted(lab):
    # pkg/controller/serviceaccount/serviceaccounts_controller.go: ensures "default" in every active
    # namespace, on namespace creation and on the account's deletion.
    lab.kubectl("create", "namespace", "team-a")
    try:
        assert lab.kubectl("get", "serviceaccount", "default", "-n", "team-a", "-o", "name").stdout.strip() \
            == "serviceaccount/default"
        assert lab.kubectl("create", "token", "default", "-n", "team-a").stdout.strip()
        lab.kubectl("delete", "serviceaccount", "default", "-n", "team-a")
        assert lab.kubectl("get", "serviceaccount", "default", "-n", "team-a", "-o", "name").stdout.strip() \
            == "serviceaccount/default"
    finally:
        lab.kubectl("delete", "namespace", "team-a", "--wait=false")


def test_discovery_lists_the_token_subresource_as_a_token_request(lab):
    # The apiserver's discovery: serviceaccounts/token, group authentication.k8s.io, kind TokenRequest, verb create.
    resources = json.loads(lab.kubectl("get", "--raw", "/api/v1").stdout)["resources"]
    token = next(r for r in resources if r["name"] == "serviceaccounts/token")
    assert (token["group"], token["version"], token["kind"], token["verbs"]) == \
        ("authentication.k8s.io", "v1", "TokenRequest", ["create"])
