"""The pgrx recipe's logic without a container engine: cache keys, build arguments, and the
shell steps of cnpg/Dockerfile.ext-build (pgrx version from Cargo.lock, target stubs) run on
crafted trees."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from extharness.errors import HarnessError
from extharness.postgres.profiles import load_profile
from extharness.source import sample_rs
from extharness.source.engine import Engine

RECIPE = sample_rs.RECIPE.read_text()


def _copy_sample(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(sample_rs.SAMPLE_RS_DIR, tree, ignore=shutil.ignore_patterns("target"))
    return tree


def test_key_follows_sources_and_arguments_but_not_build_outputs(tmp_path):
    tree = _copy_sample(tmp_path)
    args = sample_rs.build_arguments("localhost/extharness/pg18-builder:18", "0.2.0")
    key = sample_rs.build_key(tree, args)
    (tree / "target" / "release").mkdir(parents=True)
    (tree / "target" / "release" / "junk.so").write_bytes(b"x")
    assert sample_rs.build_key(tree, args) == key, "target/ is a build output, not an input"
    assert sample_rs.build_key(tree, {**args, "VERSION": "9"}) != key
    (tree / "src" / "lib.rs").write_text((tree / "src" / "lib.rs").read_text() + "\n// changed\n")
    assert sample_rs.build_key(tree, args) != key


def test_offline_builder_gets_debian_rust_and_upstream_builder_keeps_the_defaults():
    offline = sample_rs.build_arguments("localhost/extharness/pg18-builder:18", "0.2.0")
    assert (offline["BUILDER_IMAGE"], offline["RUST_SOURCE"]) == ("localhost/extharness/pg18-builder:18", "debian")
    assert re.fullmatch(r"\d+\.\d+\.\d+\+dfsg\d*-\d+", offline["RUST_VERSION"]), offline["RUST_VERSION"]
    upstream = sample_rs.build_arguments(sample_rs.UPSTREAM_BUILDER, "0.2.0")
    assert not {"BUILDER_IMAGE", "RUST_SOURCE", "RUST_VERSION"} & set(upstream)
    assert f"ARG BUILDER_IMAGE={sample_rs.UPSTREAM_BUILDER}" in RECIPE, "the recipe's default builder moved"


def test_ca_bundle_is_mounted_for_podman_only(tmp_path):
    bundle = tmp_path / "ca.crt"
    bundle.write_text("not a real certificate")
    extra, args = sample_rs.engine_arguments(Engine("/usr/bin/podman", "podman"), bundle)
    assert f"{bundle}:{sample_rs.CA_IN_BUILD}:ro" in extra and args == {"CARGO_HTTP_CAINFO": sample_rs.CA_IN_BUILD}
    extra, args = sample_rs.engine_arguments(Engine("/usr/bin/docker", "docker"), bundle)
    assert "--volume" not in extra and not args
    extra, args = sample_rs.engine_arguments(Engine("/usr/bin/podman", "podman"), tmp_path / "absent.crt")
    assert "--volume" not in extra and not args


def test_a_tree_without_cargo_lock_is_refused_clearly(tmp_path):
    tree = _copy_sample(tmp_path)
    (tree / "Cargo.lock").unlink()
    with pytest.raises(HarnessError, match="missing Cargo.lock"):
        sample_rs.sample_rs_dir(tree)


def test_profile_matches_the_crate():
    manifest = tomllib.loads((sample_rs.SAMPLE_RS_DIR / "Cargo.toml").read_text())
    profile = load_profile("pg_ticker_rs")
    assert profile.module_version == manifest["package"]["version"] == sample_rs.crate_version()
    assert manifest["dependencies"]["pgrx"].startswith("="), "pin pgrx exactly, as pg_trickle does"
    control = (sample_rs.SAMPLE_RS_DIR / "pg_ticker_rs.control").read_text()
    assert "default_version = '@CARGO_VERSION@'" in control


# -- the recipe's shell steps, run on crafted trees -------------------------------------------------
def _stage_script(stage: str, root: Path) -> str:
    """The RUN script of ``stage`` with its absolute paths moved under ``root``."""
    block = RECIPE.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
    script = block.split("RUN ", 1)[1].replace("\\\n", " ")
    # One pass, so a replaced path is never replaced again (root itself lives under /tmp).
    return re.sub(r"(?<=[\s\"'>(=#])(/src|/recipe|/in|/pgrx-version|/tmp)(?=[/\s\"';)]|$)", rf"{root}\1", script)


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_pgrx_version_is_read_from_cargo_lock(tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copy(sample_rs.SAMPLE_RS_DIR / "Cargo.lock", tmp_path / "in" / "Cargo.lock")
    proc = _run(_stage_script("lockfile", tmp_path))
    assert proc.returncode == 0, proc.stderr
    lock = (sample_rs.SAMPLE_RS_DIR / "Cargo.lock").read_text()
    locked = re.search(r'name = "pgrx"\nversion = "([^"]+)"', lock)
    assert locked and (tmp_path / "pgrx-version").read_text().strip() == locked.group(1) == "0.18.0"


def test_missing_cargo_lock_or_pgrx_fails_with_a_message(tmp_path):
    (tmp_path / "in").mkdir()
    proc = _run(_stage_script("lockfile", tmp_path))
    assert proc.returncode != 0 and "no Cargo.lock" in proc.stderr
    (tmp_path / "in" / "Cargo.lock").write_text('[[package]]\nname = "pgrx-macros"\nversion = "0.18.0"\n')
    proc = _run(_stage_script("lockfile", tmp_path))
    assert proc.returncode != 0 and "no pgrx package" in proc.stderr


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed: the stub step runs cargo metadata")
def test_every_declared_target_gets_a_stub_even_when_absent(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(sample_rs.SAMPLE_RS_DIR, src, ignore=shutil.ignore_patterns("target"))
    (src / "benches" / "tick_bench.rs").unlink()  # as .dockerignore or git archive (export-ignore) leave it out
    (src / "src" / "bin" / "extra.rs").write_text("fn main() {}\n")  # auto-discovered src/bin/*.rs
    (tmp_path / "tmp").mkdir()
    proc = _run(_stage_script("recipe", tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "declared bench tick_bench has no ./benches/tick_bench.rs" in proc.stdout
    recipe = tmp_path / "recipe"
    for stub in ("src/lib.rs", "src/bin/pg_ticker_rs_dump.rs", "src/bin/extra.rs", "benches/tick_bench.rs"):
        assert (recipe / stub).is_file(), f"no stub for {stub}: {proc.stdout}"
    assert "fn main" not in (recipe / "src" / "lib.rs").read_text()
    own = 'name = "pg_ticker_rs"\nversion = "0.2.0"\n'
    assert (recipe / "Cargo.lock").read_text() == (src / "Cargo.lock").read_text().replace(
        own, own.replace("0.2.0", "0.0.0")
    ), "only the tree's own version may differ from the lock file"
    assert (src / "benches" / "tick_bench.rs").is_file(), "the real tree needs the declared bench too"
    assert not (recipe / "sql").exists(), "the dependency layer must not depend on sql/ or src/"


def _recipe_of(tmp_path: Path, name: str, version: str, pin_path_dependency: bool = False) -> dict[str, tuple]:
    """The recipe stage run on a copy of the sample whose own version is ``version``: every file's
    (bytes, mtime), by path."""
    root = tmp_path / name
    src = root / "src"
    shutil.copytree(sample_rs.SAMPLE_RS_DIR, src, ignore=shutil.ignore_patterns("target"))
    for manifest in ("Cargo.toml", "Cargo.lock"):
        text = (src / manifest).read_text()
        own = 'name = "pg_ticker_rs"\nversion = "0.2.0"'
        assert own in text, f"the sample's {manifest} moved"
        (src / manifest).write_text(text.replace(own, own.replace("0.2.0", version)))
    if pin_path_dependency:  # a path dependency with a version requirement must keep the versions
        helper = src / "helper"
        (helper / "src").mkdir(parents=True)
        (helper / "Cargo.toml").write_text('[package]\nname = "helper"\nversion = "0.1.0"\nedition = "2021"\n')
        (helper / "src" / "lib.rs").write_text("")
        text = (src / "Cargo.toml").read_text()
        (src / "Cargo.toml").write_text(text + '\n[dependencies.helper]\npath = "helper"\nversion = "0.1"\n')
    (root / "tmp").mkdir()
    proc = _run(_stage_script("recipe", root))
    assert proc.returncode == 0, proc.stderr
    recipe = root / "recipe"
    return {
        str(f.relative_to(recipe)): (f.read_bytes() if f.is_file() else None, f.lstat().st_mtime)
        for f in sorted(recipe.rglob("*"))
    }


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed: the stub step runs cargo metadata")
def test_releases_that_differ_only_in_their_version_share_one_recipe(tmp_path):
    """What lets 0.66.0 and 0.67.0 of an extension reuse one dependency layer: the tree's own
    version is masked and every time stamp fixed, so the recipe is the same, byte for byte."""
    first = _recipe_of(tmp_path, "a", "0.66.0")
    second = _recipe_of(tmp_path, "b", "0.67.0")
    assert first == second
    assert all(mtime == 0 for _content, mtime in first.values())
    assert b'version = "0.0.0"' in first["Cargo.toml"][0]


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed: the stub step runs cargo metadata")
def test_a_pinned_path_dependency_keeps_the_versions(tmp_path):
    pinned = _recipe_of(tmp_path, "p", "0.67.0", pin_path_dependency=True)
    assert b'version = "0.67.0"' in pinned["Cargo.toml"][0]
    assert b'version = "0.0.0"' not in pinned["Cargo.lock"][0]
