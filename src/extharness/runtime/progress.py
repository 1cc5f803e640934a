"""Progress of long steps, on stderr (pytest shows it with -s; CI logs keep it)."""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    sys.stderr.write(f"[extharness] {message}\n")
    sys.stderr.flush()
