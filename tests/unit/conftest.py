"""Fixtures of the harness's own tests: the sample as a crafted image, compiled ELF cases, targets."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from extharness.checks.target import LayoutTarget
from extharness.errors import EnvironmentMissing
from extharness.inspect.operand import DEFAULT_OPERAND_IMAGE, baseline_profile
from extharness.source.acquire import build_sample_release, default_cache_dir

sys.path.insert(0, str(Path(__file__).parent))

from crafted import CraftedImage, ElfKit  # noqa: E402

# Property tests run on every commit: few examples, no deadline (first calls warm caches).
# ``--hypothesis-profile thorough`` runs many more.
settings.register_profile("extharness", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--hypothesis-profile", None):
        settings.load_profile("extharness")


@pytest.fixture(scope="session")
def sample_release() -> Path:
    """The pg_ticker sample's release folder, built once (shared cache, safe across workers)."""
    try:
        return build_sample_release(default_cache_dir(), None)
    except EnvironmentMissing as exc:
        pytest.skip(f"cannot build the sample extension: {exc}")


@pytest.fixture(scope="session")
def sample_base(sample_release: Path) -> CraftedImage:
    return CraftedImage.from_release_folder(sample_release)


@pytest.fixture
def sample(sample_base: CraftedImage) -> CraftedImage:
    """A fresh copy of the sample image to break."""
    return sample_base.copy()


@pytest.fixture(scope="session")
def elf_kit(tmp_path_factory: pytest.TempPathFactory) -> ElfKit:
    return ElfKit(tmp_path_factory.mktemp("elf"))


@pytest.fixture(scope="session")
def make_target() -> Callable[..., LayoutTarget]:
    """LayoutTarget against the default operand's documented baseline, with overrides."""

    def make(glibc: str | None = None, **overrides) -> LayoutTarget:
        return LayoutTarget(operand=baseline_profile(DEFAULT_OPERAND_IMAGE, glibc), **overrides)

    return make


@pytest.fixture(scope="session")
def layout_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EXTHARNESS_CACHE_DIR for subprocess runs (images built from crafted folders land here)."""
    return tmp_path_factory.mktemp("xh-cache")
