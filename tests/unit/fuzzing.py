"""Building blocks of the fuzz tests: the fuzz profile, valid images to mutate, and guards.

The profile's seed and budget come from the environment (defaults: seed 20250518, 60 examples
per test, 2 s per example), so CI runs the same inputs every time and a failure reproduces by
running again with the same values::

    EXTHARNESS_FUZZ_SEED=20250518 EXTHARNESS_FUZZ_EXAMPLES=60 pytest tests/unit/test_fuzz_inputs.py

A failing example also prints a ``@reproduce_failure(...)`` blob that replays just that input.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, seed, settings

from extharness.inspect.model import FileType, Platform
from extharness.source.oci_writer import LayerEntry, gzip_bytes, layer_tar

# -- the fuzz profile --------------------------------------------------------------------------

#: Seed of every fuzz test; a failure names it, and re-running with it replays the same inputs.
FUZZ_SEED = int(os.environ.get("EXTHARNESS_FUZZ_SEED", "20250518"))
#: Examples per fuzz test: the CI budget (the whole file stays well under 60 s on 2 cores).
FUZZ_EXAMPLES = int(os.environ.get("EXTHARNESS_FUZZ_EXAMPLES", "60"))
#: Wall-clock limit of one example: a slower example fails as a hang.
FUZZ_DEADLINE_MS = int(os.environ.get("EXTHARNESS_FUZZ_DEADLINE_MS", "2000"))

settings.register_profile(
    "extharness-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(milliseconds=FUZZ_DEADLINE_MS),
    derandomize=False,  # the explicit seed below decides the inputs instead
    database=None,  # inputs come from the seed alone, never from a local example database
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
FUZZ_SETTINGS = settings.get_profile("extharness-fuzz")


def fuzz(test: Callable[..., None]) -> Callable[..., None]:
    """Apply the fuzz profile and the fixed seed (put it above ``@given``)."""
    return seed(FUZZ_SEED)(FUZZ_SETTINGS(test))


# -- a hard stop for examples that never return ---------------------------------------------------


class ExampleHung(Exception):
    """An example ran past its hard time limit: the code under test loops."""


@contextlib.contextmanager
def hard_time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM), restoring any timer set before (pytest-timeout).

    Hypothesis's deadline only judges an example once it returns; this turns an endless loop
    into a failing, shrinkable example instead of a stuck CI job.
    """
    if not hasattr(signal, "setitimer") or signal.getsignal(signal.SIGALRM) is None:
        yield
        return
    try:
        previous = signal.signal(signal.SIGALRM, _raise_hung)
    except ValueError:  # not the main thread: rely on the deadline and pytest-timeout
        yield
        return
    started = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if old_delay:
        signal.setitimer(signal.ITIMER_REAL, min(seconds, old_delay))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay:
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - started), 0.001), old_interval)


def _raise_hung(signum: int, frame: object) -> None:
    raise ExampleHung("the example did not finish within its hard time limit")


# -- guards: nothing written, nothing executed ----------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@dataclass
class SideEffects:
    """What the code under test tried to do to the host; each attempt is refused and recorded."""

    attempts: list[str] = field(default_factory=list)

    def refuse(self, what: str) -> None:
        self.attempts.append(what)
        raise PermissionError(f"fuzz guard: {what} is not allowed while reading an image")


@contextlib.contextmanager
def no_side_effects(monkeypatch_context: Callable[[], Any]) -> Iterator[SideEffects]:
    """Refuse (and record) file writes, folder/link changes, tar extraction and process starts.

    ``monkeypatch_context`` is ``pytest.MonkeyPatch.context``. The refusal raises, but code
    under test may swallow exceptions, so callers assert on ``attempts`` being empty.
    """
    effects = SideEffects()
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            effects.refuse(f"open({file!r}, {mode!r})")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & _WRITE_FLAGS:
            effects.refuse(f"os.open({path!r}, {flags:#o})")
        return real_os_open(path, flags, *args, **kwargs)

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            effects.refuse(f"{what}{args!r}")

        return refused

    with monkeypatch_context() as patch:
        patch.setattr(builtins, "open", guarded_open)
        patch.setattr(io, "open", guarded_open)
        patch.setattr(os, "open", guarded_os_open)
        for name in (
            "mkdir",
            "makedirs",
            "symlink",
            "link",
            "rename",
            "replace",
            "remove",
            "unlink",
            "rmdir",
            "mkfifo",
            "mknod",
            "chmod",
            "chown",
            "truncate",
            "utime",
        ):
            if hasattr(os, name):
                patch.setattr(os, name, refuse(f"os.{name}"))
        for name in ("extract", "extractall", "makefile", "makedir", "makelink", "makefifo", "makedev"):
            patch.setattr(tarfile.TarFile, name, refuse(f"TarFile.{name}"))
        # Nothing from the image may run on the host: no process, no exec, no dlopen.
        patch.setattr(subprocess.Popen, "_execute_child", refuse("subprocess.Popen"))
        for name in (
            "system",
            "popen",
            "fork",
            "forkpty",
            "posix_spawn",
            "posix_spawnp",
            "execv",
            "execve",
            "execvp",
            "execvpe",
            "execl",
            "execle",
            "execlp",
            "execlpe",
            "spawnv",
            "spawnve",
            "spawnvp",
            "spawnvpe",
            "spawnl",
            "spawnle",
            "spawnlp",
            "spawnlpe",
        ):
            if hasattr(os, name):
                patch.setattr(os, name, refuse(f"os.{name}"))
        patch.setattr(ctypes.CDLL, "__init__", refuse("ctypes.CDLL"))
        yield effects


def snapshot(*folders: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``folders`` with its (mode, size, mtime_ns): compare before and after."""
    seen: dict[str, tuple[int, int, int]] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in [folder, *folder.rglob("*")]:
            info = path.lstat()
            seen[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return seen


# -- valid images to start from -------------------------------------------------------------------

EXT = "fuzzext"
PLATFORM = Platform("linux", "amd64")
LABELS = {
    "org.opencontainers.image.title": EXT,
    "org.opencontainers.image.description": "fuzz input",
    "org.opencontainers.image.version": "1.1",
    "org.opencontainers.image.licenses": "PostgreSQL",
    "org.opencontainers.image.source": "urn:extharness:fuzz",
}
CONTROL = b"comment = 'fuzz'\ndefault_version = '1.1'\nmodule_pathname = 'fuzzext'\nrelocatable = false\n"


def extension_entries(library: bytes, extra: list[LayerEntry] | None = None) -> list[LayerEntry]:
    """A small but complete extension: control file, install and update scripts, a library."""
    return [
        LayerEntry(f"/share/extension/{EXT}.control", content=CONTROL),
        LayerEntry(
            f"/share/extension/{EXT}--1.0.sql",
            content=b"CREATE FUNCTION f() RETURNS int AS 'MODULE_PATHNAME' LANGUAGE C;\n",
        ),
        LayerEntry(f"/share/extension/{EXT}--1.0--1.1.sql", content=b"LOAD '$libdir/fuzzext';\n"),
        LayerEntry(f"/lib/{EXT}.so", mode=0o755, content=library),
        *(extra or []),
    ]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class OciDocuments:
    """An OCI image as editable documents; ``members()`` serialises it with matching digests.

    Editing a document (``config``, ``manifest``, ``index``, ``nested``) then calling
    ``members()`` gives an archive whose digests are right, so a fuzzed field reaches the code
    that interprets it instead of stopping at digest verification.
    """

    layers: list[bytes]
    config: Any
    manifest: Any = None
    index: Any = None
    nested: Any = None  # a nested image index (multi-platform), or None for a single manifest
    extra_blobs: list[bytes] = field(default_factory=list)

    @classmethod
    def single(cls, entries: list[LayerEntry], compress: bool = True) -> OciDocuments:
        raw = layer_tar(entries)
        layer = gzip_bytes(raw) if compress else raw
        config = {
            "architecture": PLATFORM.architecture,
            "os": PLATFORM.os,
            "created": "1970-01-01T00:00:00Z",
            "config": {"Labels": dict(LABELS)},
            "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]},
        }
        media = "application/vnd.oci.image.layer.v1.tar+gzip" if compress else "application/vnd.oci.image.layer.v1.tar"
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "", "size": 0},
            "layers": [{"mediaType": media, "digest": "", "size": 0}],
        }
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "",
                    "size": 0,
                    "platform": {"os": PLATFORM.os, "architecture": PLATFORM.architecture},
                    "annotations": {"org.opencontainers.image.ref.name": "1.1"},
                }
            ],
        }
        return cls(layers=[layer], config=config, manifest=manifest, index=index)

    def members(self, fix_digests: bool = True) -> list[tuple[str, bytes]]:
        """Archive members (name, bytes) of the OCI layout: oci-layout, index.json, blobs."""
        blobs = [*self.layers, *self.extra_blobs]
        config = self._dump(self.config)
        blobs.append(config)
        manifest = self.manifest
        if fix_digests and isinstance(manifest, dict):
            if isinstance(manifest.get("config"), dict):
                manifest["config"].update(digest=sha256(config), size=len(config))
            if isinstance(manifest.get("layers"), list):
                for descriptor, layer in zip(manifest["layers"], self.layers):
                    if isinstance(descriptor, dict):
                        descriptor.update(digest=sha256(layer), size=len(layer))
        manifest_bytes = self._dump(manifest)
        blobs.append(manifest_bytes)
        top_digest, top_size = sha256(manifest_bytes), len(manifest_bytes)
        if self.nested is not None:
            nested = self.nested
            if fix_digests and isinstance(nested, dict) and isinstance(nested.get("manifests"), list):
                for descriptor in nested["manifests"]:
                    if isinstance(descriptor, dict) and descriptor.get("digest") in ("", None):
                        descriptor.update(digest=top_digest, size=top_size)
            nested_bytes = self._dump(nested)
            blobs.append(nested_bytes)
            top_digest, top_size = sha256(nested_bytes), len(nested_bytes)
        index = self.index
        if fix_digests and isinstance(index, dict) and isinstance(index.get("manifests"), list):
            for descriptor in index["manifests"][:1]:
                if isinstance(descriptor, dict):
                    descriptor.update(digest=top_digest, size=top_size)
        members = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", self._dump(index))]
        members += [(f"blobs/sha256/{sha256(blob)[7:]}", blob) for blob in blobs]
        return members

    @staticmethod
    def _dump(doc: Any) -> bytes:
        return doc if isinstance(doc, bytes) else canonical_json(doc)


def docker_members(entries: list[LayerEntry], layer_name: str = "layer.tar") -> list[tuple[str, bytes]]:
    """A hand-built ``docker save`` archive: manifest.json, the config, one uncompressed layer."""
    raw = layer_tar(entries)
    config = canonical_json(
        {
            "architecture": PLATFORM.architecture,
            "os": PLATFORM.os,
            "config": {"Labels": dict(LABELS)},
            "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]},
        }
    )
    if layer_name == "blobs":
        layer_name = f"blobs/sha256/{sha256(raw)[7:]}"
    manifest = canonical_json([{"Config": "config.json", "RepoTags": [f"{EXT}:1.1"], "Layers": [layer_name]}])
    return [("manifest.json", manifest), ("config.json", config), (layer_name, raw)]


# -- tar archives, including ones no tar library would write --------------------------------------


def tar_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A plain, deterministic tar of regular files (names kept exactly as given)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _octal(value: int, width: int) -> bytes:
    """A numeric tar field; values too big for octal use GNU base-256, as GNU tar does."""
    text = b"%0*o\0" % (width - 1, value)
    if len(text) <= width and value >= 0:
        return text
    raw = (value & ((1 << (8 * (width - 1))) - 1)).to_bytes(width - 1, "big")
    return b"\x80" + raw


def raw_member(
    name: str | bytes,
    data: bytes = b"",
    *,
    type_flag: bytes = b"0",
    size: int | None = None,
    linkname: str | bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
) -> bytes:
    """One hand-made ustar header plus ``data``: the declared ``size`` may lie about ``data``."""
    name_b = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    link_b = linkname.encode("utf-8", "surrogateescape") if isinstance(linkname, str) else linkname
    declared = len(data) if size is None else size
    header = bytearray(512)
    header[0:100] = name_b[:100].ljust(100, b"\0")
    header[100:108] = _octal(mode & 0o7777777, 8)
    header[108:116] = _octal(uid & 0o7777777, 8)
    header[116:124] = _octal(gid & 0o7777777, 8)
    header[124:136] = _octal(declared, 12)
    header[136:148] = _octal(0, 12)
    header[148:156] = b" " * 8
    header[156:157] = type_flag[:1] or b"0"
    header[157:257] = link_b[:100].ljust(100, b"\0")
    header[257:265] = b"ustar\x0000"
    checksum = sum(header)
    header[148:156] = b"%06o\0 " % checksum
    padding = (-len(data)) % 512
    return bytes(header) + data + b"\0" * padding


def raw_tar(*members: bytes, end: bool = True) -> bytes:
    return b"".join(members) + (b"\0" * 1024 if end else b"")


def elf_library() -> bytes:
    """Bytes of a real ELF file to mutate: /bin/true read as data (never run)."""
    return Path("/bin/true").read_bytes()


def entries_with_programs(library: bytes) -> list[LayerEntry]:
    """An image that holds a shell script and an ELF executable next to the extension."""
    return extension_entries(
        library,
        [
            LayerEntry("/lib/postinstall.sh", mode=0o755, content=b"#!/bin/sh\ntouch extharness-ran\n"),
            LayerEntry("/lib/tool", mode=0o755, content=elf_library()),
            LayerEntry("/share/extension/run", FileType.SYMLINK, 0o777, linkname="../../lib/postinstall.sh"),
        ],
    )
