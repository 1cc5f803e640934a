"""Broken 1.1 releases of the sample fail the image-to-image upgrade with a rule id naming what is wrong.

The old image is the sample's published 1.0 release folder (``extharness sample --version 1.0``);
each candidate is today's 1.1 with one defect in its update script, built with PGXS. Both go
through ``pytest tests/sql/test_upgrade_images.py --pg-backend native --upgrade-from OLD`` in a
subprocess; the assertions are on its JUnit report (which test failed) and its findings JSON
(which ``sql.upgrade.*`` rule, and the object or statement it names).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from nested_env import native_session_env

from extharness.errors import EnvironmentMissing
from extharness.postgres.native import NativeBackend, run_user, runtime_root
from extharness.source.acquire import default_cache_dir
from extharness.source.sample import SAMPLE_DIR, build_release_folder, build_sample_release_folder, default_pg_config

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 600
UPDATE_SCRIPT = "pg_ticker--1.0--1.1.sql"
INDEX = "CREATE INDEX events_created_at_idx ON ticker.events (created_at);"


@dataclass(frozen=True)
class Variant:
    name: str
    test: str  # the test that must fail
    rule: str  # a finding with this rule id ...
    path: str  # ... whose path matches this regular expression
    change: Callable[[str], str]  # the update script's text -> the broken one
    says: str = ""  # and whose message matches this one


def _without_function(text: str) -> str:
    cut = text.index("CREATE FUNCTION ticker.mul")
    return text[:cut]


def _without_index(text: str) -> str:
    assert INDEX in text
    return text.replace(INDEX, "")


def _index_on_missing_table(text: str) -> str:
    assert INDEX in text
    return text.replace(INDEX, INDEX.replace("ON ticker.events", "ON ticker.event"))


def _rewrites_payloads(text: str) -> str:
    return text + "\nUPDATE ticker.events SET payload = upper(payload);\n"


VARIANTS = [
    Variant(
        "forgets-an-object",
        "test_updated_objects_match_fresh_install",
        "sql.upgrade.missing-object",
        r"^function ticker\.mul\(integer,\s*integer\)$",
        _without_function,
    ),
    Variant(  # an index is no member of the extension: its table's definition differs, in full
        "forgets-an-index",
        "test_updated_objects_match_fresh_install",
        "sql.upgrade.object-differs",
        r"^table ticker\.events$",
        _without_index,
        r"fresh install: .*CREATE INDEX events_created_at_idx ON ticker\.events USING btree \(created_at\)",
    ),
    Variant(
        "update-fails",
        "test_old_release_updates_to_candidate",
        "sql.upgrade.update-failed",
        r"^pg_ticker--1\.0--1\.1\.sql:\d+: CREATE INDEX events_created_at_idx ON ticker\.event \(created_at\);$",
        _index_on_missing_table,
    ),
    Variant(
        "changes-the-data",
        "test_data_intact_after_update",
        "sql.upgrade.data-changed",
        r"^SELECT id, payload FROM ticker\.events ORDER BY id$",
        _rewrites_payloads,
    ),
]


@pytest.fixture(scope="module")
def native_root() -> Path:
    """The native template's home, shared with the variant runs (initdb once)."""
    try:
        default_pg_config()
    except EnvironmentMissing as exc:
        pytest.skip(str(exc))
    backend = NativeBackend(None, default_cache_dir())
    if backend.available():
        pytest.skip(f"the upgrade variants run on the native backend, which cannot run here: {backend.available()}")
    backend.prepare()
    return runtime_root(default_cache_dir(), run_user())


def _run(
    candidate: Path, old: Path, scratch: Path, native_root: Path
) -> tuple[subprocess.CompletedProcess, Path, Path]:
    junit, findings = scratch / "junit.xml", scratch / "findings.json"
    env = native_session_env(scratch / "cache", native_root)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--pg-backend",
        "native",
        "--ext-artifacts",
        str(candidate),
        "--upgrade-from",
        str(old),
        f"--findings-json={findings}",
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-p",
        "no:randomly",
        "-q",
        "tests/sql/test_upgrade_images.py",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc, junit, findings


def _failed(junit: Path) -> dict[str, str]:
    """test name (without parameters) -> failure message, for the tests that failed."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            found[case.get("name", "").split("[", 1)[0]] = problem.get("message", "") + "\n" + (problem.text or "")
    return found


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pg_ticker-1.0")
    out.chmod(0o755)
    return build_sample_release_folder(out, "1.0")


@pytest.fixture(scope="module")
def runs(native_root: Path, old_release: Path) -> dict[str, tuple[subprocess.CompletedProcess, dict, list]]:
    """The intact 1.1 and every broken one, each upgraded to from the 1.0 release, two at a time."""
    scratch_root = Path(tempfile.mkdtemp(prefix="extharness-upgrade-variants-"))
    scratch_root.chmod(0o755)
    try:

        def one(variant: Variant | None):
            name = variant.name if variant else "intact"
            scratch = scratch_root / name
            src = scratch / "src"
            shutil.copytree(SAMPLE_DIR, src)
            if variant is not None:
                script = src / UPDATE_SCRIPT
                script.write_text(variant.change(script.read_text()))
            candidate = build_release_folder(scratch / "release", source_dir=src)
            proc, junit, findings = _run(candidate, old_release, scratch, native_root)
            failed = _failed(junit) if junit.exists() else {}
            found = json.loads(findings.read_text())["findings"] if findings.exists() else []
            return name, (proc, failed, found)

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(pool.map(one, [None, *VARIANTS]))
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


def test_intact_release_upgrades_cleanly(runs) -> None:
    proc, failed, found = runs["intact"]
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    assert proc.returncode == 0 and not failed, f"the intact 1.0 -> 1.1 upgrade failed: {sorted(failed)}\n{tail}"
    assert "6 passed" in proc.stdout, f"expected the six upgrade checks to run and pass:\n{tail}"
    assert not [f for f in found if f["severity"] == "error"]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_release_fails_with_rule_naming_it(variant: Variant, runs) -> None:
    proc, failed, found = runs[variant.name]
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    assert proc.returncode == 1, f"expected test failures (exit 1), got exit {proc.returncode}:\n{tail}"
    assert variant.test in failed, f"{variant.test} did not fail on {variant.name} (failed: {sorted(failed)}):\n{tail}"
    matching = [f for f in found if f["rule"] == variant.rule and re.search(variant.path, f["path"])]
    assert matching, f"no {variant.rule} finding naming {variant.path!r}; findings: " + "; ".join(
        f"{f['rule']} {f['path']}" for f in found
    )
    assert all(f["cases"] for f in matching), "the finding does not say which update path shows it"
    assert all(re.search(variant.says, f["message"]) for f in matching), (
        f"{variant.rule} does not say {variant.says!r}: {[f['message'] for f in matching]}"
    )
    assert variant.rule in failed[variant.test], (
        f"the failure message does not give the rule id:\n{failed[variant.test]}"
    )
