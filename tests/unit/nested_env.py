"""The environment of a nested pytest session on the native backend, for the broken-variant tests.

``test_sql_variants.py`` and ``test_upgrade_variants.py`` run the sql tier on a broken build of
the sample in a subprocess, a few at a time; each session needs the same environment.
"""

from __future__ import annotations

import os
from pathlib import Path


def native_session_env(cache_dir: Path, native_root: Path) -> dict[str, str]:
    """This process's environment for one nested session: no container engine, a cache of its
    own (``cache_dir``), the native template shared by all (``native_root``: initdb once), and
    neither our run id nor our xdist worker's name (the session is a run of its own and names
    its resources so)."""
    env = {
        **os.environ,
        "EXTHARNESS_ENGINE": "none",
        "EXTHARNESS_CACHE_DIR": str(cache_dir),
        "EXTHARNESS_NATIVE_ROOT": str(native_root),
    }
    for name in ("EXTHARNESS_RUN_ID", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return env
