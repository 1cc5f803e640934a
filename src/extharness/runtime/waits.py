"""Waiting for something with a limit, and saying what was awaited when the limit runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from extharness.errors import HarnessError

T = TypeVar("T")


class Gone(Exception):
    """Raised by a probe when what it waits for can never come (a process that ended)."""


def poll(probe: Callable[[], T | None], timeout: float, *, interval: float = 0.1) -> T | None:
    """Call ``probe`` until it returns something other than None, and return that; None when
    ``timeout`` seconds pass first (for waits whose caller reports the time-out in its own way).

    The probe is tried at least once, then every ``interval`` seconds, and once more when the
    time is up. What the probe raises (``Gone``, or a failure that will not fix itself) ends the
    wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    setting: str,
    *,
    interval: float = 0.1,
    last_state: Callable[[], str] | None = None,
    failed: str = "did not happen",
    error: type[HarnessError] = HarnessError,
) -> T:
    """``poll``, and when the time runs out one ``error`` (a HarnessError) naming ``what``, how it
    ``failed``, the limit, the ``setting`` that changes the limit, and the last state seen
    (``last_state()``): "postgres did not become ready within 60s (raise X); last state: ...".
    """
    found = poll(probe, timeout, interval=interval)
    if found is None:
        state = f"; last state: {last_state()}" if last_state else ""
        raise error(f"{what} {failed} within {timeout:g}s (raise {setting}){state}")
    return found
