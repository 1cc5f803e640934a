"""The embedded builder: write a ``FROM scratch`` image as an OCI layout or archive.

Deterministic by construction, so the same inputs always give the same digest: entries are
sorted, owned by root (0:0, no user names), stamped with one fixed time
(``SOURCE_DATE_EPOCH``, default 0), gzip headers carry no name or time, and every JSON
document is serialised with sorted keys.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from extharness.errors import HarnessError
from extharness.inspect.model import FileType, Platform, normalize_path

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _epoch() -> int:
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        raise HarnessError("SOURCE_DATE_EPOCH must be a whole number of seconds") from None


@dataclass(frozen=True)
class LayerEntry:
    """A file, folder or symlink to place in the image."""

    path: str
    type: FileType = FileType.FILE
    mode: int = 0o644
    content: bytes = b""
    linkname: str | None = None


@dataclass
class PlatformContent:
    platform: Platform
    entries: list[LayerEntry]
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str = ""


def _json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _with_parents(entries: Iterable[LayerEntry]) -> list[LayerEntry]:
    """Add every missing parent folder (0755), as ``COPY`` does, and sort by path."""
    by_path: dict[str, LayerEntry] = {}
    for entry in entries:
        path = normalize_path(entry.path)
        if path == "/":
            continue
        by_path[path] = LayerEntry(path, entry.type, entry.mode, entry.content, entry.linkname)
    for path in list(by_path):
        parent = os.path.dirname(path)
        while parent not in ("/", ""):
            by_path.setdefault(parent, LayerEntry(parent, FileType.DIR, 0o755))
            parent = os.path.dirname(parent)
    return [by_path[p] for p in sorted(by_path)]


def layer_tar(entries: Iterable[LayerEntry]) -> bytes:
    """An uncompressed, deterministic layer tar."""
    mtime = _epoch()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in _with_parents(entries):
            info = tarfile.TarInfo(entry.path.lstrip("/"))
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = entry.mode & 0o7777
            if entry.type == FileType.DIR:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.type == FileType.SYMLINK:
                info.type = tarfile.SYMTYPE
                info.linkname = entry.linkname or ""
                tar.addfile(info)
            elif entry.type == FileType.FILE:
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
            else:  # devices and fifos exist only in crafted test images
                info.type = {
                    FileType.CHAR: tarfile.CHRTYPE,
                    FileType.BLOCK: tarfile.BLKTYPE,
                    FileType.FIFO: tarfile.FIFOTYPE,
                    FileType.HARDLINK: tarfile.LNKTYPE,
                }[entry.type]
                info.linkname = entry.linkname or ""
                tar.addfile(info)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


@dataclass
class OCIImageBlobs:
    """All blobs of an image plus its ``index.json``; ``digest`` is what a registry serves."""

    blobs: dict[str, bytes]
    index: bytes
    digest: str
    media_type: str


def build_blobs(platforms: list[PlatformContent], tag: str | None = None) -> OCIImageBlobs:
    if not platforms:
        raise HarnessError("an image needs at least one platform")
    created = datetime.fromtimestamp(_epoch(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    blobs: dict[str, bytes] = {}
    descriptors = []
    for content in platforms:
        raw = layer_tar(content.entries)
        layer = gzip_bytes(raw)
        config_doc: dict[str, object] = {
            "architecture": content.platform.architecture,
            "os": content.platform.os,
            "created": created,
            "config": {"Labels": dict(sorted(content.labels.items()))}
            | ({"User": content.user} if content.user else {}),
            "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
            "history": [{"created": created, "created_by": "extharness embedded builder"}],
        }
        if content.platform.variant:
            config_doc["variant"] = content.platform.variant
        config = _json(config_doc)
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _digest(layer), "size": len(layer)}],
                "annotations": {"org.opencontainers.image.created": created},
            }
        )
        for blob in (layer, config, manifest):
            blobs[_digest(blob)] = blob
        platform_doc = {"os": content.platform.os, "architecture": content.platform.architecture}
        if content.platform.variant:
            platform_doc["variant"] = content.platform.variant
        descriptors.append(
            {"mediaType": OCI_MANIFEST, "digest": _digest(manifest), "size": len(manifest), "platform": platform_doc}
        )
    annotations = {"org.opencontainers.image.ref.name": tag} if tag else {}
    if len(descriptors) == 1:
        top = dict(descriptors[0], **({"annotations": annotations} if annotations else {}))
        media, digest = OCI_MANIFEST, descriptors[0]["digest"]
    else:
        labels = platforms[0].labels
        nested = _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": descriptors,
                "annotations": {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")},
            }
        )
        blobs[_digest(nested)] = nested
        media, digest = OCI_INDEX, _digest(nested)
        top = {"mediaType": OCI_INDEX, "digest": digest, "size": len(nested)}
        if annotations:
            top["annotations"] = annotations
    index = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]})
    return OCIImageBlobs(blobs=blobs, index=index, digest=str(digest), media_type=media)


def _layout_members(image: OCIImageBlobs) -> list[tuple[str, bytes]]:
    members = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", image.index)]
    members += [(f"blobs/sha256/{d.split(':', 1)[1]}", data) for d, data in sorted(image.blobs.items())]
    return members


def write_oci_archive(image: OCIImageBlobs, dest: Path) -> Path:
    """Write a deterministic OCI archive (a tar of an OCI layout), atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for folder in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(info)
            for name, data in _layout_members(image):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def write_oci_layout(image: OCIImageBlobs, dest: Path) -> Path:
    """Write an OCI layout folder (what ``oci:DIR`` reads and skopeo copies)."""
    for name, data in _layout_members(image):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest
