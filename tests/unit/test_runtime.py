"""The runtime floor: process-group stop, waits, cache keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from extharness.errors import HarnessError
from extharness.runtime.cache import cache_key
from extharness.runtime.processes import stop_group, stop_groups
from extharness.runtime.waits import Gone, wait_until

# A leader that starts a grandchild in its group, prints the grandchild's pid, and ignores SIGTERM.
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen(['sleep', '60'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _start(program: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie counts as gone: ended, waiting for its parent (here: init, after its parent died)
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def test_a_group_that_ignores_the_first_signal_is_killed_after_the_grace_time() -> None:
    proc, grandchild = _start(STUBBORN)
    started = time.monotonic()
    stop_group(proc, signal.SIGTERM, grace=0.5)
    assert proc.returncode == -signal.SIGKILL  # reaped, killed after SIGTERM was ignored
    assert time.monotonic() - started >= 0.5
    assert _wait_gone(grandchild), "the grandchild in the group survived"


def test_leader_only_first_signal_still_kills_the_whole_group() -> None:
    program = STUBBORN.replace("signal.SIGTERM, signal.SIG_IGN", "signal.SIGINT, lambda *a: sys.exit(0)")
    proc, grandchild = _start(program)
    stop_groups([proc], signal.SIGINT, grace=5.0, leader_only=True)
    assert proc.returncode == 0  # the leader ended on its own signal
    assert _wait_gone(grandchild), "the grandchild in the group survived"


def test_stopping_an_ended_process_does_not_raise() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    stop_group(proc)
    assert proc.returncode == 0


def test_cache_keys_keep_parts_apart() -> None:
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert len(cache_key("x")) == 20 and len(cache_key("x", length=16)) == 16
    assert cache_key("x", length=16) == cache_key("x")[:16]


def test_wait_until_returns_what_the_probe_found() -> None:
    answers = iter([None, None, "ready"])
    assert wait_until(lambda: next(answers), 5, "the thing", "EXTHARNESS_X_TIMEOUT", interval=0.01) == "ready"


def test_wait_until_names_what_how_long_the_state_and_the_setting() -> None:
    started = time.monotonic()
    with pytest.raises(HarnessError) as raised:
        wait_until(
            lambda: None, 0.2, "the server accepting logins", "EXTHARNESS_X_TIMEOUT", last_state=lambda: "starting"
        )
    assert time.monotonic() - started >= 0.2
    assert str(raised.value) == (
        "the server accepting logins did not happen within 0.2s (raise EXTHARNESS_X_TIMEOUT); last state: starting"
    )


def test_a_probe_that_says_gone_ends_the_wait_at_once() -> None:
    def probe():
        raise Gone

    started = time.monotonic()
    with pytest.raises(Gone):
        wait_until(probe, 30, "x", "EXTHARNESS_X_TIMEOUT")
    assert time.monotonic() - started < 5
