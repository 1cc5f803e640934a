"""Tier marks come from folders only, which lets the root conftest skip whole folders under ``-m``.

``pytest -m layout`` with every test path collects only ``tests/layout``: the root conftest's
``could_select`` decides, from the ``-m`` expression alone, that no test of ``tests/sql``,
``tests/unit``, ... can match. That holds while no test carries another folder's tier mark,
which the first test checks; the others check the decision itself.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from extharness.pytest_plugin import TIER_FOLDERS

ROOT = Path(__file__).resolve().parents[2]
TIER_MARK = re.compile(
    r"\bmark\.(" + "|".join(TIER_FOLDERS) + r")\b|add_marker\(\s*[\"'](" + "|".join(TIER_FOLDERS) + ")"
)


def _root_conftest():
    spec = importlib.util.spec_from_file_location("extharness_root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_no_test_carries_a_tier_mark_of_its_own() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if TIER_MARK.search(line)
    ]
    assert not found, (
        "tier marks come from the folder (tests/<tier>/); a test marked with another tier would be skipped "
        "by the root conftest's folder pruning under -m:\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    ("markexpr", "folder", "selectable"),
    [
        ("layout", "layout", True),
        ("layout", "sql", False),
        ("layout", "unit", False),
        ("layout", "recipes", False),  # no tier mark there
        ("layout or sql", "sql", True),
        ("not cnpg", "unit", True),
        ("not cnpg", "cnpg", False),
        ("not layout", "recipes", True),
        ("layout or slow", "unit", True),  # a unit test may be marked slow
        ("layout and slow", "unit", False),
        ("layout and not slow", "layout", True),
        ("sql and xdist_group(name='kit')", "kit", False),
        ("xdist_group(name='kit')", "kit", True),
        ("layout(x=1)", "layout", False),  # the folder's mark has no arguments
        ("layout and (", "sql", True),  # not an expression: pytest says so, nothing is skipped
    ],
)
def test_could_select(markexpr: str, folder: str, selectable: bool) -> None:
    assert _root_conftest().could_select(markexpr, folder) is selectable
