"""The plugin in other people's sessions, and where each setting comes from.

* Inert unless asked: in a foreign project in the same virtualenv, with ``EXTHARNESS_*`` variables
  set, pytest runs as if the plugin were not installed (nothing marked, no environment read) and
  ``pytest --help`` works. An extharness option on the command line, an ``extharness_*`` ini key
  or ``extharness = true`` switches it on.
* One precedence: command line > environment > ini > default, with the same checks for every
  source; a bad value is one usage-error line naming where it came from.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from extharness.config import OPTIONS, HarnessConfig, is_active, resolve
from extharness.errors import HarnessError

NO_MARKS = """
def test_unrelated(request):
    assert [m.name for m in request.node.iter_markers()] == []
"""

BUILDER_IS = """
def test_builder(harness_config):
    assert harness_config.request.builder == {expected!r}
"""


def _cli(**given) -> dict:
    return {o.dest: given.get(o.dest) for o in OPTIONS}


def _one_error_line(result: pytest.RunResult) -> str:
    output = result.stdout.str() + result.stderr.str()
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert len(errors) == 1, output
    assert "Traceback" not in output and "KeyError" not in output, output
    return errors[0]


# -- a foreign project ------------------------------------------------------------------------------
def test_foreign_project_is_untouched_by_extharness_variables(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTHARNESS_EXT_IMAGE", "bogus")
    monkeypatch.setenv("EXTHARNESS_PG_BACKEND", "bogus")
    pytester.makepyfile(**{"tests/unit/test_x": NO_MARKS})
    pytester.makeini("[pytest]\naddopts = --strict-markers\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "extharness:" not in output and "extharness findings" not in output and "[extharness]" not in output


def test_help_works_with_bogus_settings_active_or_not(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTHARNESS_EXT_IMAGE", "oci-archive:/no/such/file")
    monkeypatch.setenv("EXTHARNESS_PG_BACKEND", "bogus")
    assert pytester.runpytest_subprocess("--help").ret == 0  # inactive
    pytester.makeini("[pytest]\nextharness = true\nextharness_builder = bogus\n")
    result = pytester.runpytest_subprocess("--help")  # active, every source bogus
    assert result.ret == 0, result.stderr.str()
    assert "--ext-image" in result.stdout.str()


def test_help_lists_the_harness_options_first_where_it_is_on(pytester: pytest.Pytester) -> None:
    inactive = pytester.runpytest_subprocess("--help").stdout.lines
    assert inactive[0].startswith("usage:"), inactive[:3]
    pytester.makeini("[pytest]\nextharness = true\n")
    active = pytester.runpytest_subprocess("--help").stdout.lines
    assert active[0].startswith("extharness options"), active[:3]
    assert _first(active, "  --ext-image") < _first(active, "usage:")


def test_extharness_check_help_starts_with_its_own_usage_and_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "extharness.cli", "check", "--help"], capture_output=True, text=True, timeout=120
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr[-2000:]
    assert lines[0].startswith("usage: extharness check [extharness options]"), lines[:3]
    assert _first(lines, "  --pg-backend {auto,native,composite,imagevolume,container,all}") < _first(lines, "usage: ")


def _first(lines: list[str], prefix: str) -> int:
    return next((i for i, line in enumerate(lines) if line.startswith(prefix) and i > 0), len(lines))


def test_requesting_a_harness_fixture_when_inactive_says_how_to_switch_it_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(harness_config):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*extharness is not switched on in this session*extharness = true*"])


def test_ini_switch_turns_it_on_and_then_the_environment_counts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTHARNESS_PG_BACKEND", "bogus")
    pytester.makeini("[pytest]\nextharness = true\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    line = _one_error_line(pytester.runpytest_subprocess("-p", "no:cacheprovider"))
    assert (
        line
        == "ERROR: extharness: EXTHARNESS_PG_BACKEND='bogus': choose one of auto, native, composite, imagevolume, container, all"
    )


def test_an_option_value_pytest_takes_for_a_test_path_is_refused_with_the_fix(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, sample_release: Path
) -> None:
    """pytest finds its ini file before plugins' options are known: ``--ext-artifacts DIR`` with
    DIR outside the project made DIR the rootdir and dropped the project's ini without a word."""
    outside = tmp_path_factory.mktemp("release-outside") / "dist"
    shutil.copytree(sample_release, outside, ignore=shutil.ignore_patterns(".lock", ".complete"))
    pytester.makeini("[pytest]\nextharness = true\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    line = _one_error_line(pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ext-artifacts", str(outside)))
    assert f"as its rootdir (no ini file) instead of {pytester.path} ({pytester.path / 'tox.ini'})" in line, line
    assert line.endswith(f"write --ext-artifacts={outside} (with '=')"), line
    # with '=' pytest never takes it for a path: the session runs, with the project's ini
    pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--ext-artifacts={outside}").assert_outcomes(passed=1)
    # a folder the harness refuses is said first, whatever the spelling
    (pytester.path / "empty").mkdir()
    empty = tmp_path_factory.mktemp("empty-outside")
    line = _one_error_line(pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ext-artifacts", str(empty)))
    assert "rootdir" not in line and "not a release folder" in line, line
    # inside the project the same spelling finds the project's ini: nothing to refuse
    shutil.copytree(outside, pytester.path / "dist")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ext-artifacts", "dist").assert_outcomes(passed=1)


# -- precedence, end to end -----------------------------------------------------------------------------
def test_explicit_default_on_the_command_line_beats_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTHARNESS_BUILDER", "engine")
    pytester.makepyfile(test_x=BUILDER_IS.format(expected="auto"))
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--builder", "auto").assert_outcomes(passed=1)


def test_environment_beats_ini_and_a_bad_ini_value_names_its_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nextharness_builder = embedded\n")  # an extharness_* key switches it on too
    pytester.makepyfile(test_x=BUILDER_IS.format(expected="engine"))
    monkeypatch.setenv("EXTHARNESS_BUILDER", "engine")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.delenv("EXTHARNESS_BUILDER")
    pytester.makeini("[pytest]\nextharness_builder = fast\n")
    line = _one_error_line(pytester.runpytest_subprocess("-p", "no:cacheprovider"))
    assert line == "ERROR: extharness: extharness_builder (ini)='fast': choose one of auto, engine, embedded"


# -- precedence and checks, as functions ------------------------------------------------------------------
def test_marks_by_folder_apply_inside_this_repository(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None


@pytest.mark.parametrize(
    ("cli", "env", "ini", "expected"),
    [
        (None, {}, {}, "auto"),  # default
        (None, {}, {"builder": "embedded"}, "embedded"),  # ini beats default
        (None, {"EXTHARNESS_BUILDER": "engine"}, {"builder": "embedded"}, "engine"),  # environment beats ini
        ("auto", {"EXTHARNESS_BUILDER": "engine"}, {"builder": "embedded"}, "auto"),  # command line beats all
        (None, {"EXTHARNESS_BUILDER": ""}, {"builder": "embedded"}, "embedded"),  # empty variable: not set
    ],
)
def test_precedence(cli, env, ini, expected) -> None:
    assert resolve(_cli(builder=cli), env, ini)["builder"] == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"EXTHARNESS_PG_BACKEND": "bogus"},
            "EXTHARNESS_PG_BACKEND='bogus': choose one of auto, native, composite, imagevolume, container, all",
        ),
        ({"EXTHARNESS_CNPG_MODE": "maybe"}, "EXTHARNESS_CNPG_MODE='maybe': choose one of auto, imagevolume, fallback"),
        ({"EXTHARNESS_MAX_IMAGE_MB": "ten"}, "EXTHARNESS_MAX_IMAGE_MB='ten': not a number"),
        ({"EXTHARNESS_MAX_IMAGE_MB": "-1"}, "EXTHARNESS_MAX_IMAGE_MB='-1': must be a positive number"),
        ({"EXTHARNESS_KEEP_CLUSTER": "sometimes"}, "EXTHARNESS_KEEP_CLUSTER='sometimes': expected true or false"),
    ],
)
def test_every_source_is_checked_the_same_way(env, message) -> None:
    with pytest.raises(HarnessError) as raised:
        resolve(_cli(), env, {})
    assert str(raised.value).startswith(message)


def test_switches_and_lists_from_the_environment() -> None:
    values = resolve(_cli(), {"EXTHARNESS_KEEP_CLUSTER": "yes", "EXTHARNESS_EXT_BUILD_ARG": "A=1\nB=two words"}, {})
    harness = HarnessConfig.from_values(values)
    assert harness.keep_cluster is True
    assert harness.request.build_args == (("A", "1"), ("B", "two words"))  # not one argument per character


def test_what_switches_it_on() -> None:
    assert not is_active(_cli(), {}, False)
    assert is_active(_cli(ext_image="oci:x"), {}, False)
    assert is_active(_cli(), {"ext_image": "oci:x"}, False)
    assert is_active(_cli(), {}, True)
    assert not is_active(_cli(ext_build_arg=[]), {"ext_build_arg": []}, False)


# -- xdist groups -----------------------------------------------------------------------------------
GROUPED = """
import os, pathlib, pytest

pytestmark = pytest.mark.xdist_group("one")

@pytest.mark.parametrize("n", range(6))
def test_where(n):
    (pathlib.Path(os.environ["RAN_DIR"]) / f"ran-{n}").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_xdist_group_keeps_its_tests_on_one_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``-n 2`` alone (as ``.ci/run``): every test of a group lands on the same worker. The
    controller's switch to ``loadgroup`` is not enough; the workers must tag their test ids too
    (a CI run put one group's cluster tests on both workers)."""
    monkeypatch.setenv("RAN_DIR", str(tmp_path))
    pytester.makepyfile(test_grouped=GROUPED)
    pytester.makeini("[pytest]\nextharness = true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=6)
    workers = {p.read_text() for p in tmp_path.glob("ran-*")}
    assert len(list(tmp_path.glob("ran-*"))) == 6 and len(workers) == 1, workers
