"""A sql-tier failure reaches ``--findings-json`` with its rule id, and is reported once.

The sample's release folder, copied and broken (its install script gains a
``LOAD '$libdir/pg_ticker'``, which cannot find a library mounted under /extensions), runs a
few tests of ``tests/sql`` on the native backend in a nested pytest, with a profile whose
preload names a library the image lacks. CREATE EXTENSION fails in the first test that needs
it: that test fails with a ``sql.create`` finding, and the later tests that need the
extension skip naming that finding instead of failing with the same error. The preloaded
server cannot start: the same, with ``sql.preload``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from extharness.postgres.native import NativeBackend
from extharness.source.acquire import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600
SELECTED = (
    "test_create_extension_at_default_version or test_drop_and_create_again or test_schema_rules "
    "or test_server_starts_with_preload or test_library_in_loaded_modules"
)
CREATE = "tests/sql/test_create.py::test_create_extension_at_default_version[native]"
PRELOAD = "tests/sql/test_preload.py::test_server_starts_with_preload[native]"
PROFILE = REPO / "src" / "extharness" / "profiles" / "pg_ticker.toml"


@pytest.fixture(scope="module")
def native_available() -> None:
    reason = NativeBackend(None, default_cache_dir()).available()
    if reason:
        pytest.skip(f"the run uses the native backend, which cannot run here: {reason}")


def _broken_release(sample_release: Path, dest: Path) -> Path:
    shutil.copytree(sample_release, dest, ignore=shutil.ignore_patterns(".lock", ".complete"))
    script = dest / "artifact" / "extension" / "pg_ticker--1.1.sql"
    script.write_text(script.read_text() + "\nLOAD '$libdir/pg_ticker';\n")
    return dest


def test_findings_json_holds_the_sql_failure_with_its_rule_id(
    native_available: None, sample_release: Path, tmp_path: Path
) -> None:
    release = _broken_release(sample_release, tmp_path / "release")
    profile = tmp_path / "profile.toml"
    text = PROFILE.read_text()
    assert 'preload = ["pg_ticker"]' in text
    profile.write_text(text.replace('preload = ["pg_ticker"]', 'preload = ["pg_ticker_absent"]'))
    report, junit = tmp_path / "findings.json", tmp_path / "junit.xml"
    env = {**os.environ, "EXTHARNESS_ENGINE": "none"}
    for name in ("EXTHARNESS_RUN_ID", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            "--pg-backend",
            "native",
            "--ext-artifacts",
            str(release),
            "--ext-profile",
            str(profile),
            "--findings-json",
            str(report),
            f"--junitxml={junit}",
            "-k",
            SELECTED,
            "tests/sql",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 1, tail

    findings = json.loads(report.read_text())["findings"]
    errors = [f for f in findings if f["severity"] == "error"]
    assert [(f["rule"], f["path"], f["cases"]) for f in errors] == [
        ("sql.create", "CREATE EXTENSION pg_ticker", ["native backend"]),
        ("sql.preload", "shared_preload_libraries=pg_ticker_absent", ["native backend"]),
    ], tail
    assert "$libdir/pg_ticker" in errors[0]["message"]
    assert "does not search dynamic_library_path" in errors[0]["message"]
    assert 'could not access file "pg_ticker_absent"' in errors[1]["message"]

    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        message = next((child.get("message", "") for child in case if child.tag == kind), "")
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = (kind, message)
    first = outcomes.pop("tests.sql.test_create::test_create_extension_at_default_version[native]")
    assert first[0] == "failure" and "sql.create" in first[1], first
    preload = outcomes.pop("tests.sql.test_preload::test_server_starts_with_preload[native]")
    assert preload[0] == "error" and "sql.preload" in preload[1], preload  # in its setup
    assert set(outcomes) == {
        "tests.sql.test_lifecycle::test_drop_and_create_again[native]",
        "tests.sql.test_lifecycle::test_schema_rules[native]",
        "tests.sql.test_preload::test_library_in_loaded_modules[native]",
    }, outcomes
    for name, (kind, message) in outcomes.items():  # the root cause once: the others skip, naming it
        assert kind == "skipped", outcomes
        if "test_preload" in name:
            assert "sql.preload" in message and PRELOAD in message, message
        else:
            assert "sql.create CREATE EXTENSION pg_ticker" in message and CREATE in message, message

    summary = proc.stdout.split("extharness findings", 1)[-1]
    assert "errors (2):" in summary and "sql.create error: CREATE EXTENSION pg_ticker:" in summary, tail
    assert "sql.preload error: shared_preload_libraries=pg_ticker_absent:" in summary, tail
