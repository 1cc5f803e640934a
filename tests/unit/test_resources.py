"""One module finds the project's data: no other module reaches above the installed package.

An installed wheel has no checkout around it, so ``Path(__file__).parents[3] / "cnpg"`` points
into site-packages' parent. Every data file goes through ``extharness.runtime.resources``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from extharness.runtime import resources

SRC = Path(resources.__file__).resolve().parents[2]  # this test may reach: <repo>/src
PACKAGE = SRC / "extharness"


def _reaches_up(tree: ast.AST) -> list[int]:
    """Lines with ``<x>.parents[...]`` or ``<x>.parent.parent``: an ancestor of a file's folder."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "parent"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parent"
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_resources_module_reaches_above_its_folder() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(resources.__file__).resolve():
            continue
        source = path.read_text()
        if "__file__" not in source:
            continue  # .parents of a user's path (a release folder, a cache entry) is fine
        for line in _reaches_up(ast.parse(source)):
            offenders.append(f"{path.relative_to(SRC)}:{line}: {source.splitlines()[line - 1].strip()}")
    assert offenders == [], "use extharness.runtime.resources.data_path instead:\n" + "\n".join(offenders)


def test_the_checker_sees_both_spellings() -> None:
    tree = ast.parse("a = Path(__file__).parents[3]\nb = Path(__file__).resolve().parent.parent\n")
    assert _reaches_up(tree) == [1, 2]


def test_in_a_checkout_the_data_are_the_repositorys_files() -> None:
    root = SRC.parent
    assert resources.checkout_root() == root
    assert resources.data_path("cnpg/Dockerfile.ext") == root / "cnpg" / "Dockerfile.ext"
    assert resources.data_path("cnpg/Dockerfile.ext").is_file()


def test_modules_take_their_data_from_it() -> None:
    from extharness import gate
    from extharness.postgres import base_images
    from extharness.source import acquire, sample, sample_rs

    root = resources.data_root()
    assert acquire.DOCKERFILE_EXT == root / "cnpg" / "Dockerfile.ext"
    assert acquire.DOCKERFILE_EXT_BUILD == sample_rs.RECIPE == root / "cnpg" / "Dockerfile.ext-build"
    assert sample.SAMPLE_DIR == root / "sample" / "pg_ticker"
    assert sample_rs.SAMPLE_RS_DIR == root / "sample" / "pg_ticker_rs"
    assert gate.LAYOUT_TESTS == root / "tests" / "layout"
    if not os.environ.get("EXTHARNESS_IMAGES_DIR"):
        assert base_images.IMAGES_DIR == root / "images"


def test_outside_a_checkout_the_shipped_copies(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site-packages" / "extharness"
    monkeypatch.setattr(resources, "PACKAGE_DIR", site)
    monkeypatch.setattr(resources, "SHIPPED_DIR", site / "_data")
    resources.checkout_root.cache_clear()
    try:
        assert resources.checkout_root() is None
        assert resources.data_path("tests/layout") == site / "_data" / "tests" / "layout"
        assert "installed package" in resources.where()
    finally:
        resources.checkout_root.cache_clear()
