"""Which container engine CLI is installed, without loading its driver.

:mod:`extharness.source.engine` drives the CLI (and loads subprocess handling, settings and
secrets for it); a command that only needs to know whether there is one, and which (``extharness
layout`` with no engine asks nothing of it), reads it here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def installed_clis() -> Iterator[tuple[str, str]]:
    """(path, kind) of ``EXTHARNESS_ENGINE`` if set (``none``: nothing), else of podman, then docker,
    where on PATH; kind is ``podman`` or ``docker`` (a CLI under another name: the name asked for)."""
    wanted = os.environ.get("EXTHARNESS_ENGINE", "").strip().lower()
    if wanted == "none":
        return
    for name in [wanted] if wanted else ["podman", "docker"]:
        cli = shutil.which(name)
        if cli:
            yield cli, Path(cli).name if Path(cli).name in ("podman", "docker") else name
