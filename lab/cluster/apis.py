"""The built-in APIs a kube-apiserver of each supported Kubernetes version serves by default.

A real apiserver serves a group-version from the release that adds it (GA, or a beta enabled by
default: new betas are off by default since 1.24, KEP-3136) until the release that removes it;
a request to an unserved one is a 404 and discovery does not list it, so clients refuse the kind
("no matches for kind ... in version ..."). Removals, from the deprecated API migration guide,
https://kubernetes.io/docs/reference/using-api/deprecation-guide/ :
- v1.25: batch/v1beta1 CronJob, discovery.k8s.io/v1beta1 EndpointSlice, events.k8s.io/v1beta1
  Event, autoscaling/v2beta1 HorizontalPodAutoscaler, policy/v1beta1 PodDisruptionBudget and
  PodSecurityPolicy, node.k8s.io/v1beta1 RuntimeClass;
- v1.26: flowcontrol.apiserver.k8s.io/v1beta1, autoscaling/v2beta2;
- v1.27: storage.k8s.io/v1beta1 CSIStorageCapacity;
- v1.29: flowcontrol.apiserver.k8s.io/v1beta2;  v1.32: flowcontrol.apiserver.k8s.io/v1beta3.
Additions after 1.24, from the release notes and the API reference of each version: flowcontrol
v1beta3 (1.26) and v1 (1.29), authentication.k8s.io/v1 SelfSubjectReview (1.28),
admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy(Binding) (1.30).
Alpha APIs and betas that are off by default are not served (as with default flags).

Objects of one resource served at several versions are stored once, as the apiserver stores
them (at the group's preferred version) and read back at any served version. Stand-in: the
conversion sets `apiVersion` only, since the pairs served here share their fields for what the
lab writes (the guide lists the field changes, e.g. EndpointSlice's topology, HPA v2beta1's metrics).
"""
from __future__ import annotations

import re

from lab.cluster.store import ResourceType

SUPPORTED = ("1.24", "1.32")
DEFAULT = "1.32"
# The release each version reports (/version, nodes' kubeletVersion): the last 1.24 patch, and the
# 1.32 patch of the pinned kubectl.
_RELEASES = {"1.24": ("v1.24.17", "2023-08-24T00:00:00Z", "go1.20.7"),
             "1.32": ("v1.32.3", "2025-03-11T00:00:00Z", "go1.23.6")}

_CRUD = "create delete deletecollection get list patch update watch"
# group/version, first and last minor version serving it (None: still served)
_GROUP_VERSIONS = {
    "v1": (0, None), "admissionregistration.k8s.io/v1": (16, None), "apiextensions.k8s.io/v1": (16, None),
    "apiregistration.k8s.io/v1": (10, None), "apps/v1": (9, None), "authentication.k8s.io/v1": (6, None),
    "authorization.k8s.io/v1": (6, None), "autoscaling/v1": (2, None), "autoscaling/v2": (23, None),
    "autoscaling/v2beta1": (6, 24), "autoscaling/v2beta2": (12, 25), "batch/v1": (2, None),
    "batch/v1beta1": (8, 24), "certificates.k8s.io/v1": (19, None), "coordination.k8s.io/v1": (14, None),
    "discovery.k8s.io/v1": (21, None), "discovery.k8s.io/v1beta1": (17, 24), "events.k8s.io/v1": (19, None),
    "events.k8s.io/v1beta1": (8, 24), "flowcontrol.apiserver.k8s.io/v1": (29, None),
    "flowcontrol.apiserver.k8s.io/v1beta1": (20, 25), "flowcontrol.apiserver.k8s.io/v1beta2": (23, 28),
    "flowcontrol.apiserver.k8s.io/v1beta3": (26, 31), "networking.k8s.io/v1": (8, None),
    "node.k8s.io/v1": (20, None), "node.k8s.io/v1beta1": (14, 24), "policy/v1": (21, None),
    "policy/v1beta1": (5, 24), "rbac.authorization.k8s.io/v1": (8, None), "scheduling.k8s.io/v1": (14, None),
    "storage.k8s.io/v1": (6, None), "storage.k8s.io/v1beta1": (10, 26),
}
# group/versions, plural, Kind, namespaced, verbs, short names, subresources, (first, last) minor of
# the resource itself where it differs from its group-version's.
_RESOURCES: list[tuple[str, str, str, bool, str, str, str, tuple[int, int | None] | None]] = [
    ("v1", "bindings", "Binding", True, "create", "", "", None),
    ("v1", "componentstatuses", "ComponentStatus", False, "get list", "cs", "", None),
    ("v1", "configmaps", "ConfigMap", True, _CRUD, "cm", "", None),
    ("v1", "endpoints", "Endpoints", True, _CRUD, "ep", "", None),
    ("v1", "events", "Event", True, _CRUD, "ev", "", None),
    ("v1", "limitranges", "LimitRange", True, _CRUD, "limits", "", None),
    ("v1", "namespaces", "Namespace", False, "create delete get list patch update watch", "ns",
     "finalize status", None),
    ("v1", "nodes", "Node", False, _CRUD, "no", "proxy status", None),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, _CRUD, "pvc", "status", None),
    ("v1", "persistentvolumes", "PersistentVolume", False, _CRUD, "pv", "status", None),
    ("v1", "pods", "Pod", True, _CRUD, "po",
     "attach binding ephemeralcontainers eviction exec log portforward proxy status", None),
    ("v1", "podtemplates", "PodTemplate", True, _CRUD, "", "", None),
    ("v1", "replicationcontrollers", "ReplicationController", True, _CRUD, "rc", "scale status", None),
    ("v1", "resourcequotas", "ResourceQuota", True, _CRUD, "quota", "status", None),
    ("v1", "secrets", "Secret", True, _CRUD, "", "", None),
    ("v1", "serviceaccounts", "ServiceAccount", True, _CRUD, "sa", "token", None),
    ("v1", "services", "Service", True, _CRUD, "svc", "proxy status", None),
    ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False,
     _CRUD, "", "", None),
    ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False,
     _CRUD, "", "", None),
    ("admissionregistration.k8s.io/v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", False,
     _CRUD, "", "status", (30, None)),
    ("admissionregistration.k8s.io/v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding",
     False, _CRUD, "", "", (30, None)),
    ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False, _CRUD, "crd crds",
     "status", None),
    ("apiregistration.k8s.io/v1", "apiservices", "APIService", False, _CRUD, "", "status", None),
    ("apps/v1", "controllerrevisions", "ControllerRevision", True, _CRUD, "", "", None),
    ("apps/v1", "daemonsets", "DaemonSet", True, _CRUD, "ds", "status", None),
    ("apps/v1", "deployments", "Deployment", True, _CRUD, "deploy", "scale status", None),
    ("apps/v1", "replicasets", "ReplicaSet", True, _CRUD, "rs", "scale status", None),
    ("apps/v1", "statefulsets", "StatefulSet", True, _CRUD, "sts", "scale status", None),
    ("authentication.k8s.io/v1", "selfsubjectreviews", "SelfSubjectReview", False, "create", "", "", (28, None)),
    ("authentication.k8s.io/v1", "tokenreviews", "TokenReview", False, "create", "", "", None),
    ("authorization.k8s.io/v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True, "create", "", "",
     None),
    ("authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, "create", "", "",
     None),
    ("authorization.k8s.io/v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, "create", "", "", None),
    ("authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview", False, "create", "", "", None),
    ("autoscaling/v1 autoscaling/v2 autoscaling/v2beta1 autoscaling/v2beta2", "horizontalpodautoscalers",
     "HorizontalPodAutoscaler", True, _CRUD, "hpa", "status", None),
    ("batch/v1 batch/v1beta1", "cronjobs", "CronJob", True, _CRUD, "cj", "status", None),
    ("batch/v1", "jobs", "Job", True, _CRUD, "", "status", None),
    ("certificates.k8s.io/v1", "certificatesigningrequests", "CertificateSigningRequest", False, _CRUD, "csr",
     "approval status", None),
    ("coordination.k8s.io/v1", "leases", "Lease", True, _CRUD, "", "", None),
    ("discovery.k8s.io/v1 discovery.k8s.io/v1beta1", "endpointslices", "EndpointSlice", True, _CRUD, "", "", None),
    ("events.k8s.io/v1 events.k8s.io/v1beta1", "events", "Event", True, _CRUD, "ev", "", None),
    ("flowcontrol.apiserver.k8s.io/v1 flowcontrol.apiserver.k8s.io/v1beta1 flowcontrol.apiserver.k8s.io/v1beta2 "
     "flowcontrol.apiserver.k8s.io/v1beta3", "flowschemas", "FlowSchema", False, _CRUD, "", "status", None),
    ("flowcontrol.apiserver.k8s.io/v1 flowcontrol.apiserver.k8s.io/v1beta1 flowcontrol.apiserver.k8s.io/v1beta2 "
     "flowcontrol.apiserver.k8s.io/v1beta3", "prioritylevelconfigurations", "PriorityLevelConfiguration", False,
     _CRUD, "", "status", None),
    ("networking.k8s.io/v1", "ingressclasses", "IngressClass", False, _CRUD, "", "", None),
    ("networking.k8s.io/v1", "ingresses", "Ingress", True, _CRUD, "ing", "status", None),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True, _CRUD, "netpol", "", None),
    ("node.k8s.io/v1 node.k8s.io/v1beta1", "runtimeclasses", "RuntimeClass", False, _CRUD, "", "", None),
    ("policy/v1 policy/v1beta1", "poddisruptionbudgets", "PodDisruptionBudget", True, _CRUD, "pdb", "status", None),
    ("policy/v1beta1", "podsecuritypolicies", "PodSecurityPolicy", False, _CRUD, "psp", "", None),
    ("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False, _CRUD, "", "", None),
    ("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False, _CRUD, "", "", None),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True, _CRUD, "", "", None),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", True, _CRUD, "", "", None),
    ("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", False, _CRUD, "pc", "", None),
    ("storage.k8s.io/v1", "csidrivers", "CSIDriver", False, _CRUD, "", "", None),
    ("storage.k8s.io/v1", "csinodes", "CSINode", False, _CRUD, "", "", None),
    ("storage.k8s.io/v1 storage.k8s.io/v1beta1", "csistoragecapacities", "CSIStorageCapacity", True, _CRUD, "", "",
     None),
    ("storage.k8s.io/v1", "storageclasses", "StorageClass", False, _CRUD, "sc", "", None),
    ("storage.k8s.io/v1", "volumeattachments", "VolumeAttachment", False, _CRUD, "", "status", None),
]
# Deprecated resource versions: (group/version, plural) -> minor deprecated in, minor removed in, replacement
# (the apiserver's prerelease-lifecycle tags; it warns on every request once the release it is reaches
# the deprecating one, in the words of `deprecation_warning`).
_DEPRECATED = {
    ("autoscaling/v2beta1", "horizontalpodautoscalers"): (22, 25, "autoscaling/v2"),
    ("autoscaling/v2beta2", "horizontalpodautoscalers"): (23, 26, "autoscaling/v2"),
    ("batch/v1beta1", "cronjobs"): (21, 25, "batch/v1"),
    ("discovery.k8s.io/v1beta1", "endpointslices"): (21, 25, "discovery.k8s.io/v1"),
    ("events.k8s.io/v1beta1", "events"): (22, 25, "events.k8s.io/v1"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "flowschemas"): (23, 26, "flowcontrol.apiserver.k8s.io/v1beta2"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "prioritylevelconfigurations"):
        (23, 26, "flowcontrol.apiserver.k8s.io/v1beta2"),
    ("node.k8s.io/v1beta1", "runtimeclasses"): (22, 25, "node.k8s.io/v1"),
    ("policy/v1beta1", "poddisruptionbudgets"): (21, 25, "policy/v1"),
    ("policy/v1beta1", "podsecuritypolicies"): (21, 25, ""),
    ("storage.k8s.io/v1beta1", "csistoragecapacities"): (24, 27, "storage.k8s.io/v1"),
}
# `kubectl get all` lists the resources in this category.
_ALL = {("", "pods"), ("", "replicationcontrollers"), ("", "services"), ("apps", "daemonsets"),
        ("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
        ("autoscaling", "horizontalpodautoscalers"), ("batch", "cronjobs"), ("batch", "jobs")}
_API_EXTENSIONS = {"admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io"}


def minor(kube_version: str) -> int:
    """The minor number of a supported version; anything else is a ValueError with a one-line message."""
    if kube_version not in SUPPORTED:
        raise ValueError(f"unsupported Kubernetes version {kube_version!r}: the emulator serves "
                         f"{' or '.join(SUPPORTED)}")
    return int(kube_version.split(".")[1])


def _served(span: tuple[int, int | None], at: int) -> bool:
    first, last = span
    return first <= at and (last is None or at <= last)


def builtin_resources(kube_version: str) -> list[ResourceType]:
    """Every built-in resource the apiserver of `kube_version` serves, at each version it serves it;
    each names, as `storage_version`, the version its objects are stored at (the group's preferred)."""
    at = minor(kube_version)
    served: list[ResourceType] = []
    for group_versions, plural, kind, namespaced, verbs, short_names, subresources, span in _RESOURCES:
        if span and not _served(span, at):
            continue
        versions = [gv for gv in group_versions.split() if _served(_GROUP_VERSIONS[gv], at)]
        versions.sort(key=lambda gv: version_priority(gv.rpartition("/")[2]))
        for gv in versions:
            group, _, version = gv.rpartition("/")
            categories = {"all"} if (group, plural) in _ALL else {"api-extensions"} if group in _API_EXTENSIONS else ()
            served.append(ResourceType(group, version, plural, kind, namespaced, kind.lower(), frozenset(verbs.split()),
                                       frozenset(short_names.split()), frozenset(categories),
                                       frozenset(subresources.split()), storage_version=versions[0].rpartition("/")[2],
                                       warning=deprecation_warning(gv, plural, kind, at)))
    return served


def deprecation_warning(group_version: str, plural: str, kind: str, at: int) -> str:
    """What the apiserver of minor version `at` warns about a deprecated resource version ("" if it is not),
    e.g. `policy/v1beta1 PodDisruptionBudget is deprecated in v1.21+, unavailable in v1.25+; use policy/v1
    PodDisruptionBudget`."""
    deprecated, removed, replacement = _DEPRECATED.get((group_version, plural), (None, None, ""))
    if deprecated is None or at < deprecated:
        return ""
    warning = f"{group_version} {kind} is deprecated in v1.{deprecated}+, unavailable in v1.{removed}+"
    return f"{warning}; use {replacement} {kind}" if replacement else warning


def version_info(kube_version: str) -> dict[str, str]:
    """What `/version` answers for `kube_version`."""
    git_version, build_date, go_version = _RELEASES[kube_version]
    return {"major": "1", "minor": str(minor(kube_version)), "gitVersion": f"{git_version}+labcluster",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": build_date, "goVersion": go_version, "compiler": "gc", "platform": "linux/amd64"}


def kubelet_version(kube_version: str) -> str:
    return _RELEASES[kube_version][0]


def version_priority(version: str) -> tuple[int, int, int]:
    """Sort key of kube's version ordering: GA before beta before alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major, stage, number = match.groups()
    return ({None: 0, "beta": 1, "alpha": 2}[stage], -int(major), -int(number or 0))
