"""The CI files users copy: both workflows are valid GitHub Actions workflows, the justfile has its targets."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def _check_jsonschema() -> str:
    found = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    if not Path(found).exists():
        pytest.skip("check-jsonschema not installed (pip install check-jsonschema==0.39.0)")
    return found


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_workflow_validates_against_the_github_schema(name: str) -> None:
    path = WORKFLOWS / name
    result = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_ci_has_a_job_per_tier() -> None:
    jobs = _workflow("ci.yml")["jobs"]
    assert {"unit", "layout", "sql", "cnpg"} <= set(jobs)
    for tier in ("layout", "sql", "cnpg"):
        runs = " ".join(step.get("run", "") for step in jobs[tier]["steps"])
        assert f"./harness check -m {tier}" in runs


def test_cnpg_matrix_covers_the_imagevolume_versions_two_cnpg_minors_and_a_fallback_node() -> None:
    matrix = _workflow("ci.yml")["jobs"]["cnpg"]["strategy"]["matrix"]
    images = {n["image"].split(":")[1][:5]: n for n in matrix["node"]}
    assert set(images) == {"v1.33", "v1.35", "v1.36"}
    assert all(n["expect"] == "imagevolume" for n in images.values())
    from extharness.kube.session import resolve_cnpg_version

    minors = {".".join(resolve_cnpg_version(v).split(".")[:2]) for v in matrix["cnpg"]}
    assert len(minors) == 2 and all(tuple(map(int, m.split("."))) >= (1, 28) for m in minors)
    (fallback,) = matrix["include"]
    assert fallback["node"]["image"].startswith("kindest/node:v1.32")
    assert fallback["node"]["expect"] == "fallback-composite"


def test_release_gates_before_tagging() -> None:
    jobs = _workflow("release.yml")["jobs"]
    assert "gate" in jobs["publish"]["needs"]
    gate_runs = " ".join(step.get("run", "") for step in jobs["gate"]["steps"])
    assert "./harness check -m layout" in gate_runs and "--platforms linux/amd64,linux/arm64" in gate_runs
    assert "--expect-version" in gate_runs and "./harness check -m sql" in gate_runs
    tag_step = next(s for s in jobs["publish"]["steps"] if s.get("id") == "tags")["run"]
    assert "latest" in tag_step and "PRERELEASE" in tag_step
    image_runs = " ".join(step.get("run", "") for step in jobs["image"]["steps"])
    assert "-f cnpg/Dockerfile.ext " in image_runs and "dist/" in image_runs
    assert {i["arch"] for i in jobs["image"]["strategy"]["matrix"]["include"]} == {"amd64", "arm64"}


TARGET = re.compile(r"^(@?[A-Za-z0-9_-]+)(?:\s+[^:=]*)?:(?!=)")


def test_justfile_has_the_usual_targets() -> None:
    text = (ROOT / "justfile").read_text()
    targets = {m.group(1) for line in text.splitlines() if (m := TARGET.match(line)) and not line.startswith("set ")}
    assert {"default", "test", "check", "layout", "sql", "cnpg", "unit", "lint", "workflows", "clean"} <= targets
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and line.strip():
            assert line.startswith("    "), f"recipe lines are indented with four spaces: {line!r}"
