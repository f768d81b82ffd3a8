import pytest

from fabfile import kube, probes
from fabfile.inventory import Host
from fabfile.remote import Output, RemoteError
from fabfile.results import table


def test_key_values_reads_the_facts_and_the_file_after_the_marker():
    facts, text = probes.key_values("manager=systemd\nmirrors=[\"https://m/\"]\nnoise\n---\n{\"a\": 1}\nx=y\n")
    assert facts == {"manager": "systemd", "mirrors": '["https://m/"]'}
    assert text == '{"a": 1}\nx=y\n'


def test_key_values_without_the_marker_means_no_file():
    facts, text = probes.key_values("nginx=yes\nurl=http://h/?a=b\n")
    assert facts == {"nginx": "yes", "url": "http://h/?a=b"} and text is None
    assert probes.key_values("manager=sysvinit\n---\n") == ({"manager": "sysvinit"}, "")


def test_table_aligns_columns_and_right_aligns_counts():
    assert table([["POD", "READY"], ["hub-1", "1/1"]]) == "POD    READY\nhub-1  1/1"
    assert table([["HOST", "OK", "FAILED"], ["lab-node1", "12", "0"]], right_from=1) == \
        "HOST       OK  FAILED\nlab-node1  12       0"


def test_external_ip_and_name_of_a_service():
    service = {"metadata": {"namespace": "binder", "name": "proxy-public"},
               "status": {"loadBalancer": {"ingress": [{"ip": "10.77.0.240"}]}}}
    assert probes.name_of(service) == "binder/proxy-public"
    assert probes.external_ip(service) == "10.77.0.240"
    assert probes.external_ip({"status": {}}) is None


def _control_plane() -> Host:
    return Host("cp", "cp", None, None, False, None, None, 10, 60, ("control-plane",),
                {"namespace": "binder", "kubeconfig": None})


NOT_FOUND = Output(1, "", 'namespaces "binder" not found (NotFound)')


def test_namespace_exists_reads_with_both_tools_and_names_the_fix(monkeypatch):
    asked = []

    def probe(conn, host, argvs, namespace=NOT_FOUND):
        asked.append({k: v[0] for k, v in argvs.items()})
        return {"helm": Output(0, "v3.14.0", ""), "namespace": namespace}

    monkeypatch.setattr(kube, "probe", probe)
    assert probes.namespace_exists(None, _control_plane()) is False
    assert asked == [{"helm": "helm", "namespace": "kubectl"}]
    monkeypatch.setattr(kube, "probe", lambda conn, host, argvs: probe(
        conn, host, argvs, Output(1, "", "dial tcp 10.0.0.1:6443: connect: connection refused")))
    with pytest.raises(RemoteError, match="cp cannot reach the cluster: .*connection refused; check the kubeconfig"):
        probes.namespace_exists(None, _control_plane())


def test_a_pods_reason_is_the_kubelets_or_the_schedulers_as_the_pod_status_gives_it():
    waiting = {"name": "hub", "ready": False, "state": {"waiting": {"reason": "ErrImagePull",
                                                                    "message": "pull access denied"}}}
    assert probes.pod_reason({"status": {"phase": "Pending", "containerStatuses": [waiting]}}) == \
        "container hub ErrImagePull: pull access denied"
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available: 3 Insufficient cpu."}
    assert probes.pod_reason({"status": {"phase": "Pending", "conditions": [unschedulable]}}) == \
        "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    crashing = {"name": "binder", "ready": False, "restartCount": 4, "state": {"running": {}}}
    assert probes.pod_reason({"status": {"phase": "Running", "containerStatuses": [crashing]}}) == \
        "container binder restarted 4 times"
    ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
             "containerStatuses": [{"name": "hub", "ready": True}]}
    assert probes.pod_reason({"status": ready}) == ""
