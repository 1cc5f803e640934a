"""Broken variants of the sample fail the sql tier in the right check, naming the problem.

Each variant is the pg_ticker sample with one defect, built with PGXS into a release folder
and run through ``pytest -m sql --pg-backend native`` in a subprocess (own cache, shared
native template). The assertion is on the JUnit report: the expected test failed, with a
message that names the defect, and ``--findings-json`` holds the check's finding (its rule id).
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
from extharness.postgres.native import NativeBackend, PgInstall, copy_install, run_user, runtime_root
from extharness.source.acquire import default_cache_dir
from extharness.source.sample import SAMPLE_DIR, build_release_folder, default_pg_config

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 900


@dataclass(frozen=True)
class Variant:
    name: str
    test: str  # the test (with its parameter id) that must fail
    says: str  # a regular expression its failure message must match
    rule: str  # the rule id of the finding that failure records
    change: Callable[[Path, Path], dict]  # (source copy, scratch dir) -> extra build/run settings


def _drop_from_makefile(src: Path, *names: str) -> None:
    makefile = src / "Makefile"
    text = makefile.read_text()
    for name in names:
        (src / name).unlink()
        text = text.replace(f" {name}", "")
    makefile.write_text(text)


def missing_upgrade_script(src: Path, _scratch: Path) -> dict:
    # Only the 1.0 install script, while default_version is 1.1.
    _drop_from_makefile(src, "pg_ticker--1.0--1.1.sql", "pg_ticker--1.1.sql")
    return {}


def no_update_to_default(src: Path, _scratch: Path) -> dict:
    # 1.0 and 1.1 install scripts, but users on 1.0 have no way to 1.1.
    _drop_from_makefile(src, "pg_ticker--1.0--1.1.sql")
    return {}


def upgrade_differs(src: Path, _scratch: Path) -> dict:
    script = src / "pg_ticker--1.0--1.1.sql"
    text = script.read_text()
    cut = text.index("CREATE FUNCTION ticker.mul")
    script.write_text(text[:cut])  # forgets the function a fresh 1.1 install has
    return {}


def load_libdir(src: Path, _scratch: Path) -> dict:
    script = src / "pg_ticker--1.1.sql"
    script.write_text(script.read_text() + "\nLOAD '$libdir/pg_ticker';\n")
    return {}


def missing_native_dependency(src: Path, scratch: Path) -> dict:
    dep = scratch / "dep"
    dep.mkdir()
    (dep / "extdep.c").write_text("int extdep_answer(void) { return 42; }\n")
    out = subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(dep / "libextdep.so"), str(dep / "extdep.c")],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        pytest.skip(f"no C compiler for the native-dependency variant: {out.stderr.strip()[:200]}")
    code = src / "pg_ticker.c"
    text = (
        code.read_text()
        .replace(
            "PG_FUNCTION_INFO_V1(pg_ticker_add);",
            "extern int extdep_answer(void);\nPG_FUNCTION_INFO_V1(pg_ticker_add);",
        )
        .replace(
            "\tif (pg_add_s32_overflow(a, b, &result))",
            '\tif (extdep_answer() != 42)\n\t\telog(ERROR, "extdep");\n\tif (pg_add_s32_overflow(a, b, &result))',
        )
    )
    code.write_text(text)
    # PGXS links MODULES with $(LDFLAGS_SL) after the object (SHLIB_LINK is for MODULE_big only).
    return {"make_args": [f"LDFLAGS_SL=-L{dep} -lextdep"]}


def shadowed_by_base(src: Path, scratch: Path) -> dict:
    """A PostgreSQL whose $system already has pg_ticker 1.0 (hard-linked copy of the wheel's tree)."""
    install = PgInstall.from_pg_config(None)
    bindir = copy_install(install, scratch / "shadow-base")
    base = bindir.parent
    old = scratch / "old-release"
    old_src = scratch / "old-src"
    shutil.copytree(SAMPLE_DIR, old_src)
    _drop_from_makefile(old_src, "pg_ticker--1.0--1.1.sql", "pg_ticker--1.1.sql")
    control = old_src / "pg_ticker.control"
    control.write_text(control.read_text().replace("default_version = '1.1'", "default_version = '1.0'"))
    build_release_folder(old, source_dir=old_src)
    for item in (old / "artifact" / "extension").iterdir():
        shutil.copy(item, base / "share" / "extension" / item.name)
    for item in (old / "artifact" / "lib").iterdir():
        shutil.copy(item, base / "lib" / item.name)
    scratch.chmod(0o755)
    # Its own native root: the template for this one-off PostgreSQL is not worth keeping.
    return {"pg_config": bindir / "pg_config", "native_root": scratch / "native-root"}


VARIANTS = [
    Variant(
        "missing-upgrade-script",
        "test_create.py::test_create_extension_at_default_version[native]",
        r"no way to install version 1\.1.*missing upgrade script",
        "sql.create",
        missing_upgrade_script,
    ),
    Variant(
        "no-update-to-default",
        "test_upgrades.py::test_installable_versions_update_to_default[native]",
        r"1\.0 can be installed but not updated.*pg_ticker--1\.0--1\.1\.sql",
        "sql.update.to-default",
        no_update_to_default,
    ),
    Variant(
        "upgrade-differs",
        "test_upgrades.py::test_update_matches_fresh_install[native-1.0-1.1]",
        r"function ticker\.mul\(integer,\s*integer\): missing after the update",
        "sql.upgrade.missing-object",
        upgrade_differs,
    ),
    Variant(
        "load-libdir",
        "test_create.py::test_create_extension_at_default_version[native]",
        r"LOAD '\$libdir/\.\.\.' does not search dynamic_library_path.*pg_ticker--1\.1\.sql",
        "sql.create",
        load_libdir,
    ),
    Variant(
        "missing-native-dependency",
        "test_create.py::test_create_extension_at_default_version[native]",
        r"needs libextdep\.so.*neither the base image nor the extension image",
        "sql.create",
        missing_native_dependency,
    ),
    Variant(
        "shadowed-by-base",
        "test_create.py::test_not_shadowed_by_base[native]",
        r"already ships pg_ticker in \$system.*\$system and \$libdir first",
        "sql.shadowed",
        shadowed_by_base,
    ),
]


@pytest.fixture(scope="module")
def native_root() -> Path:
    """The native template's home, shared with the variant runs (initdb once)."""
    backend = NativeBackend(None, default_cache_dir())
    if backend.available():
        pytest.skip(f"the variants run on the native backend, which cannot run here: {backend.available()}")
    backend.prepare()
    return runtime_root(default_cache_dir(), run_user())


def _run_variant(variant: Variant, scratch: Path, native_root: Path) -> tuple[subprocess.CompletedProcess, Path]:
    src = scratch / "src"
    shutil.copytree(SAMPLE_DIR, src)
    extra = variant.change(src, scratch)
    release = scratch / "release"
    build_release_folder(release, source_dir=src, variant_make_args=extra.get("make_args", ()))
    junit = scratch / "junit.xml"
    env = native_session_env(scratch / "cache", extra.get("native_root", native_root))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "sql",
        "--pg-backend",
        "native",
        "--ext-artifacts",
        str(release),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-q",
        f"--junitxml={junit}",
        f"--findings-json={scratch / 'findings.json'}",
        "tests/sql",
    ]
    if "pg_config" in extra:
        cmd += ["--pg-config", str(extra["pg_config"])]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc, junit


def _outcomes(junit: Path) -> dict[str, str]:
    """'file.py::test[id]' -> failure/error message ('' if it passed or was skipped)."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        key = f"{module}.py::{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        found[key] = "" if problem is None else (problem.get("message", "") + "\n" + (problem.text or ""))
    return found


@pytest.fixture(scope="module")
def variant_runs(native_root: Path) -> dict[str, tuple[subprocess.CompletedProcess, dict[str, str], set[str]]]:
    """All variants, built and run two at a time."""
    try:
        default_pg_config()
    except EnvironmentMissing as exc:
        pytest.skip(str(exc))
    scratch_root = Path(tempfile.mkdtemp(prefix="extharness-variants-"))
    scratch_root.chmod(0o755)
    try:

        def one(variant: Variant):
            scratch = scratch_root / variant.name
            scratch.mkdir()
            proc, junit = _run_variant(variant, scratch, native_root)
            report = scratch / "findings.json"
            rules = {f["rule"] for f in json.loads(report.read_text())["findings"]} if report.exists() else set()
            return variant.name, (proc, _outcomes(junit) if junit.exists() else {}, rules)

        with ThreadPoolExecutor(max_workers=2) as pool:
            return dict(pool.map(one, VARIANTS))
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_variant_fails_in_the_right_check(variant: Variant, variant_runs) -> None:
    proc, outcomes, rules = variant_runs[variant.name]
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
    assert proc.returncode == 1, f"expected test failures (exit 1), got exit {proc.returncode}:\n{tail}"
    assert variant.test in outcomes, f"{variant.test} did not run:\n{tail}"
    message = outcomes[variant.test]
    assert message, f"{variant.test} passed on the broken variant {variant.name}"
    assert re.search(variant.says, " ".join(message.split()), re.DOTALL), (
        f"{variant.test} failed, but without naming the problem ({variant.says!r}):\n{message[:1500]}"
    )
    assert variant.rule in rules, f"--findings-json has no {variant.rule} finding, only {sorted(rules)}"
