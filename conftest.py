"""Root conftest of the extharness repository: load the harness's pytest plugin, and mark each test
by its tier folder (``tests/layout`` -> ``layout``, ...) so ``-m layout`` selects a tier.

With ``-n``, the long groups are handed out first (the pgrx sample's build, the kit's clusters,
the cnpg tier's deployments), so their waiting overlaps the many short tests instead of coming
after them: xdist gives out work units in collection order (``--no-loadscope-reorder``).

The marking lives here, not in the plugin, because it is this repository's convention: a foreign
project's ``tests/unit`` in the same virtualenv is left as it is.
"""

from pathlib import Path

import pytest

from extharness.pytest_plugin import mark_tier_folders

pytest_plugins = ["extharness.pytest_plugin", "pytester"]  # pytester: nested runs in the harness self-tests

TESTS = Path(__file__).resolve().parent / "tests"


#: xdist groups in the order they are handed out, before every other test (the longest first).
LONG_GROUPS = ("pgrx-sample", "kit", "cnpg-deployment")


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
