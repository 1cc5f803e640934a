"""The offline PostgreSQL 18 stand-in images: recipe, mirror, references, and one real build."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.postgres import base_images
from extharness.postgres.base_images import (
    BUILDER_STANDIN,
    IMAGES_DIR,
    OPERAND_STANDIN,
    POSTGRES_STANDIN,
    debian_mirror,
    is_standin_for,
    mirror_from_deb822,
    mirror_from_sources_list,
    recipe_hash,
    resolve_operand_image,
    resolve_pg_image,
)

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian http://second.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main
"""

SOURCES_LIST = """\
# deb http://commented.example.org/debian bookworm main
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://list.example.org/debian bookworm main
deb http://later.example.org/debian bookworm main
"""


# -- the machine's Debian mirror ------------------------------------------------------------
def test_mirror_is_the_first_uri_of_debian_sources() -> None:
    assert mirror_from_deb822(DEB822) == "http://mirror.example.org/debian"


def test_mirror_of_sources_list_skips_comments_deb_src_and_options() -> None:
    assert mirror_from_sources_list(SOURCES_LIST) == "http://list.example.org/debian"


def test_mirror_prefers_debian_sources_then_falls_back_to_sources_list(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EXTHARNESS_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(SOURCES_LIST)
    assert debian_mirror(tmp_path) == "http://list.example.org/debian"
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert debian_mirror(tmp_path) == "http://mirror.example.org/debian"


def test_mirror_override_and_missing_mirror(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EXTHARNESS_DEBIAN_MIRROR", raising=False)
    with pytest.raises(EnvironmentMissing, match="EXTHARNESS_DEBIAN_MIRROR"):
        debian_mirror(tmp_path)
    monkeypatch.setenv("EXTHARNESS_DEBIAN_MIRROR", "http://override.example.org/debian")
    assert debian_mirror(tmp_path) == "http://override.example.org/debian"


# -- recipes --------------------------------------------------------------------------------
@pytest.fixture
def images_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "images"
    shutil.copytree(IMAGES_DIR, copy)
    return copy


def test_recipe_hash_is_stable_and_differs_per_image(images_copy: Path) -> None:
    hashes = {kind: recipe_hash(kind, images_copy) for kind in ("rootfs", "postgres", "operand", "builder")}
    assert hashes == {kind: recipe_hash(kind, IMAGES_DIR) for kind in hashes}, "copying images/ changed a hash"
    assert len(set(hashes.values())) == 4


def test_changed_entrypoint_rebuilds_the_images_that_contain_it(images_copy: Path) -> None:
    before = {kind: recipe_hash(kind, images_copy) for kind in ("rootfs", "postgres", "operand", "builder")}
    entrypoint = images_copy / "docker-entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text() + "\n# changed\n")
    after = {kind: recipe_hash(kind, images_copy) for kind in before}
    assert after["rootfs"] == before["rootfs"], "the debootstrapped base does not contain the entrypoint"
    for kind in ("postgres", "operand", "builder"):
        assert after[kind] != before[kind], f"{kind} stand-in would keep a stale entrypoint"


def test_changed_rootfs_recipe_rebuilds_everything(images_copy: Path) -> None:
    before = {kind: recipe_hash(kind, images_copy) for kind in ("rootfs", "postgres", "operand", "builder")}
    script = images_copy / "prepare-rootfs.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    assert all(recipe_hash(kind, images_copy) != old for kind, old in before.items())


def test_missing_recipe_file_is_one_clear_error(images_copy: Path) -> None:
    (images_copy / "set-postgres-user.sh").unlink()
    with pytest.raises(HarnessError, match="set-postgres-user.sh .* missing"):
        recipe_hash("operand", images_copy)


def test_build_chains_start_from_the_debootstrapped_base() -> None:
    assert base_images._chain("postgres") == ["rootfs", "postgres"]
    assert base_images._chain("operand") == ["rootfs", "operand"]
    assert base_images._chain("builder") == ["rootfs", "postgres", "builder"]


def test_standins_run_postgres_with_the_uids_of_the_images_they_replace() -> None:
    assert POSTGRES_STANDIN.ref == "localhost/extharness/postgres:18" and POSTGRES_STANDIN.postgres_uid == 999
    assert OPERAND_STANDIN.ref == "localhost/extharness/cnpg-operand:18-minimal" and OPERAND_STANDIN.postgres_uid == 26
    assert BUILDER_STANDIN.ref == "localhost/extharness/pg18-builder:18"
    assert POSTGRES_STANDIN.libdir == "/usr/lib/postgresql/18/lib"
    assert POSTGRES_STANDIN.sharedir == "/usr/share/postgresql/18"


def test_entrypoint_and_scripts_parse() -> None:
    for name, shell in (("docker-entrypoint.sh", "bash"), ("prepare-rootfs.sh", "sh"), ("set-postgres-user.sh", "sh")):
        result = subprocess.run([shell, "-n", str(IMAGES_DIR / name)], capture_output=True, text=True)
        assert result.returncode == 0, f"images/{name} has a syntax error: {result.stderr.strip()}"


# -- which references a stand-in may replace --------------------------------------------------
@pytest.mark.parametrize(
    "ref",
    ["postgres:18", "postgres:18.1", "postgres:18-trixie", "docker.io/library/postgres:18.1-bookworm",
     "docker.io/postgres:18", "library/postgres:18", "postgres:18@sha256:" + "a" * 64],
)  # fmt: skip
def test_postgres_18_references_have_a_standin(ref: str) -> None:
    assert is_standin_for(ref, "postgres")


@pytest.mark.parametrize(
    "ref", ["postgres:17", "postgres:180", "postgres:latest", "ghcr.io/x/postgres:18", "quay.io/postgres:18"]
)
def test_other_postgres_references_have_none(ref: str) -> None:
    assert not is_standin_for(ref, "postgres")


def test_operand_references() -> None:
    assert is_standin_for("ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie", "operand")
    assert is_standin_for("ghcr.io/cloudnative-pg/postgresql:18.1-minimal-bookworm", "operand")
    assert not is_standin_for("ghcr.io/cloudnative-pg/postgresql:17-minimal-trixie", "operand")
    assert not is_standin_for("postgres:18", "operand")


def test_short_names_are_pulled_from_docker_hub_by_podman() -> None:
    podman = FakeEngine(kind="podman")
    assert base_images._qualified("postgres:18.1", podman) == "docker.io/library/postgres:18.1"
    assert base_images._qualified("bitnami/postgresql:18", podman) == "docker.io/bitnami/postgresql:18"
    assert (
        base_images._qualified("ghcr.io/cloudnative-pg/postgresql:18", podman) == "ghcr.io/cloudnative-pg/postgresql:18"
    )
    assert base_images._qualified("postgres:18.1", FakeEngine(kind="docker")) == "postgres:18.1"


# -- resolving with a fake engine --------------------------------------------------------------
@dataclass
class FakeEngine:
    kind: str = "podman"
    local: set[str] = field(default_factory=set)
    pullable: set[str] = field(default_factory=set)
    pulls: list[str] = field(default_factory=list)
    cli: str = "/nonexistent/podman"

    def image_exists(self, ref: str) -> bool:
        return ref in self.local

    def run(self, *args: str, **_: object) -> subprocess.CompletedProcess[str]:
        assert args[0] == "pull", args
        self.pulls.append(args[1])
        ok = args[1] in self.pullable
        return subprocess.CompletedProcess(list(args), 0 if ok else 125, "", "" if ok else "Error: offline")


@pytest.fixture
def fresh_pull_cache(monkeypatch):
    monkeypatch.setattr(base_images, "_pull_errors", {})
    monkeypatch.setattr(base_images, "_announced", set())
    built: list[str] = []

    def fake_ensure(kind, engine, cache_dir, **_):
        built.append(kind)
        return base_images.STANDINS[kind]

    monkeypatch.setattr(base_images, "ensure_base_image", fake_ensure)
    return built


def test_local_image_is_used_as_is(fresh_pull_cache) -> None:
    engine = FakeEngine(local={"postgres:18.1"})
    assert resolve_pg_image("postgres:18.1", engine) == "postgres:18.1"  # type: ignore[arg-type]
    assert engine.pulls == [] and fresh_pull_cache == []


def test_pullable_image_is_pulled(fresh_pull_cache) -> None:
    engine = FakeEngine(pullable={"docker.io/library/postgres:18.1"})
    assert resolve_pg_image("postgres:18.1", engine) == "postgres:18.1"  # type: ignore[arg-type]
    assert fresh_pull_cache == []


def test_offline_postgres_18_falls_back_to_the_standin_and_says_so(fresh_pull_cache, capsys, tmp_path) -> None:
    engine = FakeEngine()
    for _ in range(2):
        assert resolve_pg_image("postgres:18.1", engine, tmp_path) == POSTGRES_STANDIN.ref  # type: ignore[arg-type]
    assert engine.pulls == ["docker.io/library/postgres:18.1"], "a failed pull is tried once per process"
    assert fresh_pull_cache == ["postgres", "postgres"]
    err = capsys.readouterr().err
    assert (
        err.count("postgres:18.1 cannot be pulled here; using offline stand-in localhost/extharness/postgres:18") == 1
    )


def test_offline_operand_falls_back_to_the_operand_standin(fresh_pull_cache, tmp_path) -> None:
    ref = "ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie"
    assert resolve_operand_image(ref, FakeEngine(), tmp_path) == OPERAND_STANDIN.ref  # type: ignore[arg-type]
    assert fresh_pull_cache == ["operand"]


def test_offline_image_without_standin_is_one_clear_error(fresh_pull_cache) -> None:
    with pytest.raises(HarnessError, match=r"postgres:17 is not in the local image store and cannot be pulled"):
        resolve_pg_image("postgres:17", FakeEngine())  # type: ignore[arg-type]
    assert fresh_pull_cache == []


# -- one real build -----------------------------------------------------------------------------
@pytest.mark.timeout(1800)
def test_postgres_standin_runs_postgresql_18() -> None:
    """Builds the stand-in the first time (about 1-2 min); afterwards only checks its label."""
    from extharness.source.engine import NO_ENGINE, detect_engine

    engine = detect_engine()
    if engine is None:
        pytest.skip(NO_ENGINE)
    try:
        image = base_images.ensure_base_image("postgres", engine, base_images.default_cache_dir())
    except EnvironmentMissing as exc:
        pytest.skip(str(exc))
    # Low ulimits: some sandboxes (no CAP_SYS_RESOURCE) refuse podman's default raised limits.
    result = engine.run(
        "run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        image.ref, "postgres", "--version",
    )  # fmt: skip
    assert "(PostgreSQL) 18." in result.stdout, f"{image.ref} runs {result.stdout.strip()!r}, not PostgreSQL 18"


def test_builder_standin_is_preferred_once_built(fresh_pull_cache, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(base_images, "_is_current", lambda engine, step: step == "builder")
    engine = FakeEngine()
    assert base_images.resolve_builder_image(engine, tmp_path, "postgres:18.1") == BUILDER_STANDIN.ref  # type: ignore[arg-type]
    assert engine.pulls == [], "a built stand-in needs no registry"


def test_builder_falls_back_to_requested_then_to_building_the_standin(fresh_pull_cache, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(base_images, "_is_current", lambda engine, step: False)
    online = FakeEngine(pullable={"docker.io/library/postgres:18.1"})
    assert base_images.resolve_builder_image(online, tmp_path, "postgres:18.1") == "postgres:18.1"  # type: ignore[arg-type]
    assert fresh_pull_cache == []
    offline = FakeEngine()
    assert base_images.resolve_builder_image(offline, tmp_path, "postgres:18.2") == BUILDER_STANDIN.ref  # type: ignore[arg-type]
    assert fresh_pull_cache == ["builder"]
