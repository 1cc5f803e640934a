"""Root conftest: load the harness's pytest plugin (options, fixtures, findings output)."""

pytest_plugins = ["extharness.pytest_plugin"]
