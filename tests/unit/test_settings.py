"""One table of every EXTHARNESS_* limit (``extharness.runtime.settings``): complete, in
agreement with the modules that still read their own, read when used, and the source of the
"every setting" section of docs/timeouts.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import extharness
from extharness.errors import HarnessError
from extharness.runtime.settings import LIMITS, limit_of, with_generated_section

PACKAGE = Path(extharness.__file__).resolve().parent
DOC = PACKAGE.parents[1] / "docs" / "timeouts.md"
TABLE = {entry.name: entry for entry in LIMITS}
LIMIT_NAME = re.compile(r"EXTHARNESS_[A-Z_]+_(?:TIMEOUT|BYTES)\b")


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def _environ_reads(tree: ast.AST):
    """(name, default expression) of every ``os.environ.get("EXTHARNESS_...", default)``."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) == "os.environ.get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and LIMIT_NAME.fullmatch(str(node.args[0].value))
        ):
            yield node.args[0].value, (node.args[1] if len(node.args) > 1 else None)


def test_every_limit_the_code_names_is_in_the_table() -> None:
    named = {name for text in _sources().values() for name in LIMIT_NAME.findall(text)}
    assert named - set(TABLE) == set(), "limits missing from runtime/settings.py"


def test_no_module_reads_a_limit_of_its_own() -> None:
    """Every limit goes through the table (``limit_of``, read when used), none through os.environ."""
    for where, text in _sources().items():
        if where == "runtime/settings.py":
            continue
        reads = [name for name, _ in _environ_reads(ast.parse(text))]
        assert not reads, f"{where}: {', '.join(reads)} read from os.environ; use runtime.settings.limit_of"


def test_a_limit_is_read_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXTHARNESS_ENGINE_TIMEOUT", raising=False)
    assert limit_of("EXTHARNESS_ENGINE_TIMEOUT") == 120
    monkeypatch.setenv("EXTHARNESS_ENGINE_TIMEOUT", "7.5")
    assert limit_of("EXTHARNESS_ENGINE_TIMEOUT") == 7.5


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_limit_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("EXTHARNESS_PG_START_TIMEOUT", raw)
    with pytest.raises(HarnessError) as raised:
        limit_of("EXTHARNESS_PG_START_TIMEOUT")
    assert str(raised.value).startswith(f"EXTHARNESS_PG_START_TIMEOUT={raw!r}: expected a number of seconds")
    assert "\n" not in str(raised.value)


def test_the_generated_section_of_docs_timeouts_is_current() -> None:
    text = DOC.read_text()
    assert with_generated_section(text) == text, (
        "docs/timeouts.md is out of date: python -m extharness.runtime.settings --write docs/timeouts.md"
    )
