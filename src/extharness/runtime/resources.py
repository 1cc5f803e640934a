"""Where the project's data files are: recipes, the samples, base-image recipes, the tier tests.

    data_path("cnpg/Dockerfile.ext")      -> <repo>/cnpg/Dockerfile.ext      (checkout, pip install -e .)
                                          -> <site-packages>/extharness/_data/cnpg/Dockerfile.ext  (wheel)

Paths are the repository's own (``cnpg/``, ``sample/pg_ticker``, ``images/``, ``tests/layout``,
``conftest.py``, ...). In a checkout, where this package is ``<repo>/src/extharness``, they are
the repository's files, so an edit counts at once. An installed wheel has no checkout next to it:
the build (``setup.py``) copies the same files, in the same layout, into ``extharness/_data``.

This is the one module that looks outside the package; every other one asks it
(``tests/unit/test_resources.py`` holds them to that).
"""

from __future__ import annotations

import functools
from pathlib import Path

#: The installed package (``.../extharness``); ``runtime/`` is one of its folders.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: Where a wheel keeps the copies (``setup.py`` writes them).
SHIPPED_DIR = PACKAGE_DIR / "_data"
#: A file only the repository has, to tell a checkout from any other parent folder.
_CHECKOUT_MARKER = "cnpg/Dockerfile.ext"


@functools.cache
def checkout_root() -> Path | None:
    """The repository this package is running from (``<repo>/src/extharness``), or None."""
    src = PACKAGE_DIR.parent
    root = src.parent
    if src.name == "src" and (root / "pyproject.toml").is_file() and (root / _CHECKOUT_MARKER).is_file():
        return root
    return None


def data_root() -> Path:
    """The folder the data paths are relative to: the checkout, else the wheel's ``_data``."""
    return checkout_root() or SHIPPED_DIR


def data_path(relative: str) -> Path:
    """``relative`` (a repository path such as ``cnpg/Dockerfile.ext``) in :func:`data_root`.

    Not checked for existence: callers say what is missing in their own words."""
    return data_root() / relative


def is_checkout() -> bool:
    return checkout_root() is not None


def where() -> str:
    """For messages: ``the checkout <root>`` or ``the installed package's data <dir>``."""
    root = checkout_root()
    return f"the checkout {root}" if root else f"the installed package's data {SHIPPED_DIR}"
