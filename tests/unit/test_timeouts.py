"""Engine calls time out: one clear line naming what was awaited and for how long, no process left.

A fake engine CLI (a shell script that sleeps) stands in for podman, so these run anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from extharness.errors import HarnessError
from extharness.source import engine as engine_module
from extharness.source.engine import Engine

pytestmark = pytest.mark.timeout(120)

#: The fake engine sleeps this long; every test expects to be done well before.
SLEEP_S = 30


def fake_engine(folder: Path, body: str) -> tuple[Engine, Path]:
    """An executable ``podman`` stand-in running ``body``; it records PIDs in the returned file."""
    folder.mkdir(parents=True, exist_ok=True)
    pids = folder / "pids"
    script = folder / "podman"
    script.write_text(f"#!/bin/sh\nPIDS='{pids}'\n{body}\n")
    script.chmod(0o755)
    return Engine(cli=str(script), kind="podman"), pids


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for a reaper that is not us."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pids_file: Path, grace_s: float = 3.0) -> list[int]:
    """PIDs the fake engine recorded that are still running after ``grace_s``."""
    pids = [int(line) for line in pids_file.read_text().split()]
    assert pids, "the fake engine recorded no process"
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not all(gone(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if not gone(pid)]


def run_timed(call) -> tuple[HarnessError, float]:
    started = time.monotonic()
    with pytest.raises(HarnessError) as caught:
        call()
    return caught.value, time.monotonic() - started


def test_engine_call_times_out_naming_what_and_how_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "ENGINE_TIMEOUT", 1.0)
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nexec sleep {SLEEP_S}')
    error, elapsed = run_timed(lambda: engine.run("image", "exists", "localhost/x:1"))
    message = str(error)
    assert "podman image exists" in message, message
    assert "1s" in message and "EXTHARNESS_ENGINE_TIMEOUT" in message, message
    assert "\n" not in message
    assert elapsed < SLEEP_S / 2, f"gave up after {elapsed:.1f}s, not after the 1s timeout"
    assert wait_gone(pids) == [], "the engine process outlived its timeout"


def test_sub_second_timeouts_are_reported_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "ENGINE_TIMEOUT", 0.5)
    engine, _pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nexec sleep {SLEEP_S}')
    error, _elapsed = run_timed(lambda: engine.run("image", "inspect", "x"))
    assert "0.5s" in str(error), f"{error} (a 0.5 s timeout must not read as 0s)"


def test_processes_the_engine_started_are_gone_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine CLI that forks helpers (as podman does) leaves none of them behind."""
    monkeypatch.setattr(engine_module, "ENGINE_TIMEOUT", 1.0)
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nsleep {SLEEP_S} &\necho $! >> "$PIDS"\nwait')
    error, elapsed = run_timed(lambda: engine.run("save", "-o", "/dev/null", "x", timeout=1.0))
    assert "podman save" in str(error) and elapsed < SLEEP_S / 2
    assert wait_gone(pids) == [], "a process the engine started outlived the timeout"


def test_a_silent_build_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds stream their output; a build that hangs without printing must still time out."""
    monkeypatch.setattr(engine_module, "BUILD_TIMEOUT", 1.0)
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\necho "STEP 1/2: FROM scratch"\nexec sleep {SLEEP_S}')
    error, elapsed = run_timed(lambda: engine.build(tmp_path, tmp_path / "Dockerfile", "localhost/x:1"))
    message = str(error)
    assert "podman build" in message and "1s" in message and "EXTHARNESS_BUILD_TIMEOUT" in message, message
    assert elapsed < SLEEP_S / 2, f"gave up after {elapsed:.1f}s, not after the 1s build timeout"
    assert wait_gone(pids) == [], "the build process outlived its timeout"


def test_calls_that_finish_in_time_are_unaffected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "ENGINE_TIMEOUT", 5.0)
    engine, _pids = fake_engine(tmp_path / "ok", 'echo "$@"')
    assert engine.run("image", "exists", "x").stdout.strip() == "image exists x"
    assert engine.image_exists("x")
    failing, _pids = fake_engine(tmp_path / "failing", 'echo "no such image" >&2\nexit 1')
    with pytest.raises(HarnessError, match=r"podman image inspect failed \(exit 1\): no such image"):
        failing.run("image", "inspect", "x")


def test_the_timeout_comes_from_the_environment(tmp_path: Path) -> None:
    """EXTHARNESS_ENGINE_TIMEOUT is read when the engine module loads (checked in a fresh process)."""
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nexec sleep {SLEEP_S}')
    program = (
        "import sys\n"
        "from extharness.errors import HarnessError\n"
        "from extharness.source.engine import Engine\n"
        "try:\n"
        f"    Engine(cli={engine.cli!r}, kind='podman').run('image', 'exists', 'x')\n"
        "except HarnessError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=SLEEP_S,
                          env={**os.environ, "EXTHARNESS_ENGINE_TIMEOUT": "0.5"})
    assert done.returncode == 3, done.stderr
    assert "within 0.5s" in done.stdout, done.stdout
    assert time.monotonic() - started < SLEEP_S / 2
    assert wait_gone(pids) == []
