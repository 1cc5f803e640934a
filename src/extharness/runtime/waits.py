"""Waiting for something with a limit, and saying what was awaited when the limit runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from extharness.errors import HarnessError

T = TypeVar("T")


class Gone(Exception):
    """Raised by a probe when what it waits for can never come (a process that ended)."""


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    setting: str,
    *,
    interval: float = 0.1,
    last_state: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None, and return that.

    The probe is tried at least once, then every ``interval`` seconds for ``timeout`` seconds.
    When the time runs out: one HarnessError naming ``what``, the limit, the last state seen
    (``last_state()``) and the ``setting`` that changes the limit. A probe that raises ``Gone``
    ends the wait at once (the caller decides what that means).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            state = f"; last state: {last_state()}" if last_state else ""
            raise HarnessError(f"{what} did not happen within {timeout:g}s (raise {setting}){state}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
