"""cnpg/Dockerfile.ext-build on a pgrx extension of pg_trickle's shape, built as a user builds pg_trickle.

The Rust/pgrx sample ``sample/pg_ticker_rs`` is built once (file lock shared by the xdist
workers; the image stays in the engine's store, its toolchain and crates in the engine's
layer cache), then every tier runs on the image, in a nested pytest, exactly as
``pytest -m <tier> --ext-image <image>`` would run it for a user: layout, sql, and the cnpg
tier's deployment to a cluster of its own (the kit's, where it is built here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.control import parse_control
from extharness.inspect.oci_reader import read_image
from extharness.runtime.settings import limit_of
from extharness.source.acquire import ImageRequest, acquire, default_cache_dir
from extharness.source.engine import detect_engine
from extharness.source.sample_rs import SAMPLE_RS_DIR, SAMPLE_RS_NAME, build_sample_rs_image, crate_version

REPO = Path(__file__).resolve().parents[2]
TIER_TIMEOUT = float(os.environ.get("EXTHARNESS_SAMPLE_RS_TIER_TIMEOUT", "900"))
VERSION = crate_version()
pytestmark = [
    pytest.mark.xdist_group("pgrx-sample"),  # one worker builds it; the others go on meanwhile
    # The cold build (toolchain, cargo-pgrx, crates) runs in the first test's setup and has its own
    # limit, EXTHARNESS_BUILD_TIMEOUT: pytest's 900 s per test would cut it off (seen on a fresh machine).
    pytest.mark.timeout(limit_of("EXTHARNESS_BUILD_TIMEOUT") + TIER_TIMEOUT),
]
UPDATE_SCRIPTS = sorted(p.name for p in (SAMPLE_RS_DIR / "sql").glob(f"{SAMPLE_RS_NAME}--*--*.sql"))


@pytest.fixture(scope="module")
def built():
    engine = detect_engine()
    if engine is None:
        pytest.skip("no container engine (podman or docker): the pgrx sample is built with cnpg/Dockerfile.ext-build")
    try:
        image = build_sample_rs_image(engine, default_cache_dir())
    except EnvironmentMissing as exc:
        pytest.skip(f"cannot build the pgrx sample here: {exc}")
    acquired = acquire(ImageRequest(image=image.tag), default_cache_dir(), engine)
    return image, read_image(acquired.reader_ref).images[0]


def test_image_holds_the_library_and_every_script(built):
    _image, platform = built
    files = {f.path for f in platform.files.walk_files()}
    expected = {
        f"/lib/{SAMPLE_RS_NAME}.so",
        f"/share/extension/{SAMPLE_RS_NAME}.control",
        f"/share/extension/{SAMPLE_RS_NAME}--{VERSION}.sql",
        *(f"/share/extension/{name}" for name in UPDATE_SCRIPTS),
    }
    assert UPDATE_SCRIPTS, "the sample must ship an update script in sql/ (pg_trickle's shape)"
    assert expected <= files, (
        f"missing from the image: {sorted(expected - files)} (the recipe must ship sql/'s update scripts next to "
        f"the install script cargo pgrx generates); it holds {sorted(files)}"
    )
    assert not any(f.startswith("/share/extension/") and "pg_ticker_rs_dump" in f for f in files)


def test_control_file_has_the_crate_version(built):
    _image, platform = built
    text = platform.files.content_of(f"/share/extension/{SAMPLE_RS_NAME}.control")
    assert text is not None, "no control file in the image"
    control = parse_control(text, SAMPLE_RS_NAME)
    assert control.default_version == VERSION, (
        f"default_version is {control.default_version!r}: cargo pgrx package must replace @CARGO_VERSION@ with "
        f"Cargo.toml's {VERSION}"
    )


def test_labels_come_from_the_build_arguments(built):
    image, platform = built
    labels = platform.config.labels
    expected = {
        "org.opencontainers.image.title": image.build_args["TITLE"],
        "org.opencontainers.image.version": VERSION,
        "org.opencontainers.image.licenses": "PostgreSQL",
    }
    assert {k: labels.get(k) for k in expected} == expected


def _outcomes(junit: Path) -> tuple[int, list[str], list[str]]:
    """(tests passed, 'name: message' of each failure or error, 'name: reason' of each skip) from a JUnit file."""
    passed, problems, skips = 0, [], []
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            problems.append(f"{case.get('name')}: {(problem.get('message') or '').splitlines()[0][:300]}")
        elif skipped is not None:
            skips.append(f"{case.get('name')}: {(skipped.get('message') or '').splitlines()[0][:300]}")
        else:
            passed += 1
    return passed, problems, skips


#: what each tier runs on the image (the cnpg tier: the deployment tests, a cluster of the nested run's own)
TIER_PATHS = {"layout": "tests/layout", "sql": "tests/sql", "cnpg": "tests/cnpg/test_cluster.py"}


@pytest.mark.parametrize("tier", list(TIER_PATHS))
def test_tier_passes_on_the_built_image(built, tier, tmp_path):
    image, _platform = built
    junit = tmp_path / f"{tier}.xml"
    env = {**os.environ, "EXTHARNESS_CACHE_DIR": str(default_cache_dir())}
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID", "EXTHARNESS_RUN_ID", "EXTHARNESS_CNPG_SESSION"):
        env.pop(name, None)  # the nested run names its resources (and its cluster) as a run of its own
    cmd = [
        sys.executable, "-m", "pytest", "-m", tier, TIER_PATHS[tier],
        "--ext-image", image.tag, "--ext-profile", SAMPLE_RS_NAME,
        "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs", f"--junitxml={junit}",
        f"--basetemp={tmp_path / 'nested'}",
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise HarnessError(
            f"the {tier} tier on {image.tag} did not finish within {TIER_TIMEOUT:g}s "
            "(raise EXTHARNESS_SAMPLE_RS_TIER_TIMEOUT)"
        ) from None
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    if not junit.exists():
        pytest.fail(f"the nested {tier} run wrote no report (exit {proc.returncode}): {proc.stdout[-2000:]}")
    passed, problems, skips = _outcomes(junit)
    print(f"[pg_ticker_rs] {tier} tier: {summary}")
    assert proc.returncode == 0 and not problems, (
        f"pytest -m {tier} --ext-image {image.tag} failed (exit {proc.returncode}, {summary}):\n  "
        + "\n  ".join(problems or [proc.stdout[-2000:]])
    )
    if tier == "cnpg" and passed == 0 and skips:
        # no cluster on this machine: the nested tier said what is missing, in one line per test
        pytest.skip(f"the cnpg tier could not deploy pg_ticker_rs here: {skips[0]}")
    assert passed > 0, f"the {tier} tier ran no test on {image.tag}: {summary}"
