"""One finding type for every tier: stable rule ids, the JSON shape, grouping and the summary."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from extharness.checks import upgrade
from extharness.checks.findings import (
    CASES_SHOWN,
    Finding,
    Severity,
    error,
    finding_line,
    grouped_findings,
    info,
    summary_lines,
    warning,
)
from extharness.kube import deploy
from extharness.kube import manifests as m
from extharness.postgres import sqlchecks

ROOT = Path(__file__).resolve().parents[2]
SQL_TESTS = ROOT / "tests" / "sql"
MANIFESTS = ROOT / "src" / "extharness" / "kube" / "manifests.py"
DEPLOY = ROOT / "src" / "extharness" / "kube" / "deploy.py"
CNPG_TESTS = ROOT / "tests" / "cnpg"
OPERAND = "ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie"


# -- the JSON shape ----------------------------------------------------------------------------------
def test_finding_as_dict_is_plain_json_with_every_field() -> None:
    finding = Finding("sql.smoke", Severity.ERROR, "profile step 2", "returned [[3]], expected [[4]]", cases=("a", "b"))
    data = json.loads(json.dumps(finding.as_dict()))
    assert data == {
        "rule": "sql.smoke",
        "severity": "error",
        "path": "profile step 2",
        "message": "returned [[3]], expected [[4]]",
        "platform": None,
        "cases": ["a", "b"],
    }


def test_sql_finding_names_the_backend_as_its_case() -> None:
    finding = sqlchecks.sql_finding("sql.create", "CREATE EXTENSION x", "could not access file", "native")
    assert (finding.rule, finding.severity, finding.cases) == ("sql.create", Severity.ERROR, ("native backend",))
    assert sqlchecks.sql_finding("sql.create", "x", "y").cases == ()


def test_sql_finding_refuses_an_unregistered_id() -> None:
    with pytest.raises(ValueError, match="sql.crate"):
        sqlchecks.sql_finding("sql.crate", "x", "y")


# -- grouping -----------------------------------------------------------------------------------------
def test_equal_findings_merge_their_cases_and_different_ones_stay() -> None:
    native = sqlchecks.sql_finding("sql.create", "CREATE EXTENSION x", "no such file", "native").as_dict()
    composite = sqlchecks.sql_finding("sql.create", "CREATE EXTENSION x", "no such file", "composite").as_dict()
    other = sqlchecks.sql_finding("sql.create", "CREATE EXTENSION x", "another error", "native").as_dict()
    grouped = grouped_findings([native, composite, dict(native), other])
    assert [(f["message"], f["cases"]) for f in grouped] == [
        ("another error", ["native backend"]),
        ("no such file", ["native backend", "composite backend"]),
    ]


def test_grouped_findings_stand_together_by_rule() -> None:
    found = [
        warning("layout.b", "/p", "w").as_dict(),
        error("cnpg.manifest.kind", "kind", "k").as_dict(),
        info("layout.a", "/q", "n").as_dict(),
        error("cnpg.manifest.api-version", "apiVersion", "a").as_dict(),
    ]
    assert [f["rule"] for f in grouped_findings(found)] == [
        "cnpg.manifest.api-version",
        "cnpg.manifest.kind",
        "layout.a",
        "layout.b",
    ]


# -- the terminal summary --------------------------------------------------------------------------------
def test_summary_names_every_note_and_warning_in_full_under_its_severity() -> None:
    long_message = "the library needs libfoo.so.3, " + "which nothing provides " * 20 + "(end)"
    found = grouped_findings(
        [
            info("layout.control.requires", "x.control", "requires plpgsql").as_dict(),
            info("layout.metadata.size", "image", "1.2 MB").as_dict(),
            warning("layout.tree.mode", "/lib/x.so", long_message).as_dict(),
            error("sql.create", "CREATE EXTENSION x", "failed").as_dict(),
        ]
    )
    lines = summary_lines(found)
    assert lines[0] == "1 error(s), 1 warning(s), 2 note(s)"
    assert lines[1:] == [
        "errors (1):",
        "  sql.create error: CREATE EXTENSION x: failed",
        "warnings (1):",
        f"  layout.tree.mode warning: /lib/x.so: {long_message}",
        "notes (2):",
        "  layout.control.requires info: x.control: requires plpgsql",
        "  layout.metadata.size info: image: 1.2 MB",
    ]


def test_summary_of_merged_findings_lists_their_cases_and_skips_empty_groups() -> None:
    a = sqlchecks.sql_finding("sql.workers", "ticker worker", "missing", "native").as_dict()
    b = sqlchecks.sql_finding("sql.workers", "ticker worker", "missing", "imagevolume").as_dict()
    lines = summary_lines(grouped_findings([a, b]))
    assert lines == [
        "1 error(s), 0 warning(s), 0 note(s)",
        "errors (1):",
        "  sql.workers error: ticker worker: missing [2 case(s): native backend, imagevolume backend]",
    ]


# -- manifest rule ids ----------------------------------------------------------------------------------
def _cluster(**postgresql: object) -> dict:
    doc = m.render_cluster("demo", image_name=OPERAND)
    doc["spec"]["postgresql"] = dict(postgresql)
    return doc


@pytest.mark.parametrize(
    ("doc", "rules"),
    [
        (_cluster(extensions=[{"name": "Bad", "image": {"reference": "r:1"}}]), {"cnpg.manifest.extension-name"}),
        (
            _cluster(extensions=[{"name": "a", "image": {"reference": "r:1"}, "dynamic_library_path": ["../x"]}]),
            {"cnpg.manifest.path-outside"},
        ),
        (_cluster(shared_preload_libraries=["$libdir/x"]), {"cnpg.manifest.preload-name"}),
        (
            _cluster(parameters={"port": "5433", "work_mem": 4}),
            {"cnpg.manifest.parameters-fixed", "cnpg.manifest.parameters-shape"},
        ),
        ({"kind": "Pod", "metadata": {"name": "p"}}, {"cnpg.manifest.kind"}),
    ],
)
def test_manifest_checks_report_findings_with_their_rule_id(doc: dict, rules: set[str]) -> None:
    report = m.check_manifest(doc)
    assert {f.rule for f in report.findings} == rules
    for finding in report.findings:
        owner, _title = m.RULES[finding.rule]
        assert isinstance(finding, Finding) and finding.severity == Severity.ERROR
        assert finding.message.endswith(f"[{owner}]"), finding


def test_a_good_cluster_has_no_findings() -> None:
    report = m.check_cluster(_cluster(extensions=[{"name": "pg-ticker", "image": {"reference": "r:1"}}]))
    assert report.ok and report.findings == [], str(report)


def test_every_manifest_rule_is_used_and_every_use_registered() -> None:
    tree = ast.parse(MANIFESTS.read_text())
    used = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("_f", "manifest_finding")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    registered = {rule.removeprefix("cnpg.manifest.") for rule in m.RULES}
    assert sorted(used - registered) == [], "manifests.py uses rule ids RULES does not list"
    assert sorted(registered - used) == [], "RULES lists rule ids no check reports"
    assert all(owner in ("cnpg", "harness") for owner, _title in m.RULES.values())


# -- sql rule ids ------------------------------------------------------------------------------------------
def test_every_sql_rule_is_checked_by_a_sql_test_and_every_id_there_registered() -> None:
    text = "\n".join(p.read_text() for p in sorted(SQL_TESTS.glob("*.py")))
    used = set(re.findall(r"""(?:\.fail|\.finding)\(\s*["'](sql\.[a-z.-]+)["']""", text))
    registered = set(sqlchecks.RULES) | set(upgrade.RULES)
    assert sorted(used - registered) == [], "tests/sql names rule ids sqlchecks.RULES does not list"
    assert sorted(set(sqlchecks.RULES) - used) == [], "add a check in tests/sql/ reporting these rule ids"


# -- cnpg cluster rule ids ---------------------------------------------------------------------------------
def test_cluster_finding_refuses_an_unregistered_rule_id() -> None:
    finding = deploy.cluster_finding("cnpg.preload", "pg_ticker", "pg_ticker is not in shared_preload_libraries ()")
    assert (finding.rule, finding.severity, finding.path) == ("cnpg.preload", Severity.ERROR, "pg_ticker")
    assert deploy.cluster_finding("cnpg.imagevolume.path", "cluster", "m", Severity.WARNING).severity == "warning"
    with pytest.raises(ValueError, match="unknown cnpg rule id 'cnpg.nope'"):
        deploy.cluster_finding("cnpg.nope", "x", "y")
    assert not set(deploy.RULES) & (set(m.RULES) | set(upgrade.CLUSTER_RULES)), "one id, one registry"


def test_every_cluster_rule_is_reported_and_every_id_reported_registered() -> None:
    text = "\n".join(p.read_text() for p in [DEPLOY, *sorted(CNPG_TESTS.glob("*.py"))])
    used = set(re.findall(r"""cluster_finding\(\s*["'](cnpg\.[a-z.-]+)["']""", text))
    used |= set(re.findall(r"""_reached\(\s*["'](cnpg\.[a-z.-]+)["']""", text))  # tests/cnpg/cluster_setup.py
    assert sorted(used - set(deploy.RULES)) == [], "cluster checks use rule ids deploy.RULES does not list"
    assert sorted(set(deploy.RULES) - used) == [], "deploy.RULES lists rule ids no cluster check reports"


def test_every_cluster_rule_id_is_documented() -> None:
    documented = (ROOT / "docs" / "cnpg-tier.md").read_text() + (ROOT / "README.md").read_text()
    assert sorted(r for r in deploy.RULES if f"`{r}`" not in documented) == []


def test_a_long_case_list_is_counted_past_its_first_cases_and_the_message_stays_whole() -> None:
    """Debian's pgvector: one note with 861 update paths made a 30-line terminal line."""
    cases = tuple(f"0.{n} -> 0.8.7" for n in range(861))
    finding = Finding("sql.upgrade.unreplayable", Severity.INFO, "vector", "x" * 500, cases=cases)
    line = finding_line(finding.as_dict())
    assert line == str(finding)
    assert "x" * 500 in line and "861 case(s): 0.0 -> 0.8.7, " in line
    assert f"0.{CASES_SHOWN - 1} -> 0.8.7, ... and {861 - CASES_SHOWN} more (all in --findings-json)]" in line
    assert f"0.{CASES_SHOWN} -> 0.8.7" not in line
    assert finding.as_dict()["cases"] == list(cases)  # the JSON keeps every case
