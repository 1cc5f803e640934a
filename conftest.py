"""Root conftest of the extharness repository: load the harness's pytest plugin, and mark each test
by its tier folder (``tests/layout`` -> ``layout``, ...) so ``-m layout`` selects a tier.

The marking lives here, not in the plugin, because it is this repository's convention: a foreign
project's ``tests/unit`` in the same virtualenv is left as it is.

Two things keep ``pytest -m layout`` (every test path, the tier by marker) about as fast as the
layout tests alone: a tier folder whose tests the ``-m`` expression cannot select is not collected
at all, and hypothesis's plugin is dropped when nothing collected imported hypothesis.

With ``-n``, the long groups are handed out first (the pgrx sample's build, the kit's clusters,
the cnpg tier's deployments), so their waiting overlaps the many short tests instead of coming
after them: xdist gives out work units in collection order (``--no-loadscope-reorder``).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from extharness.pytest_plugin import could_select, mark_tier_folders

pytest_plugins = ["extharness.pytest_plugin", "pytester"]  # pytester: nested runs in the harness self-tests

TESTS = Path(__file__).resolve().parent / "tests"


#: xdist groups in the order they are handed out, before every other test. xdist gives each
#: worker one unit, then the next unit to the first worker down to its last two tests: with two
#: workers, one takes "kit", the other the pgrx sample, the cnpg tier's deployments and then
#: "kit-b" (the kit clusters split in two: one group alone was the whole run's long pole).
LONG_GROUPS = ("pgrx-sample", "kit", "cnpg-deployment", "kit-b")


def pytest_addoption(parser: pytest.Parser) -> None:
    if importlib.util.find_spec("pytest_timeout") is None:
        # pyproject's `timeout = 900` is pytest-timeout's, which an install for the layout tier
        # alone (`pip install extharness`, no [sql]/[cnpg]) lacks: no "Unknown config option" then
        parser.addini("timeout", "pytest-timeout's per-test limit (pytest-timeout is not installed: none)")


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # keep the order below (xdist sorts by group size otherwise)


def _long_group_first(item: pytest.Item) -> int:
    marker = item.get_closest_marker("xdist_group")
    name = (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker is not None else None
    return LONG_GROUPS.index(name) if name in LONG_GROUPS else len(LONG_GROUPS)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_tier_folders(items, TESTS)
    items.sort(key=_long_group_first)  # stable: each group, and the rest, keep their own order


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip collecting ``tests/<folder>`` when ``-m`` deselects all of it anyway (its imports, e.g.
    hypothesis and the Kubernetes client, are most of an unfiltered ``pytest -m layout``'s time)."""
    markexpr = config.option.markexpr
    if markexpr and collection_path.parent == TESTS and collection_path.is_dir():
        if not could_select(markexpr, collection_path.name):
            return True
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """No collected module imported hypothesis, so no test uses it: unplug its plugin, whose
    terminal summary imports all of hypothesis (~0.5 s) only to find nothing to report."""
    if "hypothesis" not in sys.modules:
        plugin = session.config.pluginmanager.get_plugin("hypothesispytest")
        if plugin is not None:
            session.config.pluginmanager.unregister(plugin)
