"""Fuzzing: hostile images, control files, SQL scripts and ELF files never crash the harness.

Every input ends in a result (findings) or one clear error line (HarnessError): never a
traceback from our code, never a hang, never a write to disk, never a process started.

Seed, budget and per-example deadline come from the environment (EXTHARNESS_FUZZ_SEED,
default 20250518; EXTHARNESS_FUZZ_EXAMPLES, default 60 per test; EXTHARNESS_FUZZ_DEADLINE_MS,
default 2000), so CI runs the same inputs every time and a failure reproduces with the same
values::

    EXTHARNESS_FUZZ_SEED=20250518 pytest tests/unit/test_fuzz_inputs.py
    EXTHARNESS_FUZZ_SEED=7 EXTHARNESS_FUZZ_EXAMPLES=2000 pytest tests/unit/test_fuzz_inputs.py  # a longer hunt

A failing example also prints ``@reproduce_failure(...)``: paste it above the test to replay
exactly that input. Inputs that once broke the harness are kept as ``@example``s and as the
``test_known_*`` / regression tests below.
"""

from __future__ import annotations

import bz2
import copy
import gzip
import io
import json
import lzma
import struct
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fuzzing import (
    EXT,
    LABELS,
    PLATFORM,
    ExampleHung,
    OciDocuments,
    canonical_json,
    docker_members,
    elf_library,
    entries_with_programs,
    extension_entries,
    fuzz,
    hard_time_limit,
    no_side_effects,
    raw_member,
    raw_tar,
    sha256,
    snapshot,
    tar_archive,
)
from hypothesis import example, given
from hypothesis import strategies as st

from extharness.checks.findings import Finding
from extharness.checks.run import run_all
from extharness.checks.target import LayoutTarget
from extharness.errors import HarnessError
from extharness.inspect.control import KNOWN_PARAMETERS, ControlFile, ControlFileError, parse_control
from extharness.inspect.elf import ElfSummary, NotElf, summarize
from extharness.inspect.extension import describe
from extharness.inspect.model import ExtensionImage, FileTree, FileType, ImageConfig, ImageFile, PlatformImage
from extharness.inspect.oci_reader import read_image
from extharness.inspect.operand import baseline_profile
from extharness.inspect.scripts import ScriptSet, find_libdir_loads
from extharness.source.oci_writer import LayerEntry, gzip_bytes, layer_tar

pytestmark = pytest.mark.timeout(300)

TARGET = LayoutTarget(operand=baseline_profile("ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie"))
#: An example still running after this long is stuck, whatever the deadline says.
HARD_LIMIT_S = 20.0


# -- the property every image input must satisfy ---------------------------------------------------


class ImageReader:
    """Writes a candidate archive into a private temp folder and reads it, under guard."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.inputs.mkdir()
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.monkeypatch = monkeypatch
        monkeypatch.chdir(self.cwd)
        monkeypatch.setenv("EXTHARNESS_CACHE_DIR", str(root / "cache"))

    def check_bytes(self, scheme: str, data: bytes, name: str = "image.tar") -> ExtensionImage | HarnessError:
        path = self.inputs / name
        path.write_bytes(data)
        return self.check(f"{scheme}:{path}")

    def check(self, reference: str) -> ExtensionImage | HarnessError:
        """``read_image`` then ``run_all``: a result with findings, or one HarnessError line."""
        before = snapshot(self.root)
        with no_side_effects(self.monkeypatch.context) as effects, hard_time_limit(HARD_LIMIT_S):
            try:
                image = read_image(reference)
            except HarnessError as exc:
                outcome: ExtensionImage | HarnessError = exc
            else:
                findings = run_all(image, EXT, TARGET)
                assert all(isinstance(f, Finding) for f in findings)
                outcome = image
        assert effects.attempts == [], f"reading {reference} tried to change the host: {effects.attempts}"
        assert snapshot(self.root) == before, f"reading {reference} changed files on disk"
        if isinstance(outcome, HarnessError):
            message = str(outcome)
            assert message and "\n" not in message, f"not one clear line: {message!r}"
            assert "Traceback" not in message
        return outcome


@pytest.fixture
def reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageReader:
    return ImageReader(tmp_path, monkeypatch)


class LibraryBytes(bytes):
    """Bytes of a real library, with a short repr (Hypothesis prints fixture values on failure)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes of a real ELF library>"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real PostgreSQL extension library (the sample's .so), else /bin/true's bytes."""
    from extharness.source.acquire import build_sample_release

    try:
        folder = build_sample_release(tmp_path_factory.mktemp("cache"), None)
        return LibraryBytes((folder / "artifact" / "lib" / "pg_ticker.so").read_bytes())
    except (HarnessError, OSError):
        return LibraryBytes(elf_library())


def valid_oci(library: bytes) -> OciDocuments:
    return OciDocuments.single(extension_entries(library))


def test_the_valid_images_read_cleanly(reader: ImageReader, library: bytes) -> None:
    """The starting points of the mutations are good images, so mutations test something."""
    for scheme, members in (
        ("oci-archive", valid_oci(library).members()),
        ("docker-archive", docker_members(extension_entries(library))),
        ("docker-archive", docker_members(extension_entries(library), "blobs")),
    ):
        image = reader.check_bytes(scheme, tar_archive(members))
        assert isinstance(image, ExtensionImage), image
        assert f"/lib/{EXT}.so" in image.images[0].files


# -- byte-level mutations of whole archives -------------------------------------------------------

TAR_HEADER_FIELDS = [(0, 100), (100, 8), (124, 12), (148, 8), (156, 1), (157, 100), (257, 8), (345, 155)]


@st.composite
def byte_mutations(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Edits as data (applied to any archive): flip, overwrite a tar header field, truncate, extend."""
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "header", "header", "truncate", "extend", "zero-block", "duplicate"]))
        where = draw(st.integers(0, 1 << 20))
        if kind == "flip":
            ops.append((kind, where, draw(st.integers(1, 255))))
        elif kind == "header":
            field = draw(st.sampled_from(TAR_HEADER_FIELDS))
            value = draw(
                st.one_of(
                    st.binary(max_size=field[1]),
                    st.sampled_from(
                        [
                            b"../../etc/passwd",
                            b"/index.json",
                            b"77777777777",
                            b"\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                            b"2",
                            b"1",
                            b"5",
                            b"x",
                            b"L",
                            b"S",
                            b"index.json",
                            b"blobs/sha256",
                        ]
                    ),
                )
            )
            ops.append((kind, where, field, value, draw(st.booleans())))
        elif kind == "truncate":
            ops.append((kind, where))
        elif kind == "extend":
            ops.append((kind, draw(st.binary(max_size=600))))
        else:
            ops.append((kind, where))
    return ops


def apply_byte_mutations(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    headers = [m.offset for m in tarfile.open(fileobj=io.BytesIO(data)).getmembers()] or [0]
    for op in ops:
        kind = op[0]
        if not buf:
            break
        if kind == "flip":
            buf[op[1] % len(buf)] ^= op[2]
        elif kind == "header":
            start = headers[op[1] % len(headers)]
            offset, width = op[2]
            value = op[3][:width].ljust(width, b"\0")
            buf[start + offset : start + offset + width] = value
            if op[4]:  # fix the checksum, so tarfile believes the header
                block = bytearray(buf[start : start + 512])
                block[148:156] = b" " * 8
                buf[start + 148 : start + 156] = b"%06o\0 " % sum(block)
        elif kind == "truncate":
            del buf[op[1] % len(buf) :]
        elif kind == "extend":
            buf += op[1]
        elif kind == "zero-block":
            start = (op[1] % len(buf)) // 512 * 512
            buf[start : start + 512] = bytes(len(buf[start : start + 512]))
        elif kind == "duplicate":  # repeat one member (header and data) right after itself
            start = headers[op[1] % len(headers)]
            following = [h for h in headers if h > start]
            end = following[0] if following else len(buf)
            buf[end:end] = buf[start:end]
    return bytes(buf)


@fuzz
@given(ops=byte_mutations())
def test_mutated_oci_archive(reader: ImageReader, library: bytes, ops: list[tuple[Any, ...]]) -> None:
    reader.check_bytes("oci-archive", apply_byte_mutations(tar_archive(valid_oci(library).members()), ops))


@fuzz
@given(ops=byte_mutations(), blobs_layout=st.booleans())
def test_mutated_docker_archive(
    reader: ImageReader, library: bytes, ops: list[tuple[Any, ...]], blobs_layout: bool
) -> None:
    members = docker_members(extension_entries(library), "blobs" if blobs_layout else "layer.tar")
    reader.check_bytes("docker-archive", apply_byte_mutations(tar_archive(members), ops))


@fuzz
@given(ops=byte_mutations(), compression=st.sampled_from(["gz", "bz2", "xz"]))
def test_mutated_compressed_archive(
    reader: ImageReader, library: bytes, ops: list[tuple[Any, ...]], compression: str
) -> None:
    """tarfile opens compressed archives too (r:*): their decoders' errors must not escape."""
    data = apply_byte_mutations(tar_archive(valid_oci(library).members()), ops[:1])
    packed = bytearray({"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[compression](data))
    for op in ops[1:]:  # the rest corrupt the compressed stream itself
        if op[0] == "truncate":
            del packed[op[1] % (len(packed) + 1) :]
        elif op[0] == "flip" and packed:
            packed[op[1] % len(packed)] ^= op[2]
    reader.check_bytes("oci-archive", bytes(packed))


def test_corrupt_xz_archive(reader: ImageReader, library: bytes) -> None:
    """A corrupt xz stream made tarfile raise lzma.LZMAError, which escaped the reader."""
    packed = lzma.compress(tar_archive(valid_oci(library).members()))
    for eighth in range(1, 8):
        corrupt = bytearray(packed)
        corrupt[len(corrupt) * eighth // 8] ^= 0xFF
        assert isinstance(reader.check_bytes("oci-archive", bytes(corrupt)), HarnessError)


#: Reference text as typed (a newline in an existing file's name would show in messages as is).
reference_text = st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=["Cs"]), max_size=30)


@fuzz
@given(
    reference=st.one_of(
        reference_text,
        st.sampled_from(["oci:", "oci-archive:", "docker-archive:"]).flatmap(
            lambda scheme: st.one_of(reference_text, st.sampled_from(["/", ".", "/dev/null", "/proc/self/fd/0"])).map(
                scheme.__add__
            )
        ),
    )
)
@example(reference="oci-archive:\x00")
@example(reference="oci:\n")
@example(reference="docker-archive:/")
@example(reference="oci:/dev/null")
def test_odd_references(reader: ImageReader, reference: str) -> None:
    """Whatever the user types as an image reference: a result or one error line."""
    reader.check(reference)


# -- JSON documents rewritten with arbitrary values -----------------------------------------------

KNOWN_KEYS = [
    "mediaType",
    "manifests",
    "digest",
    "size",
    "platform",
    "annotations",
    "layers",
    "config",
    "os",
    "architecture",
    "variant",
    "Labels",
    "User",
    "Env",
    "Entrypoint",
    "Cmd",
    "created",
    "schemaVersion",
    "Config",
    "Layers",
    "RepoTags",
    "org.opencontainers.image.ref.name",
    "vnd.docker.reference.type",
]
KNOWN_STRINGS = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "unknown",
    "linux",
    "amd64",
    "arm64",
    "attestation-manifest",
    "sha256:",
    "sha256:" + "0" * 64,
    "sha512:" + "0" * 128,
    "sha256:../../x",
    "sha256:/etc/passwd",
    "sha256:\x00",
    "md5:abc",
    "../../../../etc/passwd",
    "/etc/passwd",
    "index.json",
    "config.json",
    "layer.tar",
    "blobs/sha256/" + "0" * 64,
    "",
    "\x00",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(KNOWN_STRINGS),
)


def _json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
    return st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)


json_values = st.recursive(json_scalars, _json_containers, max_leaves=12)


def _slots(doc: Any, trail: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value in ``doc`` (the root is the empty path)."""
    found = [trail]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _slots(value, (*trail, key))
    elif isinstance(doc, list):
        for position, value in enumerate(doc):
            found += _slots(value, (*trail, position))
    return found


@st.composite
def rewritten(draw: st.DrawFn, doc: Any) -> Any:
    """``doc`` with one or two values replaced, removed or added; or a whole other document."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 2))):
        trail = draw(st.sampled_from(_slots(doc)))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not trail:
            if action == "replace":
                doc = draw(json_values)
            continue
        parent = doc
        for step in trail[:-1]:
            parent = parent[step]
        last = trail[-1]
        if action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KNOWN_KEYS))] = draw(json_values)
        elif action == "add":
            parent.append(draw(json_values))
        else:
            parent[last] = draw(json_values)
    return doc


def _multi_arch(library: bytes) -> OciDocuments:
    docs = valid_oci(library)
    descriptor = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "",
        "size": 0,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    docs.nested = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [descriptor, dict(descriptor, platform={"os": "unknown", "architecture": "unknown"})],
        "annotations": dict(LABELS),
    }
    docs.index["manifests"][0]["mediaType"] = "application/vnd.oci.image.index.v1+json"
    return docs


def _read_rewritten(reader: ImageReader, docs: OciDocuments, fix_digests: bool, tag: str) -> None:
    path = reader.inputs / "image.tar"
    path.write_bytes(tar_archive(docs.members(fix_digests=fix_digests)))
    reader.check(f"oci-archive:{path}{tag}")


@fuzz
@given(
    data=st.data(),
    which=st.sampled_from(["index", "manifest", "config", "nested"]),
    fix_digests=st.booleans(),
    tag=st.sampled_from(["", ":1.1", ":nope"]),
)
def test_rewritten_oci_documents(
    reader: ImageReader, library: bytes, data: st.DataObject, which: str, fix_digests: bool, tag: str
) -> None:
    docs = _multi_arch(library) if which == "nested" else valid_oci(library)
    setattr(docs, which, data.draw(rewritten(getattr(docs, which)), label=which))
    _read_rewritten(reader, docs, fix_digests, tag)


MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: Documents that made the reader raise something other than HarnessError before it was fixed:
#: {document: fields merged into the valid one}, digests fixed, tag.
ODD_DOCUMENTS = {
    "variant 5 (Platform.__str__ TypeError)": (
        {"index": {"manifests": [{"mediaType": MANIFEST, "digest": ""}]}, "config": {"variant": 5}},
        True,
        "",
    ),
    "platform variant a list": (
        {
            "index": {
                "manifests": [
                    {
                        "mediaType": MANIFEST,
                        "digest": "",
                        "platform": {"os": "linux", "architecture": "amd64", "variant": [1]},
                    }
                ]
            }
        },
        True,
        "",
    ),
    "mediaType a list (unhashable)": ({"index": {"mediaType": []}}, True, ""),
    "manifests an object (KeyError 0)": ({"index": {"manifests": {"a": 1}}}, True, ""),
    "manifests a number (len of int)": ({"index": {"manifests": 5}}, True, ""),
    "tag lookup in [1] (int.get)": ({"index": {"manifests": [1]}}, False, ":1.1"),
    "tag lookup in 3 (int not iterable)": ({"index": {"manifests": 3}}, False, ":1.1"),
    "annotations a list (list.get)": (
        {"index": {"manifests": [{"mediaType": MANIFEST, "digest": "", "annotations": ["x"]}]}},
        True,
        "",
    ),
    "nested manifests a number": ({"nested": {"manifests": 5}}, True, ""),
    "nested annotations a string": ({"nested": {"annotations": "ab"}}, True, ""),
    "labels a list": ({"config": {"config": {"Labels": [1, 2]}}}, True, ""),
}


@pytest.mark.parametrize(("changes", "fix_digests", "tag"), list(ODD_DOCUMENTS.values()), ids=list(ODD_DOCUMENTS))
def test_known_odd_oci_documents(
    reader: ImageReader, library: bytes, changes: dict[str, dict[str, Any]], fix_digests: bool, tag: str
) -> None:
    docs = _multi_arch(library) if "nested" in changes else valid_oci(library)
    for which, fields in changes.items():
        getattr(docs, which).update(copy.deepcopy(fields))
    _read_rewritten(reader, docs, fix_digests, tag)


@fuzz
@given(data=st.data(), which=st.sampled_from(["manifest.json", "config.json"]))
def test_rewritten_docker_documents(reader: ImageReader, library: bytes, data: st.DataObject, which: str) -> None:
    members = dict(docker_members(extension_entries(library)))
    original = json.loads(members[which])
    members[which] = canonical_json(data.draw(rewritten(original), label=which))
    reader.check_bytes("docker-archive", tar_archive(list(members.items())))


# -- hostile layer entries: traversal, absolute names, huge sizes, links, duplicates --------------

HOSTILE_NAMES = [
    "lib/fuzzext.so",
    f"share/extension/{EXT}.control",
    f"share/extension/{EXT}--1.1.sql",
    "./lib/x",
    "/etc/passwd",
    "../../../../tmp/extharness-escape",
    "lib/../../escape",
    "lib/..",
    f"share/extension/.wh.{EXT}.control",
    "share/.wh..wh..opq",
    ".wh..wh..opq",
    ".wh.lib",
    ".",
    "./",
    "",
    "/",
    "lib\\..\\..\\escape",
    "a/b/../../..",
    "lib//fuzzext.so",
    "lib/./fuzzext.so",
    "x" * 99,
]
NAME_PARTS = ["..", ".", "lib", "share", "extension", "a", "", ".wh.a", ".wh..wh..opq", f"{EXT}.so", f"{EXT}.control"]
names = st.one_of(
    st.sampled_from(HOSTILE_NAMES),
    st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=6).map("/".join),
    st.text(max_size=110),
)
TYPE_FLAGS = [b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"S", b"x", b"g", b"L", b"K", b"V", b"M", b"Z"]


@st.composite
def layer_member(draw: st.DrawFn, library: bytes) -> bytes:
    type_flag = draw(st.sampled_from(TYPE_FLAGS))
    content = draw(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"",
                    b"#!/bin/sh\nrm -rf /\n",
                    library[:4096],
                    b"20 path=../../escape\n",
                    b"10 size=x\n",
                    b"default_version = '1.1'\n",
                ]
            ),
        )
    )
    size = draw(
        st.one_of(
            st.none(),
            st.integers(0, 2048),
            st.sampled_from([1 << 31, 1 << 33, (1 << 63) - 1]),
            st.integers(min_value=0, max_value=(1 << 88) - 1),
        )
    )
    mode = draw(st.one_of(st.sampled_from([0o644, 0o755, 0o4755, 0o777, 0o000, 0o2775]), st.integers(0, 0o7777777)))
    return raw_member(
        draw(names),
        content,
        type_flag=type_flag,
        size=size,
        linkname=draw(names),
        mode=mode,
        uid=draw(st.sampled_from([0, 26, 1000])),
        gid=draw(st.sampled_from([0, 26, 1000])),
    )


def _read_layer_with(reader: ImageReader, library: bytes, hostile: list[bytes], compress: bool, closed: bool) -> None:
    valid = tarfile.open(fileobj=io.BytesIO(layer_tar(extension_entries(library)))).getmembers()
    base = b"".join(
        raw_member(m.name, library if m.name.endswith(".so") else b"", type_flag=m.type, mode=m.mode) for m in valid
    )
    layer = raw_tar(base, *hostile, end=closed)
    docs = valid_oci(library)
    docs.layers = [gzip_bytes(layer) if compress else layer]
    outcome = reader.check_bytes("oci-archive", tar_archive(docs.members()))
    if isinstance(outcome, ExtensionImage):
        _assert_odd_names_reported(layer, outcome)


@fuzz
@given(data=st.data(), compress=st.booleans(), closed=st.booleans())
def test_hostile_layer_entries(
    reader: ImageReader, library: bytes, data: st.DataObject, compress: bool, closed: bool
) -> None:
    hostile = data.draw(st.lists(layer_member(library), min_size=1, max_size=8), label="members")
    _read_layer_with(reader, library, hostile, compress, closed)


HOSTILE_LAYERS = {
    "symlink loops and dangling links": [
        raw_member("lib/a", type_flag=b"2", linkname="b"),
        raw_member("lib/b", type_flag=b"2", linkname="a"),
        raw_member(f"lib/{EXT}.so", type_flag=b"2", linkname=f"{EXT}.so"),
        raw_member("lib/hard", type_flag=b"1", linkname="lib/missing"),
        raw_member(f"share/extension/{EXT}.control", type_flag=b"2", linkname="../../share/extension/x.control"),
        raw_member("share/extension/x.control", type_flag=b"2", linkname=f"{EXT}.control"),
    ],
    "traversal, absolute and huge": [
        raw_member("../../../../tmp/extharness-escape", b"x"),
        raw_member("/etc/passwd", b"root"),
        raw_member("lib/big", b"0" * 10, size=(1 << 63) - 1),
    ],
    "duplicates and whiteouts": [
        raw_member("lib/a", b"one"),
        raw_member("lib/a", b"two"),
        raw_member("lib", type_flag=b"0"),
        raw_member("lib/a/b", type_flag=b"5"),
        raw_member(".wh..wh..opq"),
        raw_member(".", type_flag=b"0", size=3),
    ],
}


@pytest.mark.parametrize("hostile", list(HOSTILE_LAYERS.values()), ids=list(HOSTILE_LAYERS))
@pytest.mark.parametrize("compress", [False, True])
def test_known_hostile_layers(reader: ImageReader, library: bytes, hostile: list[bytes], compress: bool) -> None:
    _read_layer_with(reader, library, hostile, compress, closed=True)


def _assert_odd_names_reported(layer: bytes, image: ExtensionImage) -> None:
    """Entries that would escape an extraction folder are reported, not silently dropped."""
    try:
        parsed = tarfile.open(fileobj=io.BytesIO(layer), mode="r:").getmembers()
    except tarfile.TarError:
        return
    anomalies = " ".join(image.images[0].anomalies)
    for member in parsed:
        parts = member.name.replace("\\", "/").split("/")
        if member.name.startswith("/") or ".." in parts:
            assert repr(member.name) in anomalies, f"{member.name!r} not reported among {anomalies!r}"


def _read_with_outer_members(reader: ImageReader, library: bytes, extra: list[bytes], before: bool) -> None:
    members = b"".join(raw_member(name, content) for name, content in valid_oci(library).members())
    reader.check_bytes("oci-archive", raw_tar(b"".join(extra) + members if before else members + b"".join(extra)))


@fuzz
@given(data=st.data(), before=st.booleans())
def test_hostile_outer_archive_members(reader: ImageReader, library: bytes, data: st.DataObject, before: bool) -> None:
    """The archive around the layout: traversal names, duplicates, links and lying sizes."""
    good = [name for name, _ in valid_oci(library).members()]
    names_here = st.one_of(
        st.sampled_from(good), names, st.sampled_from([f"../{n}" for n in good] + [f"/{n}" for n in good])
    )
    member = st.builds(
        lambda name, content, type_flag, size, link: raw_member(
            name, content, type_flag=type_flag, size=size, linkname=link
        ),
        names_here,
        st.one_of(st.binary(max_size=64), st.sampled_from([b"{}", b"[]", b'{"manifests":[]}'])),
        st.sampled_from(TYPE_FLAGS),
        st.one_of(st.none(), st.integers(0, 1 << 40)),
        names_here,
    )
    _read_with_outer_members(
        reader, library, data.draw(st.lists(member, min_size=1, max_size=4), label="extra"), before
    )


HOSTILE_OUTER = {
    "index.json twice, then as a link": [
        raw_member("index.json", b"{}"),
        raw_member("index.json", type_flag=b"2", linkname="/etc/passwd"),
    ],
    "traversal names": [raw_member("../index.json", b"{}"), raw_member("/oci-layout", b"{}")],
    "1 TiB declared": [raw_member("index.json", b"{}", size=1 << 40)],
    # tarfile reads pax and GNU long-name headers whole: MemoryError escaped the reader
    "25 GB pax header": [raw_member("oci-layout", type_flag=b"x", size=25276200047)],
    "1 TiB global pax header": [raw_member("oci-layout", type_flag=b"g", size=1 << 40)],
    "1 TiB GNU long name": [raw_member("oci-layout", type_flag=b"L", size=1 << 40)],
    "512 MiB declared": [raw_member("index.json", b"{}", size=1 << 29)],
}


@pytest.mark.parametrize("extra", list(HOSTILE_OUTER.values()), ids=list(HOSTILE_OUTER))
def test_known_hostile_outer_members(reader: ImageReader, library: bytes, extra: list[bytes]) -> None:
    _read_with_outer_members(reader, library, extra, before=False)


# -- limits: gzip bombs, nesting depth, fan-out ---------------------------------------------------


def test_gzip_bomb_over_the_layer_limit(reader: ImageReader, library: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTHARNESS_MAX_LAYER_BYTES", str(1 << 20))
    docs = valid_oci(library)
    docs.layers = [gzip_bytes(layer_tar([LayerEntry("/lib/zeros", content=bytes(8 << 20))]))]
    outcome = reader.check_bytes("oci-archive", tar_archive(docs.members()))
    assert isinstance(outcome, HarnessError) and "more than 1048576 bytes" in str(outcome)


def test_archive_member_over_the_layer_limit(reader: ImageReader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTHARNESS_MAX_LAYER_BYTES", str(1 << 20))
    outcome = reader.check_bytes("oci-archive", raw_tar(raw_member("index.json", bytes(2 << 20))))
    assert isinstance(outcome, HarnessError) and "over the limit" in str(outcome)


@pytest.mark.parametrize("size", [1 << 40, (1 << 63) - 1, 1 << 63, (1 << 88) - 1])
def test_archive_member_with_an_impossible_size(reader: ImageReader, size: int) -> None:
    """Sizes past 2**63 made tarfile raise ValueError/OverflowError, which escaped the reader."""
    outcome = reader.check_bytes(
        "oci-archive", raw_tar(raw_member("index.json", b"{}", size=size), raw_member("oci-layout", b"{}"))
    )
    assert isinstance(outcome, HarnessError)


@pytest.mark.parametrize("scheme", ["oci-archive", "docker-archive"])
def test_many_bombs_within_the_layer_limit_stay_bounded(
    reader: ImageReader, library: bytes, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One small layer that unpacks to just under the limit, listed 4000 times, is refused early.

    Before MAX_IMAGE_BYTES the reader unpacked every copy: with the default 1 GiB layer limit
    a 100 kB archive meant terabytes of gzip.
    """
    monkeypatch.setenv("EXTHARNESS_MAX_LAYER_BYTES", str(1 << 20))
    monkeypatch.setenv("EXTHARNESS_MAX_IMAGE_BYTES", str(16 << 20))
    raw = layer_tar([LayerEntry("/lib/zeros", content=bytes((1 << 20) - 10240))])
    if scheme == "oci-archive":
        docs = valid_oci(library)
        docs.layers = [gzip_bytes(raw)] * 4000
        docs.manifest["layers"] = [dict(docs.manifest["layers"][0]) for _ in docs.layers]
        members = docs.members()
    else:
        members = dict(docker_members(extension_entries(library)))
        manifest = json.loads(members["manifest.json"])
        manifest[0]["Layers"] = ["bomb.tar.gz"] * 4000
        members.update({"manifest.json": canonical_json(manifest), "bomb.tar.gz": gzip_bytes(raw)})
        members = list(members.items())
    outcome = reader.check_bytes(scheme, tar_archive(members))
    assert isinstance(outcome, HarnessError) and "in all" in str(outcome)


def _chain(depth: int, fan_out: int, library: bytes) -> list[tuple[str, bytes]]:
    """An index nested ``depth`` times, each level listing the one below ``fan_out`` times."""
    docs = valid_oci(library)
    members = dict(docs.members())
    top = json.loads(members["index.json"])["manifests"][0]
    for _ in range(depth):
        nested = canonical_json(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top] * fan_out}
        )
        members[f"blobs/sha256/{sha256(nested)[7:]}"] = nested
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(nested), "size": len(nested)}
    members["index.json"] = canonical_json({"schemaVersion": 2, "manifests": [top]})
    return list(members.items())


@pytest.mark.parametrize("depth", [1, 3, 4, 5, 8, 40])
def test_nested_index_depth(reader: ImageReader, library: bytes, depth: int) -> None:
    outcome = reader.check_bytes("oci-archive", tar_archive(_chain(depth, 1, library)))
    if depth <= 3:
        assert isinstance(outcome, ExtensionImage)
    if depth > 4:
        assert isinstance(outcome, HarnessError) and "nest too deeply" in str(outcome)


def test_index_fan_out_stays_bounded(reader: ImageReader, library: bytes) -> None:
    """Three levels listing the level below 20 times each lead to 8000 manifests: refused."""
    outcome = reader.check_bytes("oci-archive", tar_archive(_chain(3, 20, library)))
    assert isinstance(outcome, HarnessError) and "more than" in str(outcome)


def test_small_fan_out_is_read_and_reported(reader: ImageReader, library: bytes) -> None:
    outcome = reader.check_bytes("oci-archive", tar_archive(_chain(2, 2, library)))
    assert isinstance(outcome, ExtensionImage) and len(outcome.images) == 4
    findings = run_all(outcome, EXT, TARGET)
    assert any(f.rule == "layout.platforms.expected" and "more than once" in f.message for f in findings)


def test_oci_folder_with_links_out_of_it(reader: ImageReader, library: bytes) -> None:
    """An ``oci:`` folder whose blobs are symlinks to host files is refused, not read."""
    folder = reader.inputs / "layout"
    for name, data in valid_oci(library).members():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    blobs = folder / "blobs" / "sha256"
    victim = sorted(blobs.iterdir())[0]
    victim.unlink()
    victim.symlink_to("/etc/passwd")
    outcome = reader.check(f"oci:{folder}")
    assert isinstance(outcome, HarnessError) and "outside the image folder" in str(outcome)


@fuzz
@given(
    digest=st.one_of(
        st.text(max_size=80),
        st.sampled_from(KNOWN_STRINGS),
        st.text(alphabet="0123456789abcdef:/.\x00", max_size=80).map("sha256:".__add__),
    )
)
@example(digest="sha256:\x00")
@example(digest="sha256:" + "a" * 300)
def test_oci_folder_with_odd_digests(reader: ImageReader, library: bytes, digest: str) -> None:
    folder = reader.inputs / "layout"
    if not folder.exists():
        for name, data in valid_oci(library).members():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1}],
    }
    (folder / "index.json").write_bytes(canonical_json(index))
    reader.check(f"oci:{folder}")


# -- control files, SQL scripts --------------------------------------------------------------------

control_values = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20).map(
        lambda t: "'" + t.replace("'", "''") + "'"
    ),
    st.sampled_from(
        [
            "true",
            "false",
            "on",
            "of",
            "o",
            "1",
            "0",
            "yes",
            "'$libdir/x'",
            "'a, \"b\", c'",
            "'a,'",
            "'\\101\\n\\'",
            "1.5e3",
            "-2",
            ".5",
            "a.b",
            "x-y/z:w",
            "'\"unterminated'",
            "''",
        ]
    ),
    st.text(max_size=10),
)
control_lines = st.one_of(
    st.builds(
        lambda key, eq, value, comment: f"{key}{eq}{value}{comment}",
        st.sampled_from([*KNOWN_PARAMETERS, "bogus", "a.b", "_x"]),
        st.sampled_from([" = ", "=", " ", ""]),
        control_values,
        st.sampled_from(["", " # note", "#", " '"]),
    ),
    st.text(max_size=30),
)


@fuzz
@given(
    text=st.one_of(st.text(), st.binary().map(bytes), st.lists(control_lines, max_size=8).map("\n".join)),
    secondary=st.booleans(),
)
@example(text=b"\xff\xfe", secondary=False)
@example(text='requires = \'"a""b", c\'', secondary=True)
def test_parse_control_ends_in_a_control_file_or_its_error(text: str | bytes, secondary: bool) -> None:
    with hard_time_limit(HARD_LIMIT_S):
        try:
            if secondary:
                result = parse_control(text, EXT, version="1.0", base=ControlFile(name=EXT))
            else:
                result = parse_control(text, EXT)
        except ControlFileError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert isinstance(result, ControlFile)
    assert not (result.relocatable and result.schema is not None)


script_versions = st.one_of(st.sampled_from(["1.0", "1.1", "2.0", "", "-", "a--b", "1/2"]), st.text(max_size=6))


@fuzz
@given(
    names=st.lists(
        st.one_of(
            st.builds(lambda a, b: f"{EXT}--{a}--{b}.sql", script_versions, script_versions),
            st.builds(lambda a: f"{EXT}--{a}.sql", script_versions),
            st.text(max_size=30),
        ),
        max_size=40,
    ),
    target=script_versions,
)
def test_script_names_give_a_consistent_version_graph(names: list[str], target: str) -> None:
    with hard_time_limit(HARD_LIMIT_S):
        scripts = ScriptSet.from_names(EXT, names)
        path = scripts.install_path(target)
    if path is not None:
        assert path[0] in scripts.install and path[-1] == target
        assert all((a, b) in scripts.updates for a, b in zip(path, path[1:]))
    for name in scripts.install.values():
        assert name in names


@fuzz
@given(
    sql=st.one_of(
        st.text(),
        st.lists(
            st.sampled_from(
                [
                    "LOAD '$libdir/x';",
                    "load E'$libdir/y'",
                    'LOAD "$libdir/z"',
                    "-- LOAD '$libdir/c'",
                    "SELECT 1; LOAD '$libdir/",
                    "LOAD\t\t'$libdir/'",
                    "UNLOAD '$libdir/q'",
                    "\r",
                    "\n",
                    "LOAD " * 50,
                    " " * 200,
                    "'",
                ]
            ),
            max_size=30,
        ).map("".join),
    )
)
def test_libdir_loads_are_found_line_by_line(sql: str) -> None:
    with hard_time_limit(HARD_LIMIT_S):
        found = find_libdir_loads(sql)
    lines = sql.splitlines()
    for number, statement in found:
        assert 1 <= number <= len(lines)
        assert statement.upper().startswith("LOAD") and statement in lines[number - 1].split("--", 1)[0]


# -- ELF files -------------------------------------------------------------------------------------

ELF64_HEADER = {
    "e_ident_class": (4, 1),
    "e_ident_data": (5, 1),
    "e_type": (16, 2),
    "e_machine": (18, 2),
    "e_phoff": (32, 8),
    "e_shoff": (40, 8),
    "e_phentsize": (54, 2),
    "e_phnum": (56, 2),
    "e_shentsize": (58, 2),
    "e_shnum": (60, 2),
    "e_shstrndx": (62, 2),
}
ELF64_SECTION = {
    "sh_name": (0, 4),
    "sh_type": (4, 4),
    "sh_offset": (24, 8),
    "sh_size": (32, 8),
    "sh_link": (40, 4),
    "sh_info": (44, 4),
    "sh_entsize": (56, 8),
}
ELF64_SEGMENT = {"p_type": (0, 4), "p_offset": (8, 8), "p_filesz": (32, 8)}
INTERESTING_SECTIONS = [
    ".dynamic",
    ".gnu.version_r",
    ".gnu.version_d",
    ".dynsym",
    ".dynstr",
    ".gnu.version",
    ".shstrtab",
    ".interp",
]


def _int_for(width: int) -> st.SearchStrategy[int]:
    top = (1 << (8 * width)) - 1
    return st.one_of(
        st.sampled_from([0, 1, 2, 3, 0x7F, 0xFF, top, top >> 1]), st.integers(0, top), st.integers(0, 4096)
    ).map(lambda value: value & top)


@st.composite
def elf_mutations(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["header", "section", "section", "segment", "flip", "truncate"]))
        if kind == "header":
            name = draw(st.sampled_from(sorted(ELF64_HEADER)))
            ops.append((kind, name, draw(_int_for(ELF64_HEADER[name][1]))))
        elif kind == "section":
            name = draw(st.sampled_from(sorted(ELF64_SECTION)))
            which = draw(st.one_of(st.sampled_from(INTERESTING_SECTIONS), st.integers(0, 64)))
            ops.append((kind, which, name, draw(_int_for(ELF64_SECTION[name][1]))))
        elif kind == "segment":
            name = draw(st.sampled_from(sorted(ELF64_SEGMENT)))
            ops.append((kind, draw(st.integers(0, 16)), name, draw(_int_for(ELF64_SEGMENT[name][1]))))
        elif kind == "flip":
            ops.append((kind, draw(st.integers(0, 1 << 20)), draw(st.integers(1, 255))))
        else:
            ops.append((kind, draw(st.integers(0, 1 << 20))))
    return ops


def _section_offsets(data: bytes) -> dict[Any, int]:
    """Where each section header is in a little-endian ELF64 file, by name and by index."""
    (e_shoff,) = struct.unpack_from("<Q", data, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    offsets: dict[Any, int] = {index: e_shoff + index * e_shentsize for index in range(e_shnum)}
    (strtab_offset,) = struct.unpack_from("<Q", data, e_shoff + e_shstrndx * e_shentsize + 24)
    for index in range(e_shnum):
        (name_offset,) = struct.unpack_from("<I", data, offsets[index])
        start = strtab_offset + name_offset
        name = data[start : data.index(b"\0", start)].decode()
        offsets.setdefault(name, offsets[index])
    return offsets


def apply_elf_mutations(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    sections = _section_offsets(data)
    (e_phoff,) = struct.unpack_from("<Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    for op in ops:
        if op[0] in ("header", "section", "segment"):
            if op[0] == "header":
                offset, width = ELF64_HEADER[op[1]]
                value = op[2]
            elif op[0] == "section":
                base = sections.get(op[1], sections[max(k for k in sections if isinstance(k, int))])
                field, width = ELF64_SECTION[op[2]]
                offset, value = base + field, op[3]
            else:
                field, width = ELF64_SEGMENT[op[2]]
                offset, value = e_phoff + (op[1] % max(e_phnum, 1)) * e_phentsize + field, op[3]
            if offset + width <= len(buf):
                buf[offset : offset + width] = value.to_bytes(width, "little")
        elif op[0] == "flip" and buf:
            buf[op[1] % len(buf)] ^= op[2]
        elif op[0] == "truncate":
            del buf[max(op[1] % (len(buf) + 1), 4) :]
    return bytes(buf)


def _summarize_or_not_elf(data: bytes) -> ElfSummary | NotElf:
    with hard_time_limit(HARD_LIMIT_S):
        try:
            return summarize(data)
        except NotElf as exc:
            assert str(exc) and "\n" not in str(exc)
            return exc


def test_real_elf_files_summarize(library: bytes) -> None:
    for data in (library, elf_library()):
        assert isinstance(summarize(data), ElfSummary)


@fuzz
@given(ops=elf_mutations(), use_sample=st.booleans())
@example(ops=[("section", ".gnu.version_r", "sh_info", 0xFFFFFFFF)], use_sample=True)
@example(ops=[("section", ".gnu.version_r", "sh_info", 0xFFFFFFFF)], use_sample=False)
def test_mutated_elf_summarizes_or_is_not_elf(library: bytes, ops: list[tuple[Any, ...]], use_sample: bool) -> None:
    data = apply_elf_mutations(library if use_sample else elf_library(), ops)
    _summarize_or_not_elf(data)


LIBC_CANDIDATES = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib/libc.so.6",
]


@pytest.mark.parametrize("section", [".gnu.version_r", ".gnu.version_d"])
def test_version_sections_claiming_four_billion_entries(library: bytes, section: str) -> None:
    """sh_info = 2**32-1 made pyelftools re-read the last entry for hours (18 s for /bin/true).

    The summary must come back fast and equal to the unmutated file's: the chain ends where
    its last entry says so.
    """
    data = (
        library
        if section == ".gnu.version_r"
        else next((Path(p).read_bytes() for p in LIBC_CANDIDATES if Path(p).is_file()), None)
    )
    if data is None:
        pytest.skip("no glibc on this machine to read version definitions from")
    mutated = apply_elf_mutations(data, [("section", section, "sh_info", 0xFFFFFFFF)])
    started = time.monotonic()
    summary = _summarize_or_not_elf(mutated)
    assert time.monotonic() - started < 10
    original = summarize(data)
    assert isinstance(summary, ElfSummary)
    assert (summary.glibc_needed, summary.glibc_defined) == (original.glibc_needed, original.glibc_defined)


def _image_with(files: dict[str, tuple[bytes, int]]) -> ExtensionImage:
    tree = FileTree()
    tree.add(ImageFile("/", FileType.DIR, 0o755))
    for folder in ("/lib", "/share", "/share/extension"):
        tree.add(ImageFile(folder, FileType.DIR, 0o755))
    for path, (content, mode) in files.items():
        tree.add(ImageFile(path, FileType.FILE, mode, size=len(content), content=content))
    image = PlatformImage(PLATFORM, ImageConfig(labels=LABELS), tree)
    return ExtensionImage("fuzz", [image])


@fuzz
@given(ops=elf_mutations(), use_sample=st.booleans())
@example(ops=[("section", ".gnu.version_r", "sh_info", 0xFFFFFFFF)], use_sample=True)
def test_describe_and_checks_survive_mutated_libraries(
    library: bytes, ops: list[tuple[Any, ...]], use_sample: bool
) -> None:
    mutated = apply_elf_mutations(library if use_sample else elf_library(), ops)
    image = _image_with(
        {
            f"/lib/{EXT}.so": (mutated, 0o755),
            "/lib/helper": (mutated, 0o755),
            "/system/libdep.so.1": (mutated, 0o644),
            f"/share/extension/{EXT}.control": (b"default_version = '1.1'\nmodule_pathname = 'fuzzext'\n", 0o644),
            f"/share/extension/{EXT}--1.1.sql": (b"SELECT 1;\n", 0o644),
        }
    )
    with hard_time_limit(HARD_LIMIT_S):
        layout = describe(image.images[0], EXT)
        assert set(layout.elf) | set(layout.elf_errors) >= {f"/lib/{EXT}.so", "/system/libdep.so.1"}
        findings = run_all(image, EXT, TARGET)
    assert all(isinstance(f, Finding) for f in findings)


# -- nothing from the image runs on the host --------------------------------------------------------


@pytest.mark.parametrize("scheme", ["oci-archive", "docker-archive"])
def test_reading_and_checking_start_no_process(reader: ImageReader, library: bytes, scheme: str) -> None:
    """An image holding a shell script and an ELF executable is read and checked without running either."""
    entries = entries_with_programs(library)
    members = OciDocuments.single(entries).members() if scheme == "oci-archive" else docker_members(entries)
    image = reader.check_bytes(scheme, tar_archive(members))  # check() refuses and records any process start
    assert isinstance(image, ExtensionImage)
    findings = run_all(image, EXT, TARGET)
    flagged = {f.path for f in findings if f.rule == "layout.tree.no-executables" and f.severity.value == "error"}
    assert {"/lib/postinstall.sh", "/lib/tool"} <= flagged
    assert not (reader.cwd / "extharness-ran").exists(), "the image's script ran"


def test_the_guards_catch_what_they_claim(reader: ImageReader, tmp_path: Path) -> None:
    """The side-effect guard really refuses writes, processes, extraction and dlopen."""
    import ctypes
    import os
    import subprocess

    attempts: list[Callable[[], Any]] = [
        lambda: open(tmp_path / "x", "w"),
        lambda: (tmp_path / "y").write_bytes(b"x"),
        lambda: os.open(tmp_path / "z", os.O_CREAT | os.O_WRONLY),
        lambda: subprocess.run(["true"]),
        lambda: os.posix_spawn("/bin/true", ["true"], {}),
        lambda: os.execv("/bin/true", ["true"]),
        lambda: ctypes.CDLL("libc.so.6"),
        lambda: tarfile.open(fileobj=io.BytesIO(tar_archive([("a", b"")]))).extractall(tmp_path),
    ]
    with no_side_effects(reader.monkeypatch.context) as effects:
        for attempt in attempts:
            with pytest.raises(PermissionError):
                attempt()
    assert len(effects.attempts) == len(attempts)
    assert not (tmp_path / "x").exists() and not (tmp_path / "a").exists()


def test_the_hard_time_limit_interrupts_a_loop() -> None:
    with pytest.raises(ExampleHung), hard_time_limit(0.2):
        while True:
            pass
