"""The embedded builder is reproducible and makes what cnpg/Dockerfile.ext makes.

Same release folder, same digest (whatever the files' times or the cache); a changed file, a
different digest. With podman or docker present, the image the engine builds from
cnpg/Dockerfile.ext has the same files, types, modes, owners and contents as the embedded
builder's, and the same labels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from crafted import tree_of

from extharness.inspect.oci_reader import read_image
from extharness.source.acquire import build_from_release_folder
from extharness.source.engine import detect_engine
from extharness.source.release_folder import ReleaseFolder


def _archive_digest(acquired) -> tuple[str | None, bytes]:
    image = read_image(acquired.reader_ref)
    path = Path(acquired.reader_ref.split(":", 1)[1])
    return image.index_digest, path.read_bytes()


def _copy(release: Path, dest: Path) -> Path:
    shutil.copytree(release, dest, symlinks=True)
    return dest


def test_same_folder_same_digest(sample_release: Path, tmp_path: Path) -> None:
    folder = ReleaseFolder.open(sample_release)
    labels = folder.default_labels(None)
    one = build_from_release_folder(folder, labels, tmp_path / "cache-a", None, "embedded")
    # A copy elsewhere with other file times, into another cache: still the same image.
    copy = _copy(sample_release, tmp_path / "copy")
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    two = build_from_release_folder(ReleaseFolder.open(copy), labels, tmp_path / "cache-b", None, "embedded")
    digest_one, bytes_one = _archive_digest(one)
    digest_two, bytes_two = _archive_digest(two)
    assert digest_one and digest_one == digest_two
    assert bytes_one == bytes_two  # the archive itself, byte for byte


def test_changed_file_changes_the_digest(sample_release: Path, tmp_path: Path) -> None:
    copy = _copy(sample_release, tmp_path / "copy")
    labels = ReleaseFolder.open(copy).default_labels(None)
    before = _archive_digest(
        build_from_release_folder(ReleaseFolder.open(copy), labels, tmp_path / "c1", None, "embedded")
    )[0]
    script = next((copy / "artifact" / "extension").glob("*--1.1.sql"))
    script.write_text(script.read_text() + "\n-- one more line\n")
    after = _archive_digest(
        build_from_release_folder(ReleaseFolder.open(copy), labels, tmp_path / "c2", None, "embedded")
    )[0]
    script.chmod(0o600)
    mode_changed = _archive_digest(
        build_from_release_folder(ReleaseFolder.open(copy), labels, tmp_path / "c3", None, "embedded")
    )[0]
    assert len({before, after, mode_changed}) == 3


def test_release_folder_is_not_modified_by_building(sample_release: Path, tmp_path: Path) -> None:
    copy = _copy(sample_release, tmp_path / "copy")
    snapshot = tree_of(copy)
    build_from_release_folder(
        ReleaseFolder.open(copy), ReleaseFolder.open(copy).default_labels(None), tmp_path / "cache", None, "embedded"
    )
    assert tree_of(copy) == snapshot


def _entries(reader_ref: str) -> dict[str, tuple]:
    image = read_image(reader_ref)
    assert len(image.images) == 1
    return {
        f.path: (f.type.value, oct(f.mode), f.uid, f.gid, f.size, f.content, f.linkname) for f in image.images[0].files
    }


def test_engine_build_matches_embedded_build(sample_release: Path, tmp_path: Path) -> None:
    engine = detect_engine()
    if engine is None:
        pytest.skip("no container engine: podman or docker is needed to build cnpg/Dockerfile.ext")
    # A folder with a sub-folder and a relative link too, as COPY artifact/extension/ copies them.
    copy = _copy(sample_release, tmp_path / "dist")
    docs = copy / "artifact" / "extension" / "docs"
    docs.mkdir()
    docs.chmod(0o750)
    (docs / "README").write_text("pg_ticker\n")
    (docs / "README").chmod(0o640)
    os.symlink("pg_ticker--1.1.sql", copy / "artifact" / "extension" / "pg_ticker--1.1.0.sql")
    folder = ReleaseFolder.open(copy)
    labels = folder.default_labels(None, version="1.1-test")
    embedded = build_from_release_folder(folder, labels, tmp_path / "cache", None, "embedded")
    built = build_from_release_folder(folder, labels, tmp_path / "cache", engine, "engine")
    try:
        ours, theirs = _entries(embedded.reader_ref), _entries(built.reader_ref)
        differences = {
            p: (ours.get(p), theirs.get(p)) for p in sorted(set(ours) | set(theirs)) if ours.get(p) != theirs.get(p)
        }
        assert differences == {}, "the embedded builder differs from cnpg/Dockerfile.ext"
        engine_labels = dict(read_image(built.reader_ref).images[0].config.labels)
        for key, value in labels.as_oci().items():
            assert engine_labels.get(key) == value, key
    finally:
        if built.engine_ref:
            engine.remove_image(built.engine_ref)
