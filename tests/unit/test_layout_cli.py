"""The layout tier end to end, run the way a release manager runs it: ``pytest -m layout ...``.

A correct release folder passes; a release folder with one defect fails and the output names
the defect's rule id and path; ``--ext-image`` reads oci:, oci-archive:, docker-archive: and
engine images; ``-n 2`` works; ``--findings-json`` writes the findings.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from crafted import (
    CONTROL,
    EXT_DIR,
    INSTALL_SQL,
    LIB,
    SAMPLE,
    CraftedImage,
    ElfKit,
    patch_machine,
    run_layout_tier,
)

from extharness.source.engine import detect_engine

LAYOUT = "tests/layout"  # given explicitly where the run need not collect every other test
UPDATE_SQL = f"{EXT_DIR}/{SAMPLE}--1.0--1.1.sql"
PLATFORM = "[linux/amd64] "


def _summary(result) -> str:
    return (result.stdout + result.stderr)[-4000:]


def _arm64_library(kit: ElfKit) -> bytes:
    if shutil.which("aarch64-linux-gnu-gcc"):
        return kit.arm64_module()
    return patch_machine(kit.module(), 183)  # EM_AARCH64


@dataclass
class Defect:
    id: str
    rule: str
    path: str
    craft: Callable[[CraftedImage, ElfKit], CraftedImage] = lambda s, k: s
    options: list[str] = field(default_factory=list)


# One release folder per defect kind; every rule also has in-process cases in test_rules.py.
DEFECTS = [
    Defect("missing-control-file", "layout.files.control", CONTROL, lambda s, k: s.remove(CONTROL)),
    Defect("library-not-elf", "layout.files.library", LIB, lambda s, k: s.put(LIB, "not a library\n", 0o755)),
    Defect(
        "no-install-path-for-default-version",
        "layout.files.install-script",
        INSTALL_SQL,
        lambda s, k: s.remove(INSTALL_SQL).remove(UPDATE_SQL),
    ),
    Defect("setuid-library", "layout.tree.no-setuid", LIB, lambda s, k: s.chmod(LIB, 0o4755)),
    Defect("unreadable-by-uid-26", "layout.tree.readable-by-postgres", CONTROL, lambda s, k: s.chmod(CONTROL, 0o600)),
    Defect(
        "absolute-symlink",
        "layout.tree.symlinks",
        f"{EXT_DIR}/{SAMPLE}--1.2.sql",
        lambda s, k: s.symlink(f"{EXT_DIR}/{SAMPLE}--1.2.sql", "/usr/share/postgresql/18/extension/x.sql"),
    ),
    Defect("control-parse-error", "layout.control.parse", CONTROL, lambda s, k: s.set_param("superuser", "maybe")),
    Defect(
        "libdir-load-in-script",
        "layout.scripts.no-libdir-load",
        f"{UPDATE_SQL}:",
        lambda s, k: s.append(UPDATE_SQL, "\nLOAD '$libdir/pg_ticker';\n"),
    ),
    Defect("wrong-architecture", "layout.elf.architecture", LIB, lambda s, k: s.put(LIB, _arm64_library(k), 0o755)),
    Defect("glibc-too-new", "layout.elf.glibc", LIB, lambda s, k: s.put(LIB, k.future_glibc_module(), 0o755)),
    Defect("rpath-to-build-machine", "layout.elf.rpath", LIB, lambda s, k: s.put(LIB, k.rpath_module(), 0o755)),
    Defect("expect-version-mismatch", "layout.metadata.version", "config.Labels", options=["--expect-version", "9.9"]),
]


def _names_defect(output: str, rule: str, path: str) -> bool:
    """A finding line ``<rule> error: [platform] <path>...`` is in the output."""
    pattern = rf"{re.escape(rule)} error: (\[[^\]]+\] )?{re.escape(path)}"
    return re.search(pattern, output) is not None


@pytest.fixture(scope="module")
def good_release(sample_base: CraftedImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_base.copy().write_release_folder(tmp_path_factory.mktemp("good") / "dist")


def test_correct_release_folder_passes(good_release: Path, layout_cache: Path) -> None:
    # Exactly the acceptance command: every test path of the repository, the tier by marker.
    result = run_layout_tier(f"--ext-artifacts={good_release}", cache_dir=layout_cache)
    assert result.returncode == 0, _summary(result)
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 27, _summary(result)
    assert " error: " not in result.stdout


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.id for d in DEFECTS])
def test_defective_release_folder_fails_naming_rule_and_path(
    defect: Defect, sample: CraftedImage, elf_kit: ElfKit, tmp_path: Path, layout_cache: Path, good_release: Path
) -> None:
    if defect.options:
        folder = good_release
    else:
        folder = defect.craft(sample, elf_kit).write_release_folder(tmp_path / "dist")
    result = run_layout_tier("--ext-artifacts", str(folder), *defect.options, LAYOUT, cache_dir=layout_cache)
    output = result.stdout + result.stderr
    assert result.returncode == 1, _summary(result)
    assert _names_defect(output, defect.rule, defect.path), f"no {defect.rule} finding on {defect.path}:\n" + _summary(
        result
    )
    assert "Traceback" not in output


def test_image_without_labels_fails(sample: CraftedImage, tmp_path: Path, layout_cache: Path) -> None:
    sample.labels.clear()
    ref = sample.write_archive(tmp_path / "image.tar")
    result = run_layout_tier("--ext-image", ref, LAYOUT, cache_dir=layout_cache)
    assert result.returncode == 1, _summary(result)
    assert _names_defect(result.stdout, "layout.metadata.labels", "config.Labels"), _summary(result)


@pytest.mark.parametrize("kind", ["oci", "oci-archive", "docker-archive"])
def test_ext_image_inputs_pass(kind: str, sample: CraftedImage, tmp_path: Path, layout_cache: Path) -> None:
    ref = {
        "oci": lambda: sample.write_layout(tmp_path / "layout", tag="1.1"),
        "oci-archive": lambda: sample.write_archive(tmp_path / "image.tar", tag="1.1") + ":1.1",
        "docker-archive": lambda: sample.write_docker_archive(tmp_path / "image.docker.tar"),
    }[kind]()
    result = run_layout_tier("--ext-image", ref, "--expect-version", "1.1", LAYOUT, cache_dir=layout_cache)
    assert result.returncode == 0, _summary(result)


def test_engine_image_name(sample: CraftedImage, tmp_path: Path, layout_cache: Path) -> None:
    engine = detect_engine()
    if engine is None:
        pytest.skip("no container engine: podman or docker is needed to test an engine image name")
    name = f"localhost/extharness-test/pg_ticker-ext:{uuid.uuid4().hex[:12]}"
    archive = Path(sample.write_docker_archive(tmp_path / "load.tar", repo_tag=name).split(":", 1)[1])
    engine.run("load", "-i", str(archive))
    try:
        result = run_layout_tier(
            "--ext-image",
            name,
            LAYOUT,
            cache_dir=layout_cache,
            engine=None,
            extra_env={"EXTHARNESS_ENGINE": engine.kind},
        )
        assert result.returncode == 0, _summary(result)
        assert re.search(r"\d+ passed", result.stdout)
    finally:
        engine.remove_image(name)


def test_parallel_run_passes_and_writes_findings(good_release: Path, tmp_path: Path, layout_cache: Path) -> None:
    report = tmp_path / "findings.json"
    result = run_layout_tier(
        "--ext-artifacts", str(good_release), "-n", "2", "--findings-json", str(report), LAYOUT, cache_dir=layout_cache
    )
    assert result.returncode == 0, _summary(result)
    assert re.search(r"\d+ passed", result.stdout) and "failed" not in result.stdout
    findings = json.loads(report.read_text())["findings"]  # gathered from both workers by the controller
    assert {f["severity"] for f in findings} == {"info"}
    assert any(f["rule"] == "layout.metadata.size" for f in findings)


def test_findings_json_of_a_failing_run(
    sample: CraftedImage, elf_kit: ElfKit, tmp_path: Path, layout_cache: Path
) -> None:
    folder = sample.put(LIB, elf_kit.rpath_module(), 0o4755).write_release_folder(tmp_path / "dist")
    report = tmp_path / "out" / "findings.json"
    result = run_layout_tier(
        "--ext-artifacts", str(folder), "--findings-json", str(report), LAYOUT, cache_dir=layout_cache
    )
    assert result.returncode == 1, _summary(result)
    findings = json.loads(report.read_text())["findings"]
    for finding in findings:
        assert {"rule", "severity", "path", "message"} <= set(finding)
        assert finding["severity"] in ("error", "warning", "info") and finding["message"]
    errors = {(f["rule"], f["path"]) for f in findings if f["severity"] == "error"}
    assert errors == {("layout.elf.rpath", LIB), ("layout.tree.no-setuid", LIB)}
