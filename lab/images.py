"""The images the lab's registry holds, built here (no image comes from outside): each FROM scratch,
one small file in one gzip layer, a Docker v2 schema 2 manifest, the same bytes on every build.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class Image:
    """An image as a registry stores it: its repository and tag, blobs by digest, and its manifest."""

    repository: str
    tag: str
    blobs: dict[str, bytes]
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest(self.manifest)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hello_world() -> Image:
    """`library/hello-world:latest`: /hello, a line of text, in one layer."""
    return scratch_image("library/hello-world", "latest", "hello",
                         b"Hello from the binderhub-ops lab's registry.\n")


def scratch_image(repository: str, tag: str, path: str, content: bytes) -> Image:
    """An image FROM scratch holding one file (mode 0644, owned by root, time 0)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(content), 0o644, 0
        archive.addfile(info, io.BytesIO(content))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = _json({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/"], "Cmd": [f"/{path}"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(tar.getvalue())]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"binderhub-ops lab: ADD {path} /"}],
    })
    manifest = _json({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": digest(config)},
        "layers": [{"mediaType": LAYER_TYPE, "size": len(layer), "digest": digest(layer)}],
    })
    return Image(repository, tag, {digest(config): config, digest(layer): layer}, manifest)


def _json(value: dict) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()
