"""What an image is checked against: the operand image and the user's expectations."""

from __future__ import annotations

from dataclasses import dataclass

from extharness.inspect.model import Platform
from extharness.inspect.operand import CNPG_POSTGRES_GID, CNPG_POSTGRES_UID, OperandProfile

#: CNPG's operand images run postgres as this user and group.
POSTGRES_UID = CNPG_POSTGRES_UID
POSTGRES_GID = CNPG_POSTGRES_GID


@dataclass(frozen=True)
class LayoutTarget:
    operand: OperandProfile
    expect_version: str | None = None
    max_image_mb: float = 10.0
    platforms: tuple[Platform, ...] | None = None  # exactly these, when given
    # --expect-tags resolved at the edge: tag -> digest, or the one-line reason it could not be resolved
    tag_digests: dict[str, str] | None = None
