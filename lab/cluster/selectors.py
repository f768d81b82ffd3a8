"""Label and field selectors, with the apiserver's syntax and meaning.

- `labelSelector` query strings: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
  comma-separated (all must hold).
- `fieldSelector` query strings: `path=value`, `path==value`, `path!=value`, where path is one of
  the fields the kind supports (`SELECTABLE`; every kind: `metadata.name`, `metadata.namespace`),
  else 400 `field label not supported: PATH`, as the kinds' field label conversion functions say
  (pkg/apis/core/v1/conversion.go, pkg/apis/apps/v1/conversion.go, pkg/apis/batch/v1/conversion.go).
- `LabelSelector` objects (`matchLabels`, `matchExpressions`), as in a Deployment's `spec.selector`.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from lab.cluster.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_TERM = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `in (...)` sets."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    if match := _EQ_TERM.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _SET_TERM.match(term):
        negated, key, op, values = match.groups()
        if op:
            if negated:
                raise bad_request(f"unable to parse requirement: {term!r}")
            members = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                return lambda labels: labels.get(key) in members
            return lambda labels: labels.get(key) not in members
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate on objects for a `labelSelector` query string (empty: everything)."""
    terms = [_label_term(term) for term in _split_terms(selector or "")]
    return lambda obj: all(term(labels_of(obj)) for term in terms)


_EVENT_FIELDS = frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                           "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                           "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"})
SELECTABLE: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                             "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs",
                             "status.nominatedNodeName"}),
    ("", "events"): _EVENT_FIELDS, ("events.k8s.io", "events"): _EVENT_FIELDS,
    ("", "namespaces"): frozenset({"status.phase"}), ("", "secrets"): frozenset({"type"}),
    ("", "nodes"): frozenset({"spec.unschedulable"}), ("", "replicationcontrollers"): frozenset({"status.replicas"}),
    ("apps", "replicasets"): frozenset({"status.replicas"}), ("batch", "jobs"): frozenset({"status.successful"}),
    ("certificates.k8s.io", "certificatesigningrequests"): frozenset({"spec.signerName"}),
}
_EVERY_KIND = frozenset({"metadata.name", "metadata.namespace"})


def field_selector(selector: str | None, kind: tuple[str, str] | None = None) -> Predicate:
    """A predicate on objects for a `fieldSelector` query string (empty: everything), for the
    resource `kind` (group, plural): only its supported fields (None: any field)."""
    terms = []
    for term in _split_terms(selector or ""):
        match = _EQ_TERM.match(term)
        if not match:
            raise bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
        path, op, value = match.groups()
        if kind is not None and path not in _EVERY_KIND | SELECTABLE.get(kind, frozenset()):
            raise bad_request(f"field label not supported: {path}")
        terms.append((path.split("."), op == "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        for path, negated, value in terms:
            current: Any = obj
            for part in path:
                current = current.get(part) if isinstance(current, dict) else None
            actual = "" if current is None else str(current).lower() if isinstance(current, bool) else str(current)
            if (actual == value) == negated:
                return False
        return True
    return matches


def matches_label_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether labels satisfy a LabelSelector object; an empty or missing selector matches all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}
