"""The apiserver's semantic validation of what clients write: 422 Invalid with one cause per field.

Runs on API writes after defaulting, as the registry strategies' Validate/ValidateUpdate do
(pkg/apis/core/validation/validation.go, pkg/apis/apps/validation/validation.go, messages from
k8s.io/apimachinery/pkg/util/validation/validation.go). Covered: object names (DNS-1123
subdomain, or label for Namespaces, DNS-1035 label for Services, path segment for RBAC objects),
label keys and values, pod specs (containers with name and image), workloads' selectors (required,
non-empty, matching the template's labels, immutable in apps/v1), Services' ports, immutable
ConfigMaps and Secrets, and a Pod's spec, fixed but for its mutable fields. Not covered: the
many other field-level checks (ports' ranges, probes, volumes, resource names...). Custom
resources are checked against their CRD's schema (`customresources`), given as `custom_schema`.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from lab.cluster import customresources, errors
from lab.cluster.errors import FieldError, field_forbidden, field_invalid, field_required
from lab.cluster.selectors import matches_label_selector
from lab.cluster.store import ResourceType

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _regex_error(message: str, regex: str, *examples: str) -> str:
    """apimachinery's RegexError, double spaces included."""
    shown = "e.g. " + " or ".join(f"'{e}', " for e in examples) if examples else ""
    return f"{message} ({shown}regex used for validation is '{regex}')"


LABEL_ERROR = _regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                           "and must start and end with an alphanumeric character",
                           "[a-z0-9]([-a-z0-9]*[a-z0-9])?", "my-name", "123-abc")
SUBDOMAIN_ERROR = _regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                               "'-' or '.', and must start and end with an alphanumeric character",
                               r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", "example.com")
DNS1035_ERROR = _regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                             "with an alphabetic character, and end with an alphanumeric character",
                             "[a-z]([-a-z0-9]*[a-z0-9])?", "my-name", "abc-123")
_QUALIFIED_MESSAGE = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                      "alphanumeric character")
_QUALIFIED_ERROR = _regex_error(_QUALIFIED_MESSAGE, "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]",
                                "MyName", "my.name", "123-abc")
LABEL_VALUE_ERROR = _regex_error("a valid label must be an empty string or consist of alphanumeric characters, '-', "
                                 "'_' or '.', and must start and end with an alphanumeric character",
                                 "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", "MyValue", "my_value", "12345")
_WORKLOADS = {("apps", "deployments"): "deployment", ("apps", "replicasets"): "replicaset",
              ("apps", "daemonsets"): "daemonset", ("apps", "statefulsets"): "statefulset"}
_RBAC = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
POD_UPDATE_FORBIDDEN = ("pod updates may not change fields other than `spec.containers[*].image`,"
                        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                        "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                        "(allow it to be set to 1 if it was previously negative)")
IMMUTABLE_DATA = "field is immutable when `immutable` is set"


def dns1123_label(value: str) -> list[str]:
    out = ["must be no more than 63 characters"] if len(value) > 63 else []
    return out + ([] if _LABEL.match(value) else [LABEL_ERROR])


def dns1123_subdomain(value: str) -> list[str]:
    out = ["must be no more than 253 characters"] if len(value) > 253 else []
    return out + ([] if _SUBDOMAIN.match(value) else [SUBDOMAIN_ERROR])


def dns1035_label(value: str) -> list[str]:
    out = ["must be no more than 63 characters"] if len(value) > 63 else []
    return out + ([] if _DNS1035.match(value) else [DNS1035_ERROR])


def _path_segment(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


def qualified_name(value: str) -> list[str]:
    """IsQualifiedName: a label key, `[prefix/]name`."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + _QUALIFIED_ERROR + " with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    name, out = parts[-1], []
    if len(parts) == 2:
        if not parts[0]:
            out.append("prefix part must be non-empty")
        else:
            out += ["prefix part " + m for m in dns1123_subdomain(parts[0])]
    if not name:
        return out + ["name part must be non-empty"]
    if len(name) > 63:
        out.append("name part must be no more than 63 characters")
    if not _QUALIFIED.match(name):
        out.append("name part " + _QUALIFIED_ERROR)
    return out


def labels(value: Any, field: str) -> list[FieldError]:
    out: list[FieldError] = []
    for key, label in (value or {}).items():
        out += [field_invalid(field, key, m) for m in qualified_name(key)]
        label = label if isinstance(label, str) else ""
        if len(label) > 63:
            out.append(field_invalid(field, label, "must be no more than 63 characters"))
        if not _LABEL_VALUE.match(label):
            out.append(field_invalid(field, label, LABEL_VALUE_ERROR))
    return out


def _name_rule(resource: ResourceType):
    if (resource.group, resource.plural) == ("", "namespaces"):
        return dns1123_label
    if (resource.group, resource.plural) == ("", "services"):
        return dns1035_label
    if resource.group == "rbac.authorization.k8s.io" and resource.plural in _RBAC:
        return _path_segment
    return dns1123_subdomain


def _metadata(resource: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    out = [field_invalid("metadata.name", name, m) for m in _name_rule(resource)(name)]
    return out + labels(meta.get("labels"), "metadata.labels")


def pod_spec(spec: Any, path: str) -> list[FieldError]:
    """ValidatePodSpec, its containers' part: at least one, each with a DNS-1123 label name and an image."""
    spec = spec or {}
    out: list[FieldError] = []
    if not spec.get("containers"):
        out.append(field_required(f"{path}.containers"))
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            where = f"{path}.{kind}[{index}]"
            name = container.get("name") or ""
            if not name:
                out.append(field_required(f"{where}.name"))
            else:
                out += [field_invalid(f"{where}.name", name, m) for m in dns1123_label(name)]
            if not container.get("image"):
                out.append(field_required(f"{where}.image"))
    return out


def _go_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector as field.Invalid prints it (Go's %#v)."""
    match_labels = selector.get("matchLabels")
    shown = errors.go_value(match_labels) if match_labels else "map[string]string(nil)"
    expressions = selector.get("matchExpressions")
    exprs = ("[]v1.LabelSelectorRequirement{" + ", ".join(
        f'v1.LabelSelectorRequirement{{Key:{errors.go_value(e.get("key", ""))}, '
        f'Operator:{errors.go_value(e.get("operator", ""))}, Values:{errors.go_value(e.get("values") or [])}}}'
        for e in expressions) + "}") if expressions else "[]v1.LabelSelectorRequirement(nil)"
    return f"v1.LabelSelector{{MatchLabels:{shown}, MatchExpressions:{exprs}}}"


def _workload(kind: str, obj: dict[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    template = spec.get("template") or {}
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    out: list[FieldError] = []
    if selector is None:
        out.append(field_required("spec.selector"))
    else:
        out += labels(selector.get("matchLabels"), "spec.selector.matchLabels")
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            out.append(field_invalid("spec.selector", None, f"empty selector is invalid for {kind}",
                                     _go_selector(selector)))
    selecting = selector and (selector.get("matchLabels") or selector.get("matchExpressions"))
    if selector is None or selecting and not matches_label_selector(selector, template_labels):
        out.append(field_invalid("spec.template.metadata.labels", template_labels,
                                 "`selector` does not match template `labels`"))
    out += labels(template_labels, "spec.template.metadata.labels")
    return out + pod_spec(template.get("spec"), "spec.template.spec")


def _service(obj: dict[str, Any]) -> list[FieldError]:
    spec = obj.get("spec") or {}
    ports = spec.get("ports") or []
    out: list[FieldError] = []
    if spec.get("type") == "ExternalName":
        if not spec.get("externalName"):
            out.append(field_required("spec.externalName"))
    elif not ports and spec.get("clusterIP") != "None":
        out.append(field_required("spec.ports"))
    for index, port in enumerate(ports):
        if len(ports) > 1 and not port.get("name"):
            out.append(field_required(f"spec.ports[{index}].name"))
    return out


def validate(resource: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
             custom_schema: dict[str, Any] | None = None) -> None:
    """Raise 422 Invalid, with every error found, for an object the apiserver would refuse;
    `custom_schema`: a custom resource's, from its CRD."""
    errs = _metadata(resource, obj)
    if custom_schema is not None:
        errs += customresources.validate(custom_schema, obj)
    key = (resource.group, resource.plural)
    if key in _WORKLOADS:
        errs += _workload(_WORKLOADS[key], obj)
    elif key == ("", "pods"):
        errs += pod_spec(obj.get("spec"), "spec")
    elif key == ("", "services"):
        errs += _service(obj)
    if old is not None:
        errs += _update(resource, obj, old)
    if errs:
        raise errors.invalid_object(resource.kind, resource.group, obj["metadata"].get("name", ""), errs)


def _update(resource: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    """ValidateUpdate's immutable fields (StatefulSets' and PVCs' are their controllers')."""
    key = (resource.group, resource.plural)
    if key in _WORKLOADS and key != ("apps", "statefulsets"):
        selector = (new.get("spec") or {}).get("selector")
        if selector != (old.get("spec") or {}).get("selector"):
            return [field_invalid("spec.selector", None, "field is immutable", _go_selector(selector or {}))]
    if key in (("", "configmaps"), ("", "secrets")) and old.get("immutable"):
        out = []
        if not new.get("immutable"):
            out.append(field_forbidden("immutable", IMMUTABLE_DATA))
        for field in ("data", "binaryData", "stringData"):
            if field in ("data", "binaryData") and (new.get(field) or {}) != (old.get(field) or {}):
                out.append(field_forbidden(field, IMMUTABLE_DATA))
        return out
    if key == ("", "secrets") and new.get("type") != old.get("type"):
        return [field_invalid("type", new.get("type"), "field is immutable")]
    if key == ("", "pods") and _fixed_pod_spec(new) != _fixed_pod_spec(old):
        return [field_forbidden("spec", POD_UPDATE_FORBIDDEN)]
    return []


def _fixed_pod_spec(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod's spec without what an update may change (ValidatePodUpdate)."""
    spec = copy.deepcopy(pod.get("spec") or {})
    for kind in ("containers", "initContainers"):
        for container in spec.get(kind) or []:
            container.pop("image", None)
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName"):
        spec.pop(field, None)
    return spec
