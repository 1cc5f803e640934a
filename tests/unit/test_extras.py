"""The extras are split by need, and what the CLI says about them is true.

``pip install extharness`` is enough for the layout tier; ``extharness[sql]`` and
``extharness[cnpg]`` add what those tiers import (``extharness.cli.TIER_NEEDS``, which
``extharness check`` names when a module is missing); ``[dev]`` is the project's own tooling;
``[test]`` is everything the README's test command needs, pinned exactly.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from extharness.cli import TIER_NEEDS, TIERS, missing_extras

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[Requirement]] = {
    name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()
}
BASE = [Requirement(r) for r in PROJECT["dependencies"]]


def _names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def _distribution_of(module: str) -> str:
    found = packages_distributions().get(module)
    assert found, f"{module}: no installed distribution provides it (pip install -e '.[test]')"
    return canonicalize_name(found[0])


def test_every_extra_is_in_test_with_the_same_pin() -> None:
    test = {canonicalize_name(r.name): r for r in EXTRAS["test"]}
    for extra in ("sql", "cnpg", "dev"):
        for req in EXTRAS[extra]:
            name = canonicalize_name(req.name)
            assert name in test, f"[{extra}] has {req}, [test] does not: the README's test command needs it"
            assert req.specifier == test[name].specifier, f"[{extra}] {req} vs [test] {test[name]}: one pin"
            assert req.extras <= test[name].extras, f"[{extra}] {req} vs [test] {test[name]}"


def test_test_pins_exactly_within_the_base_ranges() -> None:
    test = {canonicalize_name(r.name): r for r in EXTRAS["test"]}
    for req in test.values():
        (spec,) = req.specifier
        assert spec.operator == "==", f"[test] {req}: pin exactly (==)"
    for req in BASE:
        name = canonicalize_name(req.name)
        assert name in test, f"[test] does not pin the base dependency {req}"
        (pin,) = test[name].specifier
        assert req.specifier.contains(pin.version), f"[test] {test[name]} is outside the base range {req}"


@pytest.mark.parametrize("tier", TIERS)
def test_the_extra_named_by_the_cli_installs_what_the_tier_needs(tier: str) -> None:
    needed = {_distribution_of(m) for m in TIER_NEEDS[tier]}
    if tier == "layout":
        assert needed == set(), "the layout tier runs on the base dependencies (pip install extharness)"
        return
    assert tier in EXTRAS, f"extharness check prints pip install 'extharness[{tier}]': pyproject has no such extra"
    assert needed <= _names(EXTRAS[tier]), f"[{tier}] lacks {sorted(needed - _names(EXTRAS[tier]))}"
    assert not (_names(EXTRAS[tier]) & _names(BASE)), f"[{tier}] repeats a base dependency"


def test_the_cli_message_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    lines = missing_extras(["layout", "sql", "cnpg"])
    assert lines == [
        "the sql tier needs psycopg: pip install 'extharness[sql]'",
        "the cnpg tier needs kubernetes, yaml, psycopg: pip install 'extharness[cnpg]'",
    ]


# --- TIER_NEEDS is what the tier folders import (through the extharness modules they import) ---


def _module_file(name: str, folder: Path) -> Path | None:
    """The file of ``name`` if it is extharness's or a module next to the importing one."""
    parts = name.split(".")
    base = SRC.joinpath(*parts) if parts[0] == "extharness" else folder.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, module_level: bool) -> list[str]:
    """Imported names; with ``module_level``, only those run at import (not inside functions)."""
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.Import):
                found += [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found += [child.module, *(f"{child.module}.{a.name}" for a in child.names)]
            stack.append(child)
    return found


def third_party_imports(files: list[Path], module_level: bool) -> set[str]:
    """Top-level names of the non-stdlib modules ``files`` import, following extharness's own."""
    seen: set[Path] = set()
    third: set[str] = set()
    todo = list(files)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(ast.parse(path.read_text()), module_level):
            top = name.split(".")[0]
            own = _module_file(name, path.parent)
            if own is not None:
                todo.append(own)
            elif top != "extharness" and top != "__future__" and top not in sys.stdlib_module_names:
                if _module_file(top, path.parent) is None:
                    third.add(top)
    return third


def _tier_files(tier: str) -> list[Path]:
    return [
        *sorted((ROOT / "tests" / tier).glob("*.py")),
        ROOT / "conftest.py",
        SRC / "extharness" / "pytest_plugin.py",
    ]


#: Imported inside functions only, where they are optional: zstd layers (a hint to install it).
OPTIONAL = {"zstandard"}


@pytest.mark.parametrize("tier", TIERS)
def test_tier_needs_cover_what_the_tier_imports_when_collected(tier: str) -> None:
    base = {m for m, dists in packages_distributions().items() if canonicalize_name(dists[0]) in _names(BASE)}
    at_import = third_party_imports(_tier_files(tier), module_level=True) - {"_pytest"}
    missing = at_import - base - set(TIER_NEEDS[tier])
    assert not missing, f"tests/{tier} imports {sorted(missing)} at collection: add it to TIER_NEEDS and [{tier}]"


@pytest.mark.parametrize("tier", TIERS)
def test_tier_needs_are_all_used_by_the_tier(tier: str) -> None:
    used = third_party_imports(_tier_files(tier), module_level=False)
    unused = set(TIER_NEEDS[tier]) - used
    assert not unused, f"TIER_NEEDS[{tier!r}] names {sorted(unused)}, which nothing tests/{tier} runs imports"


def test_the_import_walk_sees_module_level_and_function_imports() -> None:
    tree = ast.parse("import yaml\nfrom kubernetes import client\ndef f():\n    import psycopg\n")
    assert sorted(_imports(tree, module_level=True)) == ["kubernetes", "kubernetes.client", "yaml"]
    assert "psycopg" in _imports(tree, module_level=False)
