"""Root conftest of the extharness repository: load the harness's pytest plugin, and mark each test
by its tier folder (``tests/layout`` -> ``layout``, ...) so ``-m layout`` selects a tier.

The marking lives here, not in the plugin, because it is this repository's convention: a foreign
project's ``tests/unit`` in the same virtualenv is left as it is.
"""

from pathlib import Path

import pytest

from extharness.pytest_plugin import mark_tier_folders

pytest_plugins = ["extharness.pytest_plugin", "pytester"]  # pytester: nested runs in the harness self-tests

TESTS = Path(__file__).resolve().parent / "tests"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_tier_folders(items, TESTS)
