"""The embedded builder and the OCI reader agree: what is written is what is read.

Random trees (files, folders, links, odd modes, any bytes) and labels go through the
embedded builder as an OCI archive and as an OCI layout folder and come back out of
``read_image`` unchanged; builds are reproducible; multi-arch indexes with attestations,
docker archives and whiteouts across layers are read the way engines apply them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tarfile
import tempfile
from pathlib import Path

import pytest
from crafted import (
    AMD64,
    ARM64,
    RawEntry,
    layered_blobs,
    multi_platform,
    raw_layer,
    read_blobs,
    with_attestation,
    write_docker_archive,
)
from hypothesis import given
from hypothesis import strategies as st

from extharness.errors import HarnessError
from extharness.inspect.model import FileType, Platform
from extharness.inspect.oci_reader import read_image
from extharness.source.oci_writer import (
    LayerEntry,
    PlatformContent,
    build_blobs,
    write_oci_archive,
    write_oci_layout,
)

# -- strategies ---------------------------------------------------------------------------
segment = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..") and not s.startswith(".wh.")
)
paths = st.lists(segment, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
modes = st.one_of(
    st.sampled_from([0o644, 0o755, 0o600, 0o444, 0o4755, 0o2755, 0o1777, 0o666, 0o000]), st.integers(0, 0o7777)
)


@st.composite
def entries(draw) -> list[LayerEntry]:
    chosen: dict[str, LayerEntry] = {}
    for path in draw(st.lists(paths, min_size=1, max_size=12, unique=True)):
        kind = draw(st.sampled_from([FileType.FILE, FileType.FILE, FileType.DIR, FileType.SYMLINK]))
        if kind == FileType.FILE:
            chosen[path] = LayerEntry(path, kind, draw(modes), draw(st.binary(max_size=300)))
        elif kind == FileType.DIR:
            chosen[path] = LayerEntry(path, kind, draw(modes))
        else:
            target = draw(
                st.one_of(
                    paths,
                    segment,
                    st.just("../x/y"),
                    st.text(min_size=1, max_size=20).filter(lambda t: "\x00" not in t),
                )
            )
            chosen[path] = LayerEntry(path, kind, 0o777, linkname=target)

    # A path cannot be both a non-folder and the parent of another path.
    def blocked(path: str) -> bool:
        parent = posixpath.dirname(path)
        while parent != "/":
            if parent in chosen and chosen[parent].type != FileType.DIR:
                return True
            parent = posixpath.dirname(parent)
        return False

    return [e for p, e in chosen.items() if not blocked(p)]


labels = st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=4)


def expected_tree(items: list[LayerEntry]) -> dict[str, tuple]:
    """(type, mode, uid, gid, content, link) per path, with parents COPY would create (0755)."""
    tree: dict[str, tuple] = {"/": (FileType.DIR, 0o755, 0, 0, None, None)}
    for entry in items:
        parent = posixpath.dirname(entry.path)
        while parent != "/":
            tree.setdefault(parent, (FileType.DIR, 0o755, 0, 0, None, None))
            parent = posixpath.dirname(parent)
    for entry in items:
        tree[entry.path] = (
            entry.type,
            entry.mode,
            0,
            0,
            entry.content if entry.type == FileType.FILE else None,
            entry.linkname if entry.type == FileType.SYMLINK else None,
        )
    return tree


def actual_tree(files) -> dict[str, tuple]:
    return {f.path: (f.type, f.mode, f.uid, f.gid, f.content, f.linkname) for f in files}


@contextlib.contextmanager
def source_date_epoch(value: str | None):
    old = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    else:
        os.environ["SOURCE_DATE_EPOCH"] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


# -- round trips ----------------------------------------------------------------------------
@given(entries(), labels)
def test_archive_and_layout_read_back_the_same_tree(items: list[LayerEntry], image_labels: dict[str, str]) -> None:
    blobs = build_blobs([PlatformContent(AMD64, items, image_labels)], tag="v1")
    with tempfile.TemporaryDirectory() as tmp:
        refs = [
            f"oci-archive:{write_oci_archive(blobs, Path(tmp) / 'image.tar')}",
            f"oci:{write_oci_layout(blobs, Path(tmp) / 'layout')}",
            f"oci-archive:{Path(tmp) / 'image.tar'}:v1",
        ]
        for ref in refs:
            image = read_image(ref)
            assert [str(p) for p in image.platforms] == ["linux/amd64"]
            platform_image = image.images[0]
            assert actual_tree(platform_image.files) == expected_tree(items), ref
            assert dict(platform_image.config.labels) == image_labels
            assert platform_image.anomalies == []
            assert image.index_digest == blobs.digest


@given(entries(), labels)
def test_same_inputs_same_digest_and_epoch_changes_it(items: list[LayerEntry], image_labels: dict[str, str]) -> None:
    content = [PlatformContent(AMD64, items, image_labels)]
    with source_date_epoch(None):
        first = build_blobs(content)
        again = build_blobs(list(reversed(content)))
        shuffled = build_blobs([PlatformContent(AMD64, list(reversed(items)), dict(reversed(image_labels.items())))])
    with source_date_epoch("1700000000"):
        later = build_blobs(content)
    assert first.digest == again.digest == shuffled.digest
    assert first.blobs == shuffled.blobs and first.index == shuffled.index
    assert later.digest != first.digest


def test_archive_bytes_are_reproducible(tmp_path: Path) -> None:
    items = [LayerEntry("/lib/x.so", FileType.FILE, 0o755, b"\x7fELF..."), LayerEntry("/share/extension/x.control")]
    blobs = build_blobs([PlatformContent(AMD64, items, {"a": "b"})])
    one = write_oci_archive(blobs, tmp_path / "one.tar").read_bytes()
    two = write_oci_archive(build_blobs([PlatformContent(AMD64, items, {"a": "b"})]), tmp_path / "two.tar").read_bytes()
    assert hashlib.sha256(one).digest() == hashlib.sha256(two).digest()


# -- multi-arch, attestations ------------------------------------------------------------------
def _content(platform: Platform, marker: bytes) -> PlatformContent:
    return PlatformContent(
        platform,
        [
            LayerEntry("/lib/x.so", FileType.FILE, 0o755, marker),
            LayerEntry("/share/extension/x.control", FileType.FILE, 0o644, b"c"),
        ],
        {"org.opencontainers.image.version": "1.0"},
    )


def test_multi_platform_index_with_attestation_skips_it(tmp_path: Path) -> None:
    blobs = with_attestation(build_blobs([_content(AMD64, b"amd"), _content(ARM64, b"arm")], tag="1.0"))
    nested = json.loads(blobs.blobs[blobs.digest])
    assert {m["platform"]["architecture"] for m in nested["manifests"]} == {"amd64", "arm64", "unknown"}
    for ref in (
        f"oci-archive:{write_oci_archive(blobs, tmp_path / 'i.tar')}",
        f"oci:{write_oci_layout(blobs, tmp_path / 'layout')}",
    ):
        image = read_image(ref)
        assert sorted(str(p) for p in image.platforms) == ["linux/amd64", "linux/arm64"]
        assert len(image.skipped) == 1 and "attestation" in image.skipped[0]
        assert image.for_platform("linux/arm64").files.content_of("/lib/x.so") == b"arm"
        assert image.for_platform(AMD64).files.content_of("/lib/x.so") == b"amd"
        assert image.annotations.get("org.opencontainers.image.version") == "1.0"
        assert image.index_digest == blobs.digest


def test_index_of_only_attestations_is_refused() -> None:
    blobs = with_attestation(build_blobs([_content(AMD64, b"a"), _content(ARM64, b"b")]))
    nested = json.loads(blobs.blobs[blobs.digest])
    nested["manifests"] = [m for m in nested["manifests"] if m["platform"]["os"] == "unknown"]
    from crafted import canonical_json, sha256

    body = canonical_json(nested)
    blobs.blobs[sha256(body)] = body
    blobs.index = canonical_json(
        {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(body), "size": len(body)}
            ],
        }
    )
    with pytest.raises(HarnessError, match="no runnable platform"):
        read_blobs(blobs)


def test_crafted_multi_platform_helper(sample, sample_base) -> None:
    arm = sample_base.copy()
    arm.platform = ARM64
    image = read_blobs(multi_platform([sample, arm], attestation=True))
    assert sorted(str(p) for p in image.platforms) == ["linux/amd64", "linux/arm64"]


# -- docker archives -------------------------------------------------------------------------
@pytest.mark.parametrize("blobs_style", [False, True], ids=["classic", "docker25-blobs"])
def test_docker_archive_is_read(tmp_path: Path, blobs_style: bool) -> None:
    items = [
        LayerEntry("/lib/x.so", FileType.FILE, 0o755, b"\x7fELF"),
        LayerEntry("/share/extension/x.control", FileType.FILE, 0o644, b"default_version = '1'\n"),
        LayerEntry("/share/extension/link.sql", FileType.SYMLINK, 0o777, linkname="x--1.sql"),
    ]
    from extharness.source.oci_writer import layer_tar

    archive = write_docker_archive(tmp_path / "d.tar", ARM64, {"k": "v"}, [layer_tar(items)], blobs_style)
    image = read_image(f"docker-archive:{archive}")
    assert [str(p) for p in image.platforms] == ["linux/arm64"]
    assert actual_tree(image.images[0].files) == expected_tree(items)
    assert dict(image.images[0].config.labels) == {"k": "v"}


def test_docker_archive_size_is_what_a_registry_stores(tmp_path: Path) -> None:
    # docker save writes layers uncompressed; the size rule must judge the gzipped size, as pushed.
    from extharness.source.oci_writer import layer_tar

    items = [LayerEntry("/share/extension/big.sql", FileType.FILE, 0o644, b"-- padding\n" * 200_000)]
    layer = layer_tar(items)
    docker = read_image(f"docker-archive:{write_docker_archive(tmp_path / 'd.tar', AMD64, {}, [layer])}")
    oci = read_image(
        f"oci-archive:{write_oci_archive(build_blobs([PlatformContent(AMD64, items)]), tmp_path / 'o.tar')}"
    )
    bound, exact = docker.images[0].stored_size(limit=len(layer) * 2)
    assert not exact and bound >= len(layer)  # under the limit: deflate's upper bound, nothing compressed
    estimate, exact = docker.images[0].stored_size(limit=len(layer) / 10)
    assert exact and estimate < len(layer) / 10  # over it: the gzip size a registry would store
    assert abs(estimate - oci.images[0].stored_size()[0]) < 1024
    assert docker.images[0].stored_size() == (estimate, True)  # worked out once, then kept


def test_docker_archive_with_a_tampered_blob_is_refused(tmp_path: Path) -> None:
    from extharness.source.oci_writer import layer_tar

    archive = write_docker_archive(tmp_path / "d.tar", AMD64, {}, [layer_tar([LayerEntry("/lib/a.so")])], True)
    members = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            members[m.name] = tar.extractfile(m).read()
    layer_name = next(
        n for n in members if n.startswith("blobs/") and n != json.loads(members["manifest.json"])[0]["Config"]
    )
    members[layer_name] = raw_layer([RawEntry("lib/evil.so", content=b"evil")])
    with tarfile.open(archive, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    with pytest.raises(HarnessError, match="corrupt or was modified"):
        read_image(f"docker-archive:{archive}")


# -- whiteouts --------------------------------------------------------------------------------
def test_whiteouts_across_two_layers() -> None:
    lower = raw_layer(
        [
            RawEntry("share", FileType.DIR, 0o755),
            RawEntry("share/extension", FileType.DIR, 0o755),
            RawEntry("share/extension/a.sql", content=b"a"),
            RawEntry("share/extension/b.sql", content=b"b"),
            RawEntry("share/extension/old", FileType.DIR, 0o755),
            RawEntry("share/extension/old/c.sql", content=b"c"),
            RawEntry("lib", FileType.DIR, 0o755),
            RawEntry("lib/x", FileType.DIR, 0o755),
            RawEntry("lib/x/y.so", content=b"y"),
            RawEntry("lib/x/sub", FileType.DIR, 0o755),
            RawEntry("lib/x/sub/deep.so", content=b"d"),
            RawEntry("lib/keep.so", content=b"k"),
        ]
    )
    upper = raw_layer(
        [
            RawEntry("share/extension/.wh.a.sql"),  # one file
            RawEntry("share/extension/.wh.old"),  # a folder and everything below it
            RawEntry("lib/x/.wh..wh..opq"),  # opaque: drop what lower layers had in lib/x ...
            RawEntry("lib/x/z.so", content=b"z"),  # ... but keep what this layer adds
            RawEntry("share/extension/b.sql", content=b"b2"),  # a plain overwrite
        ]
    )
    image = read_blobs(layered_blobs(AMD64, {}, [lower, upper]))
    files = image.images[0].files
    assert sorted(f.path for f in files) == [
        "/",
        "/lib",
        "/lib/keep.so",
        "/lib/x",
        "/lib/x/z.so",
        "/share",
        "/share/extension",
        "/share/extension/b.sql",
    ]
    assert files.content_of("/share/extension/b.sql") == b"b2"
    assert image.images[0].anomalies == []


@given(st.sets(st.sampled_from(["a", "b", "c", "d"])), st.sets(st.sampled_from(["a", "b", "c", "d", "e"])))
def test_whiteouts_remove_exactly_what_they_name(lower_names: set[str], removed: set[str]) -> None:
    lower = raw_layer([RawEntry(f"share/{n}.sql", content=n.encode()) for n in sorted(lower_names)])
    upper = raw_layer([RawEntry(f"share/.wh.{n}.sql") for n in sorted(removed)])
    files = read_blobs(layered_blobs(AMD64, {}, [lower, upper])).images[0].files
    assert {f.name for f in files if f.type == FileType.FILE} == {f"{n}.sql" for n in lower_names - removed}


def test_file_replacing_a_folder_drops_its_children() -> None:
    lower = raw_layer(
        [RawEntry("lib", FileType.DIR), RawEntry("lib/d", FileType.DIR), RawEntry("lib/d/x.so", content=b"x")]
    )
    upper = raw_layer([RawEntry("lib/d", content=b"now a file")])
    files = read_blobs(layered_blobs(AMD64, {}, [lower, upper])).images[0].files
    assert files.get("/lib/d/x.so") is None and files.content_of("/lib/d") == b"now a file"


def test_odd_entry_names_are_kept_as_anomalies() -> None:
    layer = raw_layer(
        [
            RawEntry("../../etc/x", content=b"1"),
            RawEntry("/abs.sql", content=b"2"),
            RawEntry("lib/a.so", content=b"3"),
            RawEntry("./lib/a.so", content=b"4"),
        ]
    )
    image = read_blobs(layered_blobs(AMD64, {}, [layer]))
    anomalies = " | ".join(image.images[0].anomalies)
    assert "'../../etc/x'" in anomalies and "'/abs.sql'" in anomalies and "more than once" in anomalies
    assert image.images[0].files.content_of("/etc/x") == b"1"  # read inside the image, never outside


@pytest.mark.parametrize("size", [0, 1000, (2 << 20) - 1, (5 << 20) + 12345])
def test_stored_size_of_an_uncompressed_layer_is_its_gzip_size(size: int) -> None:
    # GzipSize deflates large layers in primed pieces on threads: the same size as one stream,
    # give or take a few bytes per MiB (small layers: exactly one zlib.compress)
    import random
    import zlib

    from extharness.inspect.oci_reader import GzipSize

    rng = random.Random(size)
    words = [rng.randbytes(rng.randrange(1, 12)).hex() for _ in range(500)]
    text = " ".join(rng.choice(words) for _ in range(size // 8 + 1)).encode()[:size]
    data = text[: size // 2] + rng.randbytes(size - size // 2)  # text, then incompressible bytes
    one_stream = len(zlib.compress(data, 6))
    got = GzipSize(data).result()
    if size < 2 << 20:
        assert got == one_stream
    else:
        assert abs(got - one_stream) <= 0.001 * one_stream + 64, (got, one_stream)


def test_size_rule_on_a_docker_archive_compresses_only_when_the_bound_is_over_the_limit(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from extharness.checks.metadata import size
    from extharness.checks.target import LayoutTarget
    from extharness.source.oci_writer import layer_tar

    def judged(payload: bytes, max_mb: float) -> list:
        items = [LayerEntry("/share/extension/big.sql", FileType.FILE, 0o644, payload)]
        archive = write_docker_archive(tmp_path / f"{len(payload)}-{max_mb}.tar", AMD64, {}, [layer_tar(items)])
        image = read_image(f"docker-archive:{archive}").images[0]
        return list(size(SimpleNamespace(image=image), LayoutTarget(operand=None, max_image_mb=max_mb)))  # type: ignore[arg-type]

    text = b"-- padding\n" * 300_000  # 3.3 MB that gzip makes about 10 kB of
    (under,) = judged(text, 10)
    assert under.severity.value == "info" and under.message.startswith("at most 3.3"), under.message
    (estimated,) = judged(text, 1)  # the bound is over 1 MB: the gzip size decides, and passes
    assert estimated.severity.value == "info" and estimated.message.startswith("0.0"), estimated.message
    (over,) = judged(os.urandom(1_500_000), 1)  # random bytes do not compress: over the limit
    assert over.severity.value == "error" and "over --max-image-mb 1" in over.message, over.message
