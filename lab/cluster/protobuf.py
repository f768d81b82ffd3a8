"""Decode the Kubernetes protobuf request bodies that kubectl and helm send, into JSON dicts.

client-go's typed clients (kubectl `create deployment|service|job|role|...`, `auth can-i`,
`drain`'s Evictions, helm's release Secrets) encode bodies as `application/vnd.kubernetes.protobuf`:
the magic `k8s\\0`, then a `runtime.Unknown` envelope whose `raw` field holds the object's message.
Answers may be JSON (clients decode by the response's Content-Type), so only decoding is needed.
Messages, field numbers and JSON names are k8s.io/api's `generated.proto` (`protomessages`, made by
`protogen`), apimachinery's few (ObjectMeta, LabelSelector, Time, Quantity, IntOrString...) below.
As the JSON encoder's `omitempty`: empty strings, zeros and false are left out unless the Go field
is a pointer (`replicas: 0` is kept), empty messages are kept (`resources: {}`).
"""
from __future__ import annotations

import base64
import datetime
import json
import struct
from typing import Any

from lab.cluster.errors import unsupported_media_type
from lab.cluster.protomessages import MESSAGES

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

Fields = dict[int, tuple[str, str, str]]  # number -> (json name, optional|pointer|repeated|map|inline, type)
_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
# From k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto.
APIMACHINERY: dict[str, Fields] = {
    _META + "ObjectMeta": {
        1: ("name", "optional", "string"), 2: ("generateName", "optional", "string"),
        3: ("namespace", "optional", "string"), 5: ("uid", "optional", "string"),
        6: ("resourceVersion", "optional", "string"), 7: ("generation", "optional", "int64"),
        8: ("creationTimestamp", "optional", _META + "Time"), 9: ("deletionTimestamp", "optional", _META + "Time"),
        10: ("deletionGracePeriodSeconds", "optional", "int64"), 11: ("labels", "map", "string"),
        12: ("annotations", "map", "string"), 13: ("ownerReferences", "repeated", _META + "OwnerReference"),
        14: ("finalizers", "repeated", "string")},
    _META + "OwnerReference": {
        1: ("kind", "optional", "string"), 3: ("name", "optional", "string"), 4: ("uid", "optional", "string"),
        5: ("apiVersion", "optional", "string"), 6: ("controller", "optional", "bool"),
        7: ("blockOwnerDeletion", "optional", "bool")},
    _META + "LabelSelector": {1: ("matchLabels", "map", "string"),
                              2: ("matchExpressions", "repeated", _META + "LabelSelectorRequirement")},
    _META + "LabelSelectorRequirement": {1: ("key", "optional", "string"), 2: ("operator", "optional", "string"),
                                         3: ("values", "repeated", "string")},
    _META + "DeleteOptions": {
        1: ("gracePeriodSeconds", "optional", "int64"), 2: ("preconditions", "optional", _META + "Preconditions"),
        3: ("orphanDependents", "optional", "bool"), 4: ("propagationPolicy", "optional", "string"),
        5: ("dryRun", "repeated", "string")},
    _META + "Preconditions": {1: ("uid", "optional", "string"), 2: ("resourceVersion", "optional", "string")},
}
_UNKNOWN: Fields = {1: ("typeMeta", "optional", "TypeMeta"), 2: ("raw", "optional", "bytes")}
_TYPE_META: Fields = {1: ("apiVersion", "optional", "string"), 2: ("kind", "optional", "string")}


def _int(raw: int) -> int:
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def _time(raw: bytes) -> str | None:
    seconds = _message(raw, {1: ("seconds", "optional", "int64")}).get("seconds", 0)
    if not seconds:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(raw: bytes) -> int | str:
    value = _message(raw, {1: ("type", "optional", "int64"), 2: ("intVal", "optional", "int32"),
                           3: ("strVal", "optional", "string")})
    return value.get("strVal", "") if value.get("type") == 1 else value.get("intVal", 0)


def _embedded_json(raw: bytes) -> Any:
    inner = _message(raw, {1: ("raw", "optional", "bytes")}).get("raw", b"")
    return json.loads(inner) if inner else {}


_SPECIAL = {
    _META + "Time": _time, _META + "MicroTime": _time,
    _META + "Duration": lambda raw: f"{_message(raw, {1: ('d', 'optional', 'int64')}).get('d', 0) / 1e9:g}s",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda raw: _message(
        raw, {1: ("string", "optional", "string")}).get("string", "0"),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
    "k8s.io.apimachinery.pkg.runtime.RawExtension": _embedded_json,
    _META + "FieldsV1": _embedded_json,
}


def _scalar(type_name: str, raw: Any) -> Any:
    if type_name == "string":
        return raw.decode("utf-8")
    if type_name == "bytes":
        return raw
    if type_name == "bool":
        return bool(raw)
    if type_name == "double":
        return struct.unpack("<d", raw)[0]
    if type_name == "float":
        return struct.unpack("<f", raw)[0]
    return _int(raw) if type_name in ("int32", "int64") else raw


def _value(type_name: str, raw: Any) -> Any:
    if type_name in _SPECIAL:
        return _SPECIAL[type_name](raw)
    fields = APIMACHINERY.get(type_name) or MESSAGES.get(type_name)
    if fields is not None:
        return _message(raw, fields)
    if type_name == "TypeMeta":
        return _message(raw, _TYPE_META)
    if "." in type_name:
        return None  # a message this table does not hold: left out
    value = _scalar(type_name, raw)
    return base64.b64encode(value).decode("ascii") if type_name == "bytes" else value


def _fields(data: bytes):
    """Yield (field number, value) pairs of one protobuf message, from its wire format."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield number, value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _message(data: bytes, fields: Fields) -> dict[str, Any]:
    """Decode a message; empty strings, zeros and false are dropped but for pointers, as JSON's omitempty does."""
    out: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in fields:
            continue
        name, label, type_name = fields[number]
        if label == "map":
            entry = _message(raw, {1: ("key", "optional", "string"), 2: ("value", "optional", type_name)})
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "" if "." not in type_name else {})
        elif label == "repeated" and type_name in ("int32", "int64") and isinstance(raw, bytes):  # packed
            out.setdefault(name, []).extend(_int(v) for v in _varints(raw))
        elif label == "repeated":
            out.setdefault(name, []).append(_value(type_name, raw))
        elif label == "inline":  # an embedded Go struct: its fields are this object's
            out.update(_value(type_name, raw) or {})
        else:
            value = raw if type_name == "bytes" and name == "raw" else _value(type_name, raw)
            if label == "pointer" or value not in ("", 0, None, False) or isinstance(value, dict):
                out[name] = value
    return out


def _varints(data: bytes):
    pos = 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        yield value


def _message_type(api_version: str, kind: str) -> str:
    """The k8s.io/api message of a kind at an apiVersion, e.g. apps/v1 Deployment: k8s.io.api.apps.v1.Deployment."""
    group, _, version = api_version.rpartition("/")
    return f"k8s.io.api.{group.split('.')[0] if group else 'core'}.{version}.{kind}"


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object."""
    if not body.startswith(MAGIC):
        raise unsupported_media_type(CONTENT_TYPE + " (no k8s magic prefix)")
    envelope = _message(body[len(MAGIC):], _UNKNOWN)
    type_meta = envelope.get("typeMeta", {})
    kind, api_version = type_meta.get("kind", ""), type_meta.get("apiVersion", "v1")
    message = _META + kind if kind == "DeleteOptions" else _message_type(api_version, kind)
    fields = APIMACHINERY.get(message) or MESSAGES.get(message)
    if fields is None:
        raise unsupported_media_type(f"{CONTENT_TYPE} for kind {kind!r}")
    return {"apiVersion": api_version, "kind": kind, **_message(envelope.get("raw", b""), fields)}
