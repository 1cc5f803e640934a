"""Ending processes the harness started, with everything they started in turn."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable


def stop_groups(
    procs: Iterable[subprocess.Popen],
    first: signal.Signals | None = signal.SIGTERM,
    grace: float = 10.0,
    *,
    leader_only: bool = False,
    reap: float | None = 5.0,
) -> None:
    """Stop each process and its process group (started with ``start_new_session=True``).

    ``first`` goes to each group (or only to its leader: PostgreSQL's fast shutdown is SIGINT
    to the postmaster), which then has ``grace`` seconds in all to end; after that, or at once
    when ``first`` is None, every group gets SIGKILL and each process is reaped (waiting up to
    ``reap`` seconds; None: not at all, for a watchdog thread while another thread waits).
    Never raises.
    """
    procs = list(procs)
    try:
        if first is not None:
            alive = [proc for proc in procs if proc.poll() is None]
            for proc in alive:
                _send(proc, first, leader_only)
            deadline = time.monotonic() + grace
            for proc in alive:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
    finally:
        for proc in procs:  # also when the leader has ended: what it started may still run
            _send(proc, signal.SIGKILL, leader_only=False)
        if reap is not None:
            for proc in procs:
                try:
                    proc.wait(timeout=reap)
                except subprocess.TimeoutExpired:
                    pass


def stop_group(
    proc: subprocess.Popen, first: signal.Signals | None = signal.SIGTERM, grace: float = 10.0, **kw
) -> None:
    """``stop_groups`` for one process."""
    stop_groups([proc], first, grace, **kw)


def _send(proc: subprocess.Popen, sig: signal.Signals, leader_only: bool) -> None:
    try:
        if leader_only:
            os.kill(proc.pid, sig)
        else:
            os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
