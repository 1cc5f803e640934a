"""Registry references (``registry/name:tag`` or ``@sha256:...``), read without an engine."""

from __future__ import annotations

from pathlib import Path

from extharness.errors import HarnessError
from extharness.inspect.model import ExtensionImage


def pull_to_layout(reference: str, cache_dir: Path):  # -> AcquiredImage
    raise HarnessError(f"{reference}: registry references are not supported by this version of the harness; "
                       "pull the image with an engine or skopeo and pass oci:DIR")


def read_registry_image(reference: str, cache_dir: Path) -> ExtensionImage:
    raise HarnessError(f"{reference}: registry references are not supported by this version of the harness")
