"""``extharness layout``: the layout tier without pytest, run as a user runs it (a subprocess).

A correct image exits 0; each defect of test_layout_cli.py's list exits 1 and prints the
defect's rule id and path; bad input exits 2 with one line and no traceback; ``--findings-json``
holds what the tier's own ``--findings-json`` holds for the same image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crafted import LIB, REPO_ROOT, CraftedImage, ElfKit, run_layout_tier
from test_layout_cli import DEFECTS, Defect, _names_defect


def run_layout_command(*args: str, cache_dir: Path, extra_env: dict[str, str] | None = None):
    """``python -m extharness.cli layout ARGS`` with no container engine and a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update({"EXTHARNESS_CACHE_DIR": str(cache_dir), "EXTHARNESS_ENGINE": "none", **(extra_env or {})})
    cmd = [sys.executable, "-m", "extharness.cli", "layout", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr)[-4000:]


@pytest.fixture(scope="module")
def good_archive(sample_base: CraftedImage, tmp_path_factory: pytest.TempPathFactory) -> str:
    return sample_base.copy().write_docker_archive(tmp_path_factory.mktemp("good") / "image.docker.tar")


def test_correct_image_exits_0_with_a_summary(good_archive: str, layout_cache: Path) -> None:
    result = run_layout_command("--ext-image", good_archive, cache_dir=layout_cache)
    assert result.returncode == 0, _output(result)
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("extharness layout: passed: ") and " 0 error(s)" in lines[-1], _output(result)
    assert " error: " not in result.stdout
    # every other line is one finding: "<rule> <severity>: ..." (the sample has notes, e.g. its size)
    assert lines[:-1] and all(line.split(" ", 2)[1] in ("warning:", "info:") for line in lines[:-1]), lines
    assert any(line.startswith("layout.metadata.size info: ") for line in lines), lines
    assert result.stderr == ""


def test_release_folder_and_expectations_pass(sample_base: CraftedImage, tmp_path: Path, layout_cache: Path) -> None:
    folder = sample_base.copy().write_release_folder(tmp_path / "dist")
    result = run_layout_command(
        "--ext-artifacts", str(folder), "--expect-version", "1.1", "--platforms", "linux/amd64", cache_dir=layout_cache
    )
    assert result.returncode == 0, _output(result)


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.id for d in DEFECTS])
def test_defective_image_exits_1_naming_rule_and_path(
    defect: Defect, sample: CraftedImage, elf_kit: ElfKit, tmp_path: Path, layout_cache: Path, good_archive: str
) -> None:
    if defect.options:
        ref = good_archive
    else:
        ref = defect.craft(sample, elf_kit).write_docker_archive(tmp_path / "image.docker.tar")
    result = run_layout_command("--ext-image", ref, *defect.options, cache_dir=layout_cache)
    assert result.returncode == 1, _output(result)
    assert _names_defect(result.stdout, defect.rule, defect.path), f"no {defect.rule} on {defect.path}:\n" + _output(
        result
    )
    assert result.stdout.splitlines()[-1].startswith("extharness layout: FAILED: "), _output(result)
    assert "Traceback" not in result.stderr


BAD_INPUTS = {
    "missing-archive": lambda tmp: ["--ext-image", f"docker-archive:{tmp / 'none.tar'}"],
    "text-file-as-archive": lambda tmp: ["--ext-image", f"oci-archive:{_text_file(tmp)}"],
    "missing-release-folder": lambda tmp: ["--ext-artifacts", str(tmp / "no-such-release")],
    "two-sources": lambda tmp: ["--ext-image", f"oci-archive:{_text_file(tmp)}", "--ext-artifacts", str(tmp)],
    "not-a-number": lambda tmp: ["--ext-image", f"oci-archive:{_text_file(tmp)}", "--max-image-mb", "lots"],
    "bad-platform": lambda tmp: ["--ext-image", f"oci-archive:{_text_file(tmp)}", "--platforms", "amd64"],
    "unknown-option": lambda tmp: ["--ext-image", f"oci-archive:{_text_file(tmp)}", "--kubeconfig", "k.yaml"],
    "option-without-value": lambda tmp: ["--ext-image"],
}


def _text_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("this is not an image\n" * 20)
    return tmp / "notes.txt"


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path, layout_cache: Path) -> None:
    result = run_layout_command(*BAD_INPUTS[case](tmp_path), cache_dir=layout_cache)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, _output(result)
    assert len(lines) == 1 and lines[0].startswith("extharness"), lines
    assert result.stdout == ""


def test_bad_value_in_the_environment_names_the_variable(good_archive: str, layout_cache: Path) -> None:
    result = run_layout_command(
        "--ext-image", good_archive, cache_dir=layout_cache, extra_env={"EXTHARNESS_MAX_IMAGE_MB": "-1"}
    )
    assert result.returncode == 2 and "EXTHARNESS_MAX_IMAGE_MB" in result.stderr, _output(result)


def test_findings_json_matches_the_pytest_tier(
    sample: CraftedImage, elf_kit: ElfKit, tmp_path: Path, layout_cache: Path
) -> None:
    ref = sample.put(LIB, elf_kit.rpath_module(), 0o4755).write_docker_archive(tmp_path / "image.docker.tar")
    direct, tier = tmp_path / "out" / "direct.json", tmp_path / "tier.json"
    result = run_layout_command("--ext-image", ref, "--findings-json", str(direct), cache_dir=layout_cache)
    assert result.returncode == 1, _output(result)
    findings = json.loads(direct.read_text())["findings"]
    errors = {(f["rule"], f["path"]) for f in findings if f["severity"] == "error"}
    assert errors == {("layout.elf.rpath", LIB), ("layout.tree.no-setuid", LIB)}
    assert len(result.stdout.splitlines()) == len(findings) + 1  # a line per finding, then the summary

    pytest_run = run_layout_tier(
        "--ext-image", ref, "--findings-json", str(tier), "tests/layout", cache_dir=layout_cache
    )
    assert pytest_run.returncode == 1, (pytest_run.stdout + pytest_run.stderr)[-3000:]
    assert findings == json.loads(tier.read_text())["findings"]


def test_loads_neither_pytest_nor_the_sql_tier(good_archive: str, layout_cache: Path) -> None:
    # Start-up is most of a small image's time: reading an archive must not pull in pytest, psycopg
    # (the sql tier's client), hypothesis, the registry client (oras), file locks (taken only
    # for builds), packaging (its version pattern compiles at import) or, with no engine, the
    # engine driver. A module list, not a timing, so it cannot flake.
    probe = (
        "import sys\n"
        "from extharness import cli\n"
        f"code = cli.main(['layout', '--ext-image', {good_archive!r}])\n"
        "print('loaded:', sorted(m for m in ('pytest', 'psycopg', 'hypothesis', 'kubernetes', 'oras', 'filelock', 'packaging', 'extharness.source.engine') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update({"EXTHARNESS_CACHE_DIR": str(layout_cache), "EXTHARNESS_ENGINE": "none"})
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, _output(result)
    assert result.stdout.splitlines()[-1] == "loaded: []", _output(result)
