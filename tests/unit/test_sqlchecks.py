"""The sql tier's pure parts: comparisons, explanations, CNPG's settings, the backend summary."""

from __future__ import annotations

import decimal
from types import SimpleNamespace

import pytest

from extharness.postgres.backend_summary import backend_of, summarize
from extharness.postgres.profiles import SmokeStep
from extharness.postgres.server import cnpg_settings, merged_settings
from extharness.postgres.sqlchecks import (
    StepResult,
    compare_members,
    explain_create_failure,
    rows_match,
    shadowing_problem,
    values_equal,
)


def test_cnpg_settings_in_list_order():
    assert cnpg_settings("/extensions", ["a", "b"]) == {
        "extension_control_path": "$system:/extensions/a/share:/extensions/b/share",
        "dynamic_library_path": "$libdir:/extensions/a/lib:/extensions/b/lib",
    }


def test_user_paths_come_after_cnpg_and_preload_is_bare():
    merged = merged_settings(
        cnpg_settings("/extensions", ["a"]), {"dynamic_library_path": "/opt/x", "work_mem": "8MB"}, ["a"]
    )
    assert merged["dynamic_library_path"] == "$libdir:/extensions/a/lib:/opt/x"
    assert merged["shared_preload_libraries"] == "a" and merged["work_mem"] == "8MB"


def test_compare_members_names_every_difference():
    fresh = {"schema s": "", "function s.f(integer)": "returns integer", "table s.t": "a integer, b text"}
    updated = {"schema s": "", "table s.t": "a integer", "view s.v": "select 1"}
    problems = compare_members(updated, fresh)
    assert problems[0] == "function s.f(integer): missing after the update (a fresh install creates it)"
    assert problems[1] == "view s.v: present after the update but not in a fresh install"
    assert problems[2].startswith("table s.t: differs")
    assert compare_members(fresh, dict(fresh)) == []


@pytest.mark.parametrize(
    ("expected", "actual", "equal"),
    [
        (5, 5, True),
        (5, decimal.Decimal("5"), True),
        (1.5, decimal.Decimal("1.5"), True),
        ("5", 5, True),
        (None, None, True),
        (None, 0, False),
        (True, True, True),
        (1, True, False),
        ("1.1.0", "1.1.0", True),
    ],
)
def test_values_equal(expected, actual, equal):
    assert values_equal(expected, actual) is equal


def test_rows_match_needs_same_shape():
    assert rows_match([[1, "a"], [2, "b"]], [(1, "a"), (2, "b")])
    assert not rows_match([[1, "a"]], [(1, "a"), (2, "b")])
    assert not rows_match([[1]], [(1, "a")])


def test_step_result_describes_the_mismatch():
    result = StepResult(SmokeStep("SELECT  1", [[2]]), [(1,)], None)
    assert not result.ok and result.describe() == "'SELECT 1' returned [[1]], expected [[2]]"


def test_shadowing_explains_system_first():
    assert shadowing_problem("x", {"y.control"}, "base") is None
    problem = shadowing_problem("x", {"x.control", "x--1.0.sql"}, "localhost/base:18")
    assert "$system" in problem and "extension_control_path" in problem and "x.control" in problem


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ('could not access file "$libdir/x": No such file or directory', "LOAD '$libdir/...' does not search"),
        (
            'could not load library "/e/x/lib/x.so": libdep.so.1: cannot open shared object file: No such file or directory',
            "needs libdep.so.1",
        ),
        (
            'could not load library "/e/x.so": /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38\' not found',
            "newer glibc (GLIBC_2.38)",
        ),
        ('extension "x" is not available', "did not find the control file"),
    ],
)
def test_create_failures_are_explained(message, hint):
    assert hint in explain_create_failure(message, "x")


def test_backend_summary_counts_and_reasons():
    def rep(nodeid, when, longrepr=None):
        return SimpleNamespace(nodeid=nodeid, when=when, longrepr=longrepr)

    stats = {
        "passed": [
            rep("tests/sql/test_a.py::t[native]", "call"),
            rep("tests/sql/test_u.py::u[native-1.0-1.1]", "call"),
        ],
        "skipped": [rep("tests/sql/test_a.py::t[composite]", "setup", ("c.py", 0, "composite backend: no engine"))],
    }
    assert backend_of("tests/sql/test_u.py::u[native-1.0-1.1]") == "native"
    assert backend_of("tests/unit/test_x.py::t[native]") is None
    assert summarize(stats) == ["native       ran: 2 passed", "composite    did not run: no engine"]


def test_native_skips_when_host_glibc_is_older():
    from extharness.inspect.operand import GlibcVersion
    from extharness.postgres.native import load_problem

    def layout(arch: str, glibc: str | None):
        summary = SimpleNamespace(max_glibc_needed=GlibcVersion.parse(glibc) if glibc else None)
        return SimpleNamespace(
            image=SimpleNamespace(platform=SimpleNamespace(architecture=arch)),
            platform=f"linux/{arch}",
            elf={"/lib/x.so": summary},
        )

    assert load_problem(layout("amd64", "2.34"), "amd64", GlibcVersion.parse("2.36")) is None
    assert load_problem(layout("amd64", None), "amd64", GlibcVersion.parse("2.36")) is None
    reason = load_problem(layout("amd64", "2.38"), "amd64", GlibcVersion.parse("2.36"))
    assert "x.so needs GLIBC_2.38 but this host has glibc 2.36" in reason and "\n" not in reason
    assert "linux/arm64" in load_problem(layout("arm64", None), "amd64", GlibcVersion.parse("2.36"))
