"""Decode the Kubernetes protobuf request bodies that kubectl and helm send, into JSON dicts.

client-go's typed clients (kubectl `create namespace` and `drain`'s Evictions, helm's release
Secrets) encode bodies as `application/vnd.kubernetes.protobuf`: the magic `k8s\\0`, then a
`runtime.Unknown` envelope whose `raw` field holds the object's message. Answers may be JSON
(clients decode by the response's Content-Type), so only decoding is needed, and only for the
kinds typed clients write. Field numbers are those of k8s.io/api `generated.proto`; fields not
listed here are skipped.
"""
from __future__ import annotations

import base64
import datetime
from typing import Any, Callable

from lab.cluster.errors import unsupported_media_type

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# A schema maps a field number to (json name, decoder). Decoders take the raw field value:
# an int for varints, bytes for length-delimited fields.
Schema = dict[int, tuple[str, Callable[[Any], Any]]]
_REPEATED = "repeated"
_MAP = "map"


def _string(raw: bytes) -> str:
    return raw.decode("utf-8")


def _bytes(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _int(raw: int) -> int:
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def _bool(raw: int) -> bool:
    return bool(raw)


def _time(raw: bytes) -> str | None:
    seconds = _message(raw, {1: ("seconds", _int)}).get("seconds", 0)
    if not seconds:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(schema: Schema) -> Callable[[bytes], dict]:
    return lambda raw: _message(raw, schema)


def _repeated(decode: Callable[[Any], Any]) -> tuple[str, Callable[[Any], Any]]:
    return (_REPEATED, decode)


def _map_of(decode_value: Callable[[Any], Any]) -> tuple[str, Callable[[Any], Any]]:
    return (_MAP, lambda raw: _message(raw, {1: ("key", _string), 2: ("value", decode_value)}))


OWNER_REFERENCE: Schema = {1: ("kind", _string), 3: ("name", _string), 4: ("uid", _string),
                           5: ("apiVersion", _string), 6: ("controller", _bool),
                           7: ("blockOwnerDeletion", _bool)}
OBJECT_META: Schema = {
    1: ("name", _string), 2: ("generateName", _string), 3: ("namespace", _string),
    5: ("uid", _string), 6: ("resourceVersion", _string), 7: ("generation", _int),
    8: ("creationTimestamp", _time), 9: ("deletionTimestamp", _time),
    10: ("deletionGracePeriodSeconds", _int),
    11: ("labels",) + _map_of(_string), 12: ("annotations",) + _map_of(_string),
    13: ("ownerReferences",) + _repeated(_sub(OWNER_REFERENCE)),
    14: ("finalizers",) + _repeated(_string),
}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", _int),
    2: ("preconditions", _sub({1: ("uid", _string), 2: ("resourceVersion", _string)})),
    3: ("orphanDependents", _bool), 4: ("propagationPolicy", _string), 5: ("dryRun",) + _repeated(_string),
}
KINDS: dict[str, Schema] = {
    "Namespace": {1: ("metadata", _sub(OBJECT_META)),
                  2: ("spec", _sub({1: ("finalizers",) + _repeated(_string)}))},
    "Secret": {1: ("metadata", _sub(OBJECT_META)), 2: ("data",) + _map_of(_bytes),
               3: ("type", _string), 4: ("stringData",) + _map_of(_string), 5: ("immutable", _bool)},
    "ConfigMap": {1: ("metadata", _sub(OBJECT_META)), 2: ("data",) + _map_of(_string),
                  3: ("binaryData",) + _map_of(_bytes), 4: ("immutable", _bool)},
    "Eviction": {1: ("metadata", _sub(OBJECT_META)), 2: ("deleteOptions", _sub(DELETE_OPTIONS))},
}
UNKNOWN: Schema = {1: ("typeMeta", _sub({1: ("apiVersion", _string), 2: ("kind", _string)})),
                   2: ("raw", bytes)}


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


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    """Decode a message; empty strings and zero numbers are dropped, as JSON's omitempty does."""
    out: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, *shape = schema[number]
        if len(shape) == 2 and shape[0] == _REPEATED:
            out.setdefault(name, []).append(shape[1](raw))
        elif len(shape) == 2 and shape[0] == _MAP:
            entry = shape[1](raw)
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        else:
            value = shape[0](raw)
            if value not in ("", 0, None) or isinstance(value, bool):
                out[name] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object, for the kinds in `KINDS`."""
    if not body.startswith(MAGIC):
        raise unsupported_media_type(CONTENT_TYPE + " (no k8s magic prefix)")
    envelope = _message(body[len(MAGIC):], UNKNOWN)
    type_meta = envelope.get("typeMeta", {})
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise unsupported_media_type(f"{CONTENT_TYPE} for kind {kind!r}")
    obj = {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind}
    obj.update(_message(envelope.get("raw", b""), KINDS[kind]))
    return obj
