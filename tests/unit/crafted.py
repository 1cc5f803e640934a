"""Crafted extension images for the harness's own tests: start from the sample, break one thing.

A ``CraftedImage`` is the sample's release folder as image entries (what cnpg/Dockerfile.ext
would put in the image) plus labels and a platform. Tests change files, modes, the control
file or library bytes, then write the result with the embedded builder (OCI archive or
layout, or a docker archive written here), as a release folder on disk, or read it straight
back into the image model. ``ElfKit`` compiles the small shared objects some defects need
(wrong architecture, a too-new glibc, a missing library, an RPATH, no module magic).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from extharness.errors import HarnessError
from extharness.inspect.model import ExtensionImage, FileType, Platform, normalize_path
from extharness.inspect.oci_reader import read_oci_layout
from extharness.source.oci_writer import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    LayerEntry,
    OCIImageBlobs,
    PlatformContent,
    build_blobs,
    gzip_bytes,
    layer_tar,
    write_oci_archive,
    write_oci_layout,
)
from extharness.source.release_folder import EXT_SUBDIR, LIB_SUBDIR, ReleaseFolder

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "pg_ticker"
LIB = f"/lib/{SAMPLE}.so"
EXT_DIR = "/share/extension"
CONTROL = f"{EXT_DIR}/{SAMPLE}.control"
INSTALL_SQL = f"{EXT_DIR}/{SAMPLE}--1.1.sql"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ATTESTATION = Platform("unknown", "unknown")

#: A pg_ticker profile whose smoke SQL expects a wrong result: a sql-tier run that fails for sure.
FAILING_PROFILE = """
extension = "pg_ticker"
cnpg_name = "pg-ticker"
preload = ["pg_ticker"]
[[smoke]]
sql = "SELECT ticker.add(2, 2)"
expect = [[5]]
"""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# -- raw layers: entries written exactly as given (odd names, whiteouts) -------------------
@dataclass(frozen=True)
class RawEntry:
    """A layer tar member with its name kept verbatim (``../x``, ``/abs``, ``.wh.x``)."""

    name: str
    type: FileType = FileType.FILE
    mode: int = 0o644
    content: bytes = b""
    linkname: str = ""


_RAW_TYPES = {
    FileType.FILE: tarfile.REGTYPE,
    FileType.DIR: tarfile.DIRTYPE,
    FileType.SYMLINK: tarfile.SYMTYPE,
    FileType.HARDLINK: tarfile.LNKTYPE,
    FileType.CHAR: tarfile.CHRTYPE,
    FileType.BLOCK: tarfile.BLKTYPE,
    FileType.FIFO: tarfile.FIFOTYPE,
}


def raw_layer(entries: list[RawEntry]) -> bytes:
    """An uncompressed layer tar holding ``entries`` in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _RAW_TYPES[entry.type]
            info.mode = entry.mode
            info.linkname = entry.linkname
            if entry.type == FileType.FILE:
                info.size = len(entry.content)
                tar.addfile(info, io.BytesIO(entry.content))
            else:
                tar.addfile(info)
    return buf.getvalue()


def layered_blobs(platform: Platform, labels: dict[str, str], layers: list[bytes], user: str = "") -> OCIImageBlobs:
    """A single-platform OCI image with several layers (the embedded builder writes one)."""
    compressed = [gzip_bytes(layer) for layer in layers]
    config = canonical_json(
        {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Labels": labels} | ({"User": user} if user else {}),
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(b), "size": len(b)} for b in compressed],
        }
    )
    blobs = {sha256(b): b for b in (*compressed, config, manifest)}
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(manifest),
        "size": len(manifest),
        "platform": {"os": platform.os, "architecture": platform.architecture},
    }
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]})
    return OCIImageBlobs(blobs=blobs, index=index, digest=sha256(manifest), media_type=OCI_MANIFEST)


def with_attestation(image: OCIImageBlobs) -> OCIImageBlobs:
    """Add a BuildKit-style attestation manifest (platform unknown/unknown) to a multi-arch index."""
    if image.media_type != OCI_INDEX:
        raise ValueError("attestations sit in a multi-platform index; build with two platforms")
    statement = b'{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document"}'
    config = b"{}"
    first = json.loads(image.blobs[image.digest])["manifests"][0]
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(config), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.in-toto+json", "digest": sha256(statement), "size": len(statement)}
            ],
        }
    )
    nested = json.loads(image.blobs[image.digest])
    nested["manifests"].append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": sha256(manifest),
            "size": len(manifest),
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": first["digest"],
            },
        }
    )
    nested_bytes = canonical_json(nested)
    blobs = {k: v for k, v in image.blobs.items() if k != image.digest}
    blobs.update({sha256(b): b for b in (statement, config, manifest, nested_bytes)})
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(nested_bytes), "size": len(nested_bytes)}],
        }
    )
    return OCIImageBlobs(blobs=blobs, index=index, digest=sha256(nested_bytes), media_type=OCI_INDEX)


class MemoryStore:
    """A blob store over an image held in memory (what write_oci_layout would put on disk)."""

    def __init__(self, image: OCIImageBlobs) -> None:
        self.files = {"index.json": image.index}
        self.files.update({f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in image.blobs.items()})

    def read(self, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise HarnessError(f"memory: missing {path}") from None


def read_blobs(image: OCIImageBlobs, reference: str = "crafted") -> ExtensionImage:
    """Read an image straight from memory with the harness's OCI reader."""
    return read_oci_layout(MemoryStore(image), reference, reference)


def write_docker_archive(
    dest: Path,
    platform: Platform,
    labels: dict[str, str],
    layers: list[bytes],
    blobs_style: bool = False,
    repo_tag: str = "localhost/crafted:latest",
) -> Path:
    """A ``docker save`` archive: manifest.json + config + uncompressed layer tars.

    ``blobs_style`` writes Docker 25+'s layout (``blobs/sha256/<hex>`` names), otherwise the
    classic one (``<hex>.json`` and ``<hex>/layer.tar``).
    """
    config = canonical_json(
        {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        }
    )
    config_hex = sha256(config).split(":", 1)[1]
    members: list[tuple[str, bytes]] = []
    layer_names = []
    for layer in layers:
        hexd = sha256(layer).split(":", 1)[1]
        name = f"blobs/sha256/{hexd}" if blobs_style else f"{hexd}/layer.tar"
        layer_names.append(name)
        members.append((name, layer))
    config_name = f"blobs/sha256/{config_hex}" if blobs_style else f"{config_hex}.json"
    members.append((config_name, config))
    manifest = [{"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


# -- the crafted image ---------------------------------------------------------------------
@dataclass
class CraftedImage:
    """An extension image under construction: entries by path, labels, platform, extra layers."""

    entries: dict[str, LayerEntry]
    labels: dict[str, str]
    platform: Platform = AMD64
    later_layers: list[bytes] = field(default_factory=list)  # raw tars applied after the main layer

    @classmethod
    def from_release_folder(cls, root: Path, platform: Platform = AMD64) -> CraftedImage:
        folder = ReleaseFolder.open(root)
        labels = folder.default_labels(None).as_oci()
        return cls({e.path: e for e in folder.entries()}, dict(labels), platform)

    def copy(self) -> CraftedImage:
        return CraftedImage(dict(self.entries), dict(self.labels), self.platform, list(self.later_layers))

    def copy_with_label(self, key: str, value: str) -> CraftedImage:
        other = self.copy()
        other.labels[key] = value
        return other

    # -- files ---------------------------------------------------------------------------
    def content(self, path: str) -> bytes:
        return self.entries[normalize_path(path)].content

    def text(self, path: str) -> str:
        return self.content(path).decode()

    def put(self, path: str, content: bytes | str, mode: int = 0o644) -> CraftedImage:
        data = content.encode() if isinstance(content, str) else content
        path = normalize_path(path)
        self.entries[path] = LayerEntry(path, FileType.FILE, mode, data)
        return self

    def append(self, path: str, text: str) -> CraftedImage:
        entry = self.entries[normalize_path(path)]
        self.entries[entry.path] = replace(entry, content=entry.content + text.encode())
        return self

    def mkdir(self, path: str, mode: int = 0o755) -> CraftedImage:
        path = normalize_path(path)
        self.entries[path] = LayerEntry(path, FileType.DIR, mode)
        return self

    def symlink(self, path: str, target: str) -> CraftedImage:
        path = normalize_path(path)
        self.entries[path] = LayerEntry(path, FileType.SYMLINK, 0o777, linkname=target)
        return self

    def special(self, path: str, ftype: FileType, linkname: str | None = None) -> CraftedImage:
        path = normalize_path(path)
        self.entries[path] = LayerEntry(path, ftype, 0o644, linkname=linkname)
        return self

    def chmod(self, path: str, mode: int) -> CraftedImage:
        path = normalize_path(path)
        entry = self.entries.get(path) or LayerEntry(path, FileType.DIR, mode)  # implicit parent folders
        self.entries[path] = replace(entry, mode=mode)
        return self

    def remove(self, path: str) -> CraftedImage:
        path = normalize_path(path)
        for key in [k for k in self.entries if k == path or k.startswith(path + "/")]:
            del self.entries[key]
        return self

    def patch(self, path: str, offset: int, data: bytes) -> CraftedImage:
        old = self.content(path)
        return self.put(path, old[:offset] + data + old[offset + len(data) :], self.entries[normalize_path(path)].mode)

    # -- the control file ----------------------------------------------------------------
    @property
    def control_text(self) -> str:
        return self.text(CONTROL)

    def set_control(self, text: str, path: str = CONTROL) -> CraftedImage:
        return self.put(path, text)

    def set_param(self, name: str, literal: str) -> CraftedImage:
        """Set ``name = literal`` (``literal`` as written, e.g. ``"'1.1'"``), replacing any old line."""
        lines = [line for line in self.control_text.splitlines() if line.split("=", 1)[0].strip() != name]
        return self.set_control("\n".join(lines + [f"{name} = {literal}"]) + "\n")

    def drop_param(self, name: str) -> CraftedImage:
        lines = [line for line in self.control_text.splitlines() if line.split("=", 1)[0].strip() != name]
        return self.set_control("\n".join(lines) + "\n")

    # -- layers --------------------------------------------------------------------------
    def add_layer(self, entries: list[RawEntry]) -> CraftedImage:
        self.later_layers.append(raw_layer(entries))
        return self

    def layers(self) -> list[bytes]:
        return [layer_tar(self.entries.values()), *self.later_layers]

    # -- outputs -------------------------------------------------------------------------
    def platform_content(self) -> PlatformContent:
        return PlatformContent(self.platform, list(self.entries.values()), dict(self.labels))

    def blobs(self, tag: str | None = None) -> OCIImageBlobs:
        if self.later_layers:
            return layered_blobs(self.platform, dict(self.labels), self.layers())
        return build_blobs([self.platform_content()], tag=tag)

    def read(self) -> ExtensionImage:
        return read_blobs(self.blobs())

    def write_archive(self, dest: Path, tag: str | None = None) -> str:
        return f"oci-archive:{write_oci_archive(self.blobs(tag), dest)}"

    def write_layout(self, dest: Path, tag: str | None = None) -> str:
        return f"oci:{write_oci_layout(self.blobs(tag), dest)}"

    def write_docker_archive(
        self, dest: Path, blobs_style: bool = False, repo_tag: str = "localhost/crafted:latest"
    ) -> str:
        archive = write_docker_archive(dest, self.platform, dict(self.labels), self.layers(), blobs_style, repo_tag)
        return f"docker-archive:{archive}"

    def write_release_folder(self, dest: Path) -> Path:
        """Lay the image out as cnpg/Dockerfile.ext's build context (``dest/artifact/...``).

        Only what the Dockerfile's two COPY lines can produce is expressible: ``/lib/*.so``
        and anything under ``/share/extension``. Modes are set last, deepest first, so a
        crafted unreadable folder does not stop the writing.
        """
        if self.later_layers:
            raise ValueError("a release folder has no layers")
        modes: list[tuple[Path, int]] = []
        for d in (dest / LIB_SUBDIR, dest / EXT_SUBDIR):
            d.mkdir(parents=True, exist_ok=True)
        for path, entry in sorted(self.entries.items()):
            if path in ("/lib", "/share", EXT_DIR):
                if path == EXT_DIR:
                    modes.append((dest / EXT_SUBDIR, entry.mode))
                continue
            if path.startswith("/lib/") and path.count("/") == 2 and path.endswith(".so"):
                target = dest / LIB_SUBDIR / path.rsplit("/", 1)[1]
            elif path.startswith(EXT_DIR + "/"):
                target = dest / EXT_SUBDIR / path[len(EXT_DIR) + 1 :]
            else:
                raise ValueError(f"{path}: a release folder cannot hold it (only /lib/*.so and {EXT_DIR}/...)")
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.type == FileType.FILE:
                target.write_bytes(entry.content)
            elif entry.type == FileType.DIR:
                target.mkdir(exist_ok=True)
            elif entry.type == FileType.SYMLINK:
                os.symlink(entry.linkname or "", target)
                continue
            elif entry.type == FileType.FIFO:
                os.mkfifo(target)
            else:
                raise ValueError(f"{path}: a {entry.type.value} cannot be put in a release folder")
            modes.append((target, entry.mode))
        for target, mode in sorted(modes, key=lambda m: -len(m[0].parts)):
            os.chmod(target, mode)
        return dest


def multi_platform(images: list[CraftedImage], attestation: bool = False, tag: str | None = None) -> OCIImageBlobs:
    """One index over several crafted platform images (optionally with an attestation)."""
    blobs = build_blobs([i.platform_content() for i in images], tag=tag)
    return with_attestation(blobs) if attestation else blobs


def tree_of(root: Path) -> dict[str, tuple[str, int, bytes | str | None]]:
    """(type, mode, content or link) of every path under ``root``, for comparing folders."""
    out: dict[str, tuple[str, int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(info.st_mode):
            out[rel] = ("symlink", 0, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            out[rel] = ("dir", stat.S_IMODE(info.st_mode), None)
        else:
            out[rel] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return out


# -- compiled shared objects ------------------------------------------------------------
MAGIC_C = "const void *Pg_magic_func(void) { static int magic; return &magic; }\n"


class ElfKit:
    """Compiles tiny shared objects (cached per session) for the ELF rules' crafted cases."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._cache: dict[str, bytes] = {}

    def _cc(self, compiler: str) -> str:
        found = shutil.which(compiler)
        if not found:
            hint = "apt-get install gcc-aarch64-linux-gnu" if "aarch64" in compiler else "apt-get install gcc"
            pytest.skip(f"no C compiler {compiler} to craft this ELF file ({hint})")
        return found

    def build(
        self, name: str, source: str, args: list[str] = (), compiler: str = "gcc", output: str | None = None
    ) -> bytes:
        """Compile ``source`` (C) with ``args`` into ``name`` and return the file's bytes."""
        if name in self._cache:
            return self._cache[name]
        cc = self._cc(compiler)
        src = self.workdir / f"{name}.c"
        src.write_text(source)
        out = self.workdir / (output or f"{name}.so")
        proc = subprocess.run(
            [cc, "-o", str(out), str(src), *args], capture_output=True, text=True, cwd=self.workdir, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed for {name}: {proc.stderr.strip()}")
        self._cache[name] = out.read_bytes()
        return self._cache[name]

    def shared(self, name: str, source: str, args: list[str] = (), compiler: str = "gcc") -> bytes:
        return self.build(name, source, ["-shared", "-fPIC", *args], compiler)

    def module(self) -> bytes:
        """A well-formed module: module magic, needs only GLIBC_2.2.5 (x86-64's baseline)."""
        return self.shared("module", MAGIC_C + "int xh_answer(void) { return 42; }\n")

    def threaded_module(self) -> bytes:
        """A module calling pthread_create: on glibc >= 2.34 it needs GLIBC_2.34."""
        return self.shared(
            "threaded",
            MAGIC_C + "#include <pthread.h>\nstatic void *run(void *a) { return a; }\n"
            "int xh_start(void) { pthread_t t; return pthread_create(&t, 0, run, 0); }\n",
        )

    def arm64_module(self) -> bytes:
        """The same module built for arm64 with Debian's cross compiler."""
        return self.shared(
            "module-arm64", MAGIC_C + "int xh_answer(void) { return 42; }\n", compiler="aarch64-linux-gnu-gcc"
        )

    def future_glibc_module(self) -> bytes:
        """A module whose version needs say ``libc.so.6: GLIBC_2.99``: linked against a stub libc.

        The stub has soname libc.so.6 and defines its one symbol at version GLIBC_2.99, which
        is how a library built on a (future) newer glibc records what it needs.
        """
        (self.workdir / "stubc.map").write_text("GLIBC_2.99 { global: xh_future; local: *; };\n")
        self.shared(
            "stubc",
            "int xh_future(void) { return 1; }\n",
            ["-nostdlib", "-Wl,-soname,libc.so.6", "-Wl,--version-script=stubc.map"],
        )
        return self.shared(
            "future",
            MAGIC_C + "extern int xh_future(void);\nint xh_call(void) { return xh_future(); }\n",
            ["-nostdlib", str(self.workdir / "stubc.so")],
        )

    def missing_dependency_module(self) -> bytes:
        """A module with DT_NEEDED libxhmissing.so.1, a library no operand image has."""
        self.shared("xhmissing", "int xh_helper(void) { return 7; }\n", ["-Wl,-soname,libxhmissing.so.1"])
        return self.shared(
            "needs-missing",
            MAGIC_C + "extern int xh_helper(void);\nint xh_call(void) { return xh_helper(); }\n",
            [str(self.workdir / "xhmissing.so")],
        )

    def rpath_module(self, runpath: bool = False, where: str = "/home/build/pg_ticker/lib") -> bytes:
        tags = "--enable-new-dtags" if runpath else "--disable-new-dtags"
        name = f"rpath-{'runpath' if runpath else 'rpath'}-{hashlib.sha1(where.encode()).hexdigest()[:8]}"
        return self.shared(
            name, MAGIC_C + "int xh_answer(void) { return 42; }\n", [f"-Wl,-rpath,{where}", f"-Wl,{tags}"]
        )

    def no_magic_module(self) -> bytes:
        return self.shared("no-magic", "int xh_answer(void) { return 42; }\n")

    def executable(self) -> bytes:
        """A normal (PIE) program: ET_DYN with a PT_INTERP program interpreter."""
        return self.build("program", "int main(void) { return 0; }\n", output="program")


def patch_machine(elf: bytes, machine: int) -> bytes:
    """Set e_machine (offset 18, little-endian) of an ELF file: e.g. 183 = EM_AARCH64."""
    return elf[:18] + machine.to_bytes(2, "little") + elf[20:]


# -- running the layout tier as a user would --------------------------------------------
def run_layout_tier(
    *args: str,
    cache_dir: Path,
    engine: str | None = "none",
    timeout: float = 300,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m pytest -m layout ARGS`` from the repository root, as a subprocess."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "EXTHARNESS_")) and k not in ("COV_CORE_SOURCE",)
    }
    env["EXTHARNESS_CACHE_DIR"] = str(cache_dir)
    if engine is not None:
        env["EXTHARNESS_ENGINE"] = engine
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "pytest", "-m", "layout", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
