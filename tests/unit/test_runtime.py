"""The runtime floor: running commands, process-group stop, waits, cache keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.runtime.cache import cache_key
from extharness.runtime.processes import CommandTimedOut, last_lines, run, stop_group, stop_groups
from extharness.runtime.waits import Gone, poll, wait_until

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


def test_poll_gives_none_when_the_time_runs_out_after_a_last_look() -> None:
    looks = []
    assert poll(lambda: looks.append(time.monotonic()), 0.2, interval=0.05) is None
    assert len(looks) >= 3 and looks[-1] - looks[0] >= 0.2
    assert poll(lambda: looks.append(0), 0) is None and looks[-1] == 0  # no time at all: one look


def test_wait_until_says_how_it_failed_with_the_error_type_asked_for() -> None:
    with pytest.raises(EnvironmentMissing) as raised:
        wait_until(
            lambda: None, 0, "postgres", "EXTHARNESS_X_TIMEOUT", failed="did not become ready", error=EnvironmentMissing
        )
    assert str(raised.value) == "postgres did not become ready within 0s (raise EXTHARNESS_X_TIMEOUT)"


def test_a_probe_that_says_gone_ends_the_wait_at_once() -> None:
    def probe():
        raise Gone

    started = time.monotonic()
    with pytest.raises(Gone):
        wait_until(probe, 30, "x", "EXTHARNESS_X_TIMEOUT")
    assert time.monotonic() - started < 5


# -- run() ------------------------------------------------------------------------------------------
def test_a_failing_command_names_what_the_exit_code_and_its_last_lines() -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo oops >&2; echo 'no such table' >&2; exit 7"
    with pytest.raises(HarnessError) as raised:
        run(["sh", "-c", script], what="building the sample")
    message = str(raised.value)
    assert message.startswith("building the sample: `sh -c ") and "failed (exit 7): oops | no such table" in message
    assert "\n" not in message


def test_merged_output_names_the_last_three_lines_and_check_false_returns_the_result() -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; echo boom >&2; exit 2"
    with pytest.raises(HarnessError, match=r"failed \(exit 2\): line 4 \| line 5 \| boom$"):
        run(["sh", "-c", script], what="make", merge=True)
    done = run(["sh", "-c", "echo out; echo err >&2; exit 3"], what="x", check=False, env={"LC_ALL": "C"})
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_a_failure_with_a_log_names_the_log_and_its_last_lines(tmp_path) -> None:
    log = tmp_path / "step.log"
    with pytest.raises(HarnessError) as raised:
        run(["sh", "-c", "echo first; echo second >&2; exit 1"], what="a step", log=log)
    assert str(raised.value).endswith(f"failed (exit 1): first | second; log: {log}"), raised.value
    assert log.read_text().splitlines() == ["$ sh -c echo first; echo second >&2; exit 1", "first", "second"]


def test_a_timeout_ends_the_whole_group_and_names_the_last_output(tmp_path) -> None:
    pidfile = tmp_path / "grandchild"
    # the grandchild keeps the output pipe open: killing the shell alone would leave run() reading
    script = f"sleep 60 & echo $! > {pidfile}; echo 'STEP 2/9: waiting'; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as raised:
        run(["sh", "-c", script], what="a slow step", timeout=1, setting="EXTHARNESS_X_TIMEOUT")
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert message.startswith("a slow step: `sh -c ") and "did not finish within 1s" in message, message
    assert message.endswith("(last output: STEP 2/9: waiting; raise EXTHARNESS_X_TIMEOUT)"), message
    assert _wait_gone(int(pidfile.read_text())), "the grandchild sleep survived the timeout"


def test_a_missing_program_is_one_line_without_a_traceback_behind_it() -> None:
    with pytest.raises(EnvironmentMissing) as raised:
        run(["extharness-no-such-program", "--version"], what="probing the tool", hint="install it")
    error = raised.value
    assert str(error) == (
        "probing the tool: cannot run extharness-no-such-program: No such file or directory (install it)"
    )
    assert error.__cause__ is None and error.__suppress_context__


def test_a_missing_working_folder_is_not_a_missing_program(tmp_path) -> None:
    with pytest.raises(HarnessError) as raised:
        run(["true"], what="x", cwd=tmp_path / "absent")
    assert not isinstance(raised.value, EnvironmentMissing)
    assert str(raised.value) == f"x: cannot run true in {tmp_path / 'absent'}: No such file or directory"


def test_last_lines_takes_the_first_output_that_has_any(tmp_path) -> None:
    log = tmp_path / "log"
    log.write_text("a\n\n b \n")
    assert last_lines(None, "", "x\ny\n\n", count=1) == "y"
    assert last_lines(b"", log) == "a | b"
    assert last_lines(None, tmp_path / "absent") == "no output"
    assert last_lines(None, default="none") == "none"
