"""File locks shared by xdist workers and concurrent sessions, which say who holds them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from extharness.errors import HarnessError
from extharness.runtime.progress import progress


def lock_timeout() -> float:
    """``EXTHARNESS_LOCK_TIMEOUT`` (seconds, default 3600), read when a lock is taken."""
    from extharness.runtime.settings import limit_of

    return limit_of("EXTHARNESS_LOCK_TIMEOUT")


@contextmanager
def held_lock(
    path: Path | str, what: str, timeout: float | None = None, setting: str = "EXTHARNESS_LOCK_TIMEOUT"
) -> Iterator[None]:
    """Hold the file lock ``path`` (shared by xdist workers and concurrent sessions) while doing ``what``.

    The holder writes who it is into the lock file; a waiter that gives up raises one
    HarnessError naming the lock, what it guards, how long it waited and who holds it.
    """
    from filelock import FileLock, Timeout  # here: ~15 ms to import, and most runs take no lock (a read image)

    limit = lock_timeout() if timeout is None else timeout
    lock = FileLock(str(path), on_acquired=holder_recorder(what))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        # Someone else is doing it (another xdist worker or session): say so, then wait.
        progress(f"waiting for {lock_holder(path)} ({path}) before {what}")
        try:
            lock.acquire(timeout=limit)
        except Timeout:
            raise HarnessError(
                f"gave up after {limit:g}s waiting for the lock {path} ({what}); it is held by {lock_holder(path)}. "
                f"Raise {setting}, or end that process if it is stuck"
            ) from None
    try:
        yield
    finally:
        lock.release()


def holder_recorder(what: str):
    """``FileLock(on_acquired=...)``: the new holder writes who it is and why into the lock file."""

    def record(fd: int) -> None:
        text = f"pid {os.getpid()} on {socket.gethostname()} ({what}) since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)

    return record


def lock_holder(path: Path | str) -> str:
    """Who holds the lock ``path``, as its holder recorded it."""
    try:
        return Path(path).read_text(errors="replace").strip() or "a process that recorded nothing"
    except OSError:
        return "nobody any more (the lock file is gone)"
