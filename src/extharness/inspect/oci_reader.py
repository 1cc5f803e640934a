"""Read OCI image layouts, OCI archives and docker archives into the image model.

Nothing is extracted to disk and nothing from the image is executed: archives are read as
tar streams in memory, every blob's digest is verified, layers are applied in order with
OCI whiteouts, and anything odd about an entry (absolute names, ``..``, duplicates) is kept
as an anomaly for the checks to report.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from extharness.errors import HarnessError
from extharness.inspect.model import (
    ExtensionImage,
    FileTree,
    FileType,
    ImageConfig,
    ImageFile,
    Platform,
    PlatformImage,
    normalize_path,
)
from extharness.runtime.settings import limit_of

#: Refuse JSON documents (index, manifest, config) larger than this.
MAX_JSON_BYTES = 4 << 20
#: Refuse indexes that lead to more manifests than this (nesting multiplies them).
MAX_MANIFESTS = 256


def max_layer_bytes() -> int:
    """Refuse layers that decompress to more than this (bytes): a scratch extension image is MBs."""
    return int(limit_of("EXTHARNESS_MAX_LAYER_BYTES"))


def max_image_bytes() -> int:
    """Refuse images whose layers unpack to more than this in all: one small gzip bomb listed
    thousands of times stays under the layer limit per layer but would take hours."""
    return int(limit_of("EXTHARNESS_MAX_IMAGE_BYTES"))


INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
REF_NAME = "org.opencontainers.image.ref.name"


class BlobStore(Protocol):
    """Where blobs come from: a folder, an archive, a registry."""

    def read(self, path: str) -> bytes: ...


def _one_line(exc: BaseException) -> str:
    """An exception's text as one line."""
    return " ".join(str(exc).split())


_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _what_file_is(path: Path) -> str:
    """What a file that tarfile cannot open is, in a user's words (not tarfile's attempts)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if not head:
        return "an empty file"
    if head[257:262] == b"ustar":
        return "a tar archive that ends early or is damaged"
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            return f"{kind}-compressed data that is not a tar archive or ends early"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file, not a tar archive"
    return "no tar archive header"


def _printable(text: str) -> str:
    """A name from the image as shown in an error: quoted when it holds newlines or other controls."""
    return text if text.isprintable() else repr(text)


def _verify(digest: str, data: bytes, where: str) -> None:
    algo, _, expected = digest.partition(":")
    if algo != "sha256" or len(expected) != 64:
        raise HarnessError(f"{where}: unsupported or malformed digest {digest!r}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise HarnessError(f"{where}: blob {digest} has digest sha256:{actual}; the image is corrupt or was modified")


def blob_path(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if not algo or not hexpart or "/" in digest or ".." in digest:
        raise HarnessError(f"malformed digest {digest!r} in image index or manifest")
    return f"blobs/{algo}/{hexpart}"


@dataclass
class FolderStore:
    root: Path

    def read(self, path: str) -> bytes:
        try:
            target = (self.root / path).resolve()
        except (OSError, ValueError):  # a NUL byte, a name too long
            raise HarnessError(f"{self.root}: entry {path!r} is not a usable file name") from None
        if not str(target).startswith(str(self.root.resolve()) + os.sep):
            raise HarnessError(f"{self.root}: entry {path!r} points outside the image folder")
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise HarnessError(f"{self.root}: missing {_printable(path)} (an incomplete OCI layout)") from None
        except OSError as exc:
            raise HarnessError(f"{self.root}: cannot read {_printable(path)}: {exc.strerror}") from None


@dataclass
class ArchiveStore:
    """Members of a tar archive, read lazily; member names are normalized, never extracted."""

    path: Path
    _tar: tarfile.TarFile | None = None
    _members: dict[str, tarfile.TarInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self._tar = tarfile.open(self.path, mode="r:*")
            for member in self._tar.getmembers():
                self._members[normalize_path(member.name).lstrip("/")] = member
        except FileNotFoundError:
            raise HarnessError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise HarnessError(f"{self.path}: is a folder, not an archive (use oci:{self.path})") from None
        # ValueError/OverflowError: tarfile on member sizes past 2**63; MemoryError: tarfile reads
        # a pax or GNU long-name header's declared size (say 25 GB) at once.
        except (
            tarfile.TarError,
            EOFError,
            OSError,
            zlib.error,
            lzma.LZMAError,
            ValueError,
            OverflowError,
            MemoryError,
        ):
            raise HarnessError(
                f"{self.path}: not an image archive ({_what_file_is(self.path)}); oci-archive: and docker-archive: "
                "want a tar file as written by podman save, docker save or skopeo copy"
            ) from None

    def names(self) -> set[str]:
        return set(self._members)

    def read(self, path: str) -> bytes:
        member = self._members.get(normalize_path(path).lstrip("/"))
        if member is None or not member.isfile():
            raise HarnessError(f"{self.path}: missing {_printable(path)} (a truncated or incomplete archive)")
        if member.size > max_layer_bytes():
            raise HarnessError(f"{self.path}: {_printable(path)} declares {member.size} bytes, over the limit")
        assert self._tar is not None
        try:
            handle = self._tar.extractfile(member)
            data = handle.read() if handle else b""
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError, OverflowError):
            raise HarnessError(
                f"{self.path}: cannot read {_printable(path)}: the archive ends early or is damaged"
            ) from None
        if len(data) != member.size:
            raise HarnessError(f"{self.path}: {_printable(path)} is truncated ({len(data)} of {member.size} bytes)")
        return data

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def _load_json(data: bytes, where: str) -> Any:
    if len(data) > MAX_JSON_BYTES:
        raise HarnessError(f"{where}: JSON document of {len(data)} bytes is too large")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{where}: not valid JSON ({_one_line(exc)})") from None


def _decompress(data: bytes, where: str) -> bytes:
    try:
        if data[:2] == b"\x1f\x8b":
            out = gzip.GzipFile(fileobj=io.BytesIO(data)).read(max_layer_bytes() + 1)
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            try:
                import zstandard
            except ImportError:
                raise HarnessError(f"{where}: zstd layer; pip install zstandard to read it") from None
            out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read(max_layer_bytes() + 1)
        else:
            out = data
    except (OSError, EOFError, zlib.error):
        raise HarnessError(f"{where}: layer cannot be decompressed (its data ends early or is damaged)") from None
    if len(out) > max_layer_bytes():
        raise HarnessError(f"{where}: layer decompresses to more than {max_layer_bytes()} bytes")
    return out


_TAR_TYPES: dict[bytes, FileType] = {
    tarfile.REGTYPE: FileType.FILE,
    tarfile.AREGTYPE: FileType.FILE,
    tarfile.CONTTYPE: FileType.FILE,
    tarfile.DIRTYPE: FileType.DIR,
    tarfile.SYMTYPE: FileType.SYMLINK,
    tarfile.LNKTYPE: FileType.HARDLINK,
    tarfile.CHRTYPE: FileType.CHAR,
    tarfile.BLKTYPE: FileType.BLOCK,
    tarfile.FIFOTYPE: FileType.FIFO,
}


def _count_unpacked(total: int, where: str) -> int:
    if total > max_image_bytes():
        raise HarnessError(
            f"{where}: layers unpack to more than {max_image_bytes()} bytes in all "
            "(EXTHARNESS_MAX_IMAGE_BYTES); is one layer listed over and over?"
        )
    return total


def apply_layer(tree: FileTree, layer: bytes, where: str, anomalies: list[str]) -> None:
    """Apply one uncompressed layer tar to ``tree`` with OCI whiteout semantics."""
    try:
        archive = tarfile.open(fileobj=io.BytesIO(layer), mode="r:")
        members = archive.getmembers()
    except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError):  # sizes past 2**63
        raise HarnessError(f"{where}: layer is not a valid tar archive (it ends early or is damaged)") from None
    seen: set[str] = set()
    for member in members:
        raw = member.name
        if raw.startswith("/") or ".." in raw.replace("\\", "/").split("/"):
            anomalies.append(f"layer entry {raw!r} has an absolute or '..' path (read as {normalize_path(raw)})")
        path = normalize_path(raw)
        if path in seen and path != "/":
            anomalies.append(f"layer entry {path} appears more than once in one layer")
        seen.add(path)
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base == ".wh..wh..opq":
            prefix = parent.rstrip("/") + "/"
            for key in [k for k in tree.entries if k.startswith(prefix)]:
                del tree.entries[key]
            continue
        if base.startswith(".wh."):
            victim = posixpath.join(parent, base[4:])
            for key in [k for k in tree.entries if k == victim or k.startswith(victim + "/")]:
                del tree.entries[key]
            continue
        ftype = _TAR_TYPES.get(member.type)
        if ftype is None:
            anomalies.append(f"layer entry {path} has unsupported tar type {member.type!r}")
            continue
        content = None
        if ftype == FileType.FILE:
            if member.size > len(layer):
                raise HarnessError(
                    f"{where}: {_printable(path)} declares {member.size} bytes, more than its whole layer"
                )
            try:
                handle = archive.extractfile(member)
                content = handle.read() if handle else b""
            except (tarfile.TarError, EOFError, OSError):
                raise HarnessError(
                    f"{where}: cannot read {_printable(path)} from layer (the layer ends early or is damaged)"
                ) from None
            if len(content) != member.size:
                raise HarnessError(f"{where}: {_printable(path)} is truncated in its layer")
        existing = tree.entries.get(path)
        if ftype != FileType.DIR and existing is not None and existing.type == FileType.DIR:
            # A non-directory replaces a directory and everything below it.
            for key in [k for k in tree.entries if k.startswith(path + "/")]:
                del tree.entries[key]
        linkname = member.linkname if ftype in (FileType.SYMLINK, FileType.HARDLINK) else None
        tree.add(
            ImageFile(
                path=path,
                type=ftype,
                mode=member.mode & 0o7777,
                uid=member.uid,
                gid=member.gid,
                size=len(content) if content is not None else 0,
                linkname=linkname,
                content=content,
            )
        )


def _string_map(value: Any) -> dict[str, str]:
    """A JSON object of labels or annotations as strings; anything else as empty."""
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _media_type(doc: dict[str, Any]) -> str | None:
    media = doc.get("mediaType")
    return media if isinstance(media, str) else None


def _platform(doc: dict[str, Any]) -> Platform | None:
    """os/architecture[/variant] of an image config or a descriptor's platform, as strings."""
    if doc.get("os") and doc.get("architecture"):
        variant = doc.get("variant")
        return Platform(str(doc["os"]), str(doc["architecture"]), str(variant) if variant else None)
    return None


def _config_from_json(doc: Any, where: str) -> tuple[ImageConfig, Platform | None]:
    if not isinstance(doc, dict):
        raise HarnessError(f"{where}: image config is not a JSON object")
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise HarnessError(f"{where}: image config field 'config' is not an object")

    def strings(value: Any) -> tuple[str, ...]:
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    config = ImageConfig(
        labels=_string_map(cfg.get("Labels")),
        user=str(cfg.get("User") or ""),
        env=strings(cfg.get("Env")),
        entrypoint=strings(cfg.get("Entrypoint")),
        cmd=strings(cfg.get("Cmd")),
        created=str(doc["created"]) if doc.get("created") else None,
    )
    return config, _platform(doc)


def _platform_of(descriptor: dict[str, Any]) -> Platform | None:
    p = descriptor.get("platform")
    return _platform(p) if isinstance(p, dict) else None


def _is_attestation(descriptor: dict[str, Any]) -> bool:
    platform = _platform_of(descriptor)
    annotations = _string_map(descriptor.get("annotations"))
    return bool(
        (platform is not None and platform.is_attestation)
        or annotations.get("vnd.docker.reference.type") == "attestation-manifest"
    )


@dataclass
class OCIReader:
    """Walks an index (or a single manifest) in a blob store into an ExtensionImage."""

    store: BlobStore
    where: str
    read_blob: Callable[[str], bytes] | None = None
    unpacked: int = 0  # bytes of all layers so far, against max_image_bytes()
    manifests_read: int = 0  # against MAX_MANIFESTS

    def blob(self, digest: str) -> bytes:
        data = self.read_blob(digest) if self.read_blob else self.store.read(blob_path(digest))
        _verify(digest, data, self.where)
        return data

    def image_from_manifest(self, manifest: dict[str, Any], digest: str, hint: Platform | None) -> PlatformImage:
        config_desc = manifest.get("config")
        layers = manifest.get("layers")
        if not isinstance(config_desc, dict) or not isinstance(layers, list):
            raise HarnessError(f"{self.where}: manifest {digest or ''} has no config or layers")
        config, platform = _config_from_json(
            _load_json(self.blob(str(config_desc.get("digest"))), self.where), self.where
        )
        platform = hint or platform
        if platform is None:
            raise HarnessError(f"{self.where}: manifest {digest} names no platform (os/architecture)")
        tree = FileTree()
        tree.add(ImageFile(path="/", type=FileType.DIR, mode=0o755))
        anomalies: list[str] = []
        compressed = 0
        for layer in layers:
            if not isinstance(layer, dict) or "digest" not in layer:
                raise HarnessError(f"{self.where}: manifest {digest} has a malformed layer descriptor")
            data = self.blob(str(layer["digest"]))
            compressed += len(data)
            unpacked = _decompress(data, self.where)
            self.unpacked = _count_unpacked(self.unpacked + len(unpacked), self.where)
            apply_layer(tree, unpacked, self.where, anomalies)
        return PlatformImage(
            platform=platform,
            config=config,
            files=tree,
            manifest_digest=digest,
            compressed_size=compressed,
            anomalies=anomalies,
        )

    def walk(
        self, doc: dict[str, Any], digest: str | None, out: ExtensionImage, hint: Platform | None = None, depth: int = 0
    ) -> None:
        if depth > 4:
            raise HarnessError(f"{self.where}: image indexes nest too deeply")
        media = _media_type(doc)
        if "manifests" in doc or media in INDEX_TYPES:
            manifests = doc.get("manifests")
            if not isinstance(manifests, list):
                raise HarnessError(f"{self.where}: index has no 'manifests' list")
            for desc in manifests:
                if not isinstance(desc, dict) or "digest" not in desc:
                    raise HarnessError(f"{self.where}: index has a malformed manifest descriptor")
                if _is_attestation(desc):
                    out.skipped.append(f"{desc['digest']}: attestation manifest (unknown/unknown)")
                    continue
                self.manifests_read += 1
                if self.manifests_read > MAX_MANIFESTS:
                    raise HarnessError(f"{self.where}: the index leads to more than {MAX_MANIFESTS} manifests")
                child = _load_json(self.blob(str(desc["digest"])), self.where)
                if not isinstance(child, dict):
                    raise HarnessError(f"{self.where}: manifest {desc['digest']} is not a JSON object")
                self.walk(child, str(desc["digest"]), out, _platform_of(desc) or hint, depth + 1)
            return
        if "layers" in doc or media in MANIFEST_TYPES:
            out.images.append(self.image_from_manifest(doc, digest or "", hint))
            return
        raise HarnessError(f"{self.where}: document is neither an image index nor a manifest")


def _select_tag(index: dict[str, Any], tag: str | None, where: str) -> dict[str, Any]:
    """Keep only the index entries named ``tag`` (OCI layouts can hold several images)."""
    if not tag:
        return index
    listed = index.get("manifests", [])
    manifests = [m for m in listed if _string_map(m.get("annotations")).get(REF_NAME) == tag]
    if not manifests:
        names = sorted({_printable(_string_map(m.get("annotations")).get(REF_NAME, "?")) for m in listed})
        raise HarnessError(f"{where}: no image tagged {tag!r} (tags present: {', '.join(names) or 'none'})")
    return {**index, "manifests": manifests}


def _index_digest(index: dict[str, Any], store: BlobStore) -> str | None:
    """The digest users would pull: the single top-level entry of index.json, if any."""
    manifests = index.get("manifests") or []
    if len(manifests) == 1 and isinstance(manifests[0], dict):
        return str(manifests[0].get("digest"))
    return None


def read_oci_layout(store: BlobStore, where: str, reference: str, tag: str | None = None) -> ExtensionImage:
    index = _load_json(store.read("index.json"), where)
    if not isinstance(index, dict):
        raise HarnessError(f"{where}: index.json is not a JSON object")
    listed = index.get("manifests", [])
    if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
        raise HarnessError(f"{where}: index.json 'manifests' is not a list of descriptors")
    index = _select_tag(index, tag, where)
    out = ExtensionImage(reference=reference, images=[], index_digest=_index_digest(index, store))
    reader = OCIReader(store, where)
    reader.walk(index, None, out)
    if len(index.get("manifests") or []) == 1:
        top = index["manifests"][0]
        if _media_type(top) in INDEX_TYPES:
            nested = _load_json(reader.blob(str(top.get("digest"))), where)
            out.annotations = _string_map(nested.get("annotations")) if isinstance(nested, dict) else {}
        else:
            out.annotations = _string_map(top.get("annotations"))
    if not out.images:
        raise HarnessError(f"{where}: the image holds no runnable platform (only attestations or nothing)")
    return out


#: Uncompressed layers at least this large are deflated in 1 MiB pieces on threads (see GzipSize).
_PIECE = 1 << 20
_WINDOW = 32 << 10  # deflate's window: a piece primed with the 32 KiB before it compresses as in one stream


class GzipSize:
    """The gzip size (level 6, what ``docker push`` stores) of an uncompressed layer, worked out
    while the caller goes on: a large layer is deflated in 1 MiB pieces on threads, each primed with
    the 32 KiB before it (pigz's method; zlib lets go of the GIL), which comes within about 0.1% of
    one stream's size and uses every core. A small layer, or one core: one ``zlib.compress``."""

    def __init__(self, data: bytes) -> None:
        self._data, self._size, self._pool, self._pieces = data, None, None, []
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if len(data) < 2 * _PIECE or cores < 2:
            return
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=min(cores, 8), thread_name_prefix="extharness-gzip")
        view = memoryview(data)
        starts = range(0, len(data), _PIECE)
        self._pieces = [
            self._pool.submit(_deflated_piece, view, start, start + _PIECE >= len(data)) for start in starts
        ]

    def result(self) -> int:
        if self._size is None:
            if self._pool is None:
                self._size = len(zlib.compress(self._data, 6))
            else:
                self._size = 18 + sum(piece.result() for piece in self._pieces)  # + gzip header and trailer
                self._pool.shutdown()
        return self._size


def _deflated_piece(view: memoryview, start: int, last: bool) -> int:
    primed = {"zdict": bytes(view[start - _WINDOW : start])} if start >= _WINDOW else {}
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, **primed)
    size = len(deflate.compress(view[start : start + _PIECE]))
    return size + len(deflate.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))


def read_docker_archive(store: ArchiveStore, where: str, reference: str) -> ExtensionImage:
    manifest = _load_json(store.read("manifest.json"), where)
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise HarnessError(f"{where}: manifest.json is not a docker-archive manifest list")
    entry = manifest[0]
    config_path = str(entry.get("Config", ""))
    layers = entry.get("Layers")
    if not config_path or not isinstance(layers, list):
        raise HarnessError(f"{where}: manifest.json entry has no Config or Layers")
    config_bytes = store.read(config_path)
    config, platform = _config_from_json(_load_json(config_bytes, where), where)
    if platform is None:
        raise HarnessError(f"{where}: image config names no os/architecture")
    tree = FileTree()
    tree.add(ImageFile(path="/", type=FileType.DIR, mode=0o755))
    anomalies: list[str] = []
    compressed = total = 0
    uncompressed_layers: list[str] = []
    for layer_path in layers:
        data = store.read(str(layer_path))
        if str(layer_path).startswith("blobs/sha256/"):
            _verify("sha256:" + str(layer_path).rsplit("/", 1)[-1], data, where)
        unpacked = _decompress(data, where)
        total = _count_unpacked(total + len(unpacked), where)
        apply_layer(tree, unpacked, where, anomalies)
        if unpacked is data:
            # docker save writes layers uncompressed: a registry stores them gzipped. Counted here
            # is deflate's upper bound; the gzip size itself only when the size rule needs it.
            uncompressed_layers.append(str(layer_path))
            compressed += gzip_bound(len(data))
        else:
            compressed += len(data)
    image = PlatformImage(
        platform=platform,
        config=config,
        files=tree,
        manifest_digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
        compressed_size=compressed,
        anomalies=anomalies,
        estimate_compressed=_gzip_estimate(store.path, layers, set(uncompressed_layers))
        if uncompressed_layers
        else None,
    )
    return ExtensionImage(reference=reference, images=[image])


def gzip_bound(size: int) -> int:
    """The most gzip can make of ``size`` bytes: zlib's compressBound (deflate falls back to
    stored blocks) plus the gzip header and trailer."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13 + 18


def _gzip_estimate(path: Path, layers: list, uncompressed: set[str]) -> Callable[[], int]:
    """What a registry would store of the docker archive at ``path``: its uncompressed layers
    gzipped (read from the archive again, one at a time), the others as they are."""

    def estimate() -> int:
        store = ArchiveStore(path)
        try:
            size = 0
            for layer_path in map(str, layers):
                data = store.read(layer_path)
                size += GzipSize(data).result() if layer_path in uncompressed else len(data)
            return size
        finally:
            store.close()

    return estimate


def read_image(reference: str) -> ExtensionImage:
    """Read ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]`` or ``docker-archive:FILE``."""
    scheme, sep, rest = reference.partition(":")
    if not sep or scheme not in ("oci", "oci-archive", "docker-archive"):
        raise HarnessError(
            f"{reference!r} is not an image reader reference (oci:DIR, oci-archive:FILE, docker-archive:FILE)"
        )
    path_text, tag = rest, None
    if not Path(path_text).exists() and ":" in path_text:
        path_text, _, tag = path_text.rpartition(":")
    path = Path(path_text)
    where = str(path)
    if not path.exists():
        raise HarnessError(f"{_printable(str(path))}: no such file or folder")
    if scheme == "oci":
        if not path.is_dir():
            raise HarnessError(f"{path}: not a folder (use oci-archive:{path} for a tar archive)")
        if not (path / "index.json").exists():
            raise HarnessError(f"{path}: not an OCI image layout (no index.json)")
        return read_oci_layout(FolderStore(path), where, reference, tag)
    if path.is_dir():
        raise HarnessError(f"{path}: is a folder; use oci:{path} for an OCI layout folder")
    store = ArchiveStore(path)
    try:
        names = store.names()
        if scheme == "oci-archive":
            if "index.json" not in names:
                hint = " (it looks like a docker archive: use docker-archive:)" if "manifest.json" in names else ""
                raise HarnessError(f"{path}: not an OCI archive, no index.json{hint}")
            return read_oci_layout(store, where, reference, tag)
        if "manifest.json" not in names:
            hint = " (it looks like an OCI archive: use oci-archive:)" if "index.json" in names else ""
            raise HarnessError(f"{path}: not a docker archive, no manifest.json{hint}")
        return read_docker_archive(store, where, reference)
    finally:
        store.close()
