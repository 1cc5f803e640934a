"""Where the harness keeps builds, base images and downloads, and how entries are named."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``EXTHARNESS_CACHE_DIR``, else ``$XDG_CACHE_HOME/extharness`` (``~/.cache/extharness``)."""
    configured = os.environ.get("EXTHARNESS_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "extharness"


def cache_key(*parts: str, length: int = 20) -> str:
    """A short stable name for a cache entry made from ``parts`` (each part kept distinct)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:length]
