"""Ctrl-C (SIGINT) and SIGTERM leave nothing behind, at every stage that can be reached here.

Each scenario runs pytest in a subprocess, in a session of its own, with its own run id
(``EXTHARNESS_RUN_ID``) and its own ``TMPDIR``, waits (polling, with a deadline) until the run
is in the stage under test, signals the whole process group as a terminal or a CI runner
does, and then counts what is left:

* image build by the engine (``--builder engine``, a fresh release folder so nothing is
  cached): ``podman build`` processes, buildah working containers and their mounts, temporary
  folders (podman's own included), and archives in the cache, which must be complete and
  readable or absent. Interrupted once while the build copies files, once while the image is
  saved as an archive.
* PostgreSQL server start and a running SQL test, natively and in containers (SIGTERM here;
  ``test_sql_leftovers.py`` covers Ctrl-C once a server is up): processes, containers (any
  state) and temporary folders of the run, and image mounts and volumes that appeared during it
  and that nothing holds. ``pre_auth_delay`` (a profile setting) holds every login for a
  moment, so "during start" and "during a test" are states the run stays in, not races.
* a ``-n 2`` sql run signalled at its pytest-xdist controller alone (``kill PID``, ``timeout``):
  the workers are told at once and clean up.
* kind cluster creation, with stand-in ``kind``/``docker`` scripts (no cluster is made): the
  cluster being created is deleted, and no state, kubeconfig or held lock remains.

Every test prints the counts it asserts (``[leftovers] ...``); run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from standins import install_kind_and_docker

from extharness.postgres.janitor import engine_baseline, leftovers, our_containers, our_processes, our_temp_dirs
from extharness.source.engine import detect_engine

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 300  # seconds a run may take to reach the stage under test on a busy machine
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]

pytestmark = pytest.mark.timeout(900)


# -- a pytest run in a session of its own ---------------------------------------------------------
class Run:
    """``python -m pytest ...`` in a new session; its output read as it comes by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = DEADLINE) -> None:
        """Poll ``ready`` until it holds; fail (killing the run) if the run ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                self._reader.join(timeout=10)
                pytest.fail(f"the run ended (exit {self.proc.returncode}) before {what}:\n{self.output[-4000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"not {what} after {timeout}s:\n{self.output[-4000:]}")
            time.sleep(0.05)

    def interrupt(self, sig: signal.Signals, timeout: float = 240, group: bool = True) -> int:
        """Send ``sig`` to the run's process group (as Ctrl-C or a CI cancel does), or to pytest
        alone (``kill PID``); the run's exit code."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {timeout}s of {sig.name}:\n{self.output[-4000:]}")
        self._reader.join(timeout=30)
        return code

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def assert_interrupted(self, code: int, sig: signal.Signals) -> None:
        out = self.output
        assert code == 2 and "KeyboardInterrupt" in out, (
            f"{sig.name}: exit {code}, not a clean interrupt:\n{out[-4000:]}"
        )


@pytest.fixture
def run_tmpdir() -> Iterator[Path]:
    """A TMPDIR for one run, empty at first. World-traversable like /tmp: the native backend runs
    postgres as an unprivileged user when the harness is root, in folders made under TMPDIR."""
    folder = Path(tempfile.mkdtemp(prefix="xh-interrupt-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_env(run: str, tmpdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update(EXTHARNESS_RUN_ID=run, TMPDIR=str(tmpdir), **extra)
    return env


def temp_leftovers(tmpdir: Path) -> list[str]:
    """What is left in the run's private TMPDIR (pytest's own base folders are kept on purpose)."""
    return sorted(str(p) for p in tmpdir.iterdir() if not p.name.startswith("pytest-of-"))


def processes_naming(marker: str) -> list[str]:
    """``pid cmdline`` of live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(f"{entry.name} {cmdline[:160]}")
    return found


def settle(count: Callable[[], dict[str, list[str]]], wait: float = 20.0) -> dict[str, list[str]]:
    """The leftovers, given a moment for processes that are already on their way out."""
    deadline = time.monotonic() + wait
    while True:
        found = count()
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def report(scenario: str, found: dict[str, list[str]]) -> str:
    """Print the counts (the CI log shows the 0s) and return the details for an assertion message."""
    line = f"[leftovers] {scenario}: " + " ".join(f"{kind}={len(items)}" for kind, items in found.items())
    print(f"\n{line}")
    return line + "".join(f"\n  {kind}: {item}" for kind, items in found.items() for item in items)


# -- (a) an image build by the engine ---------------------------------------------------------------
def podman_storage() -> Path | None:
    out = subprocess.run(
        ["podman", "info", "--format", "{{.Store.GraphRoot}}/{{.Store.GraphDriverName}}-containers"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def working_containers(storage: Path, version: str) -> dict[str, str]:
    """buildah working containers of a build with ``--build-arg VERSION=<version>``: id -> mountpoint."""
    found = {}
    for state in storage.glob("*/userdata/buildah.json"):
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        if (data.get("Args") or {}).get("VERSION") == version:
            found[data.get("container-id", state.parent.parent.name)] = data.get("mountpoint") or ""
    return found


def mounted(paths: list[str]) -> list[str]:
    points = {
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines() if len(line.split()) > 4
    }
    return [path for path in paths if path and path in points]


def cache_archive_problems(cache: Path, version: str) -> list[str]:
    """Archives in the image cache that are partial, unreadable or not the image asked for."""
    from extharness.errors import HarnessError
    from extharness.inspect.oci_reader import read_image

    problems = []
    for path in sorted((cache / "images").glob("*/*")):
        if path.name == ".lock":
            continue
        if not path.name.startswith("image.") or not path.name.endswith(".tar"):
            problems.append(f"{path} (a partial or stray file)")
            continue
        try:
            image = read_image(f"{'oci-archive' if '.oci.' in path.name else 'docker-archive'}:{path}")
        except HarnessError as exc:
            problems.append(f"{path} (unreadable: {exc})")
            continue
        got = image.images[0].config.labels.get("org.opencontainers.image.version")
        if got != version:
            problems.append(f"{path} (version label {got!r}, not {version!r})")
    return problems


@pytest.fixture(scope="module")
def big_release(tmp_path_factory: pytest.TempPathFactory, sample_release: Path) -> Path:
    """The sample's release folder plus 200 MB of incompressible data: a build that takes seconds."""
    folder = tmp_path_factory.mktemp("big-release")
    shutil.copytree(sample_release / "artifact", folder / "artifact")
    with open(folder / "artifact" / "lib" / "zz_padding.so", "wb") as out:
        for _ in range(200):
            out.write(os.urandom(1 << 20))
    return folder


@pytest.mark.parametrize("stage", ["build", "save"])
@pytest.mark.parametrize("sig", SIGNALS)
def test_interrupted_engine_build_leaves_nothing(
    stage: str, sig: signal.Signals, big_release: Path, tmp_path: Path, run_tmpdir: Path, request: pytest.FixtureRequest
) -> None:
    engine = detect_engine()
    if engine is None or engine.kind != "podman":
        pytest.skip("no podman: the engine build stage cannot be reached here")
    storage = podman_storage()
    assert storage is not None, "podman info does not say where its storage is"
    run, version = f"ib{secrets.token_hex(3)}", f"0.0.{secrets.randbelow(10**9)}"

    def remove_built_image() -> None:
        """The image a save-stage run built is the engine's cache of that build, kept on purpose;
        its version is this test's own, so no later run uses it (210 MB each, every run). After
        the leftovers are counted: ``rmi -f`` would remove a working container that used it."""
        listed = engine.run(
            "images", "-q", "--filter", f"label=org.opencontainers.image.version={version}", check=False
        )
        for image in sorted(set(listed.stdout.split())):
            engine.run("rmi", "-f", image, check=False)

    request.addfinalizer(remove_built_image)
    context = tmp_path / "release"  # a copy of its own: its path names this build's processes
    shutil.copytree(big_release, context)
    cache, tmpdir = tmp_path / "cache", run_tmpdir
    env = run_env(run, tmpdir, EXTHARNESS_CACHE_DIR=str(cache))
    pytest_run = Run(
        [
            "-m",
            "layout",
            "-s",
            "-p",
            "no:xdist",
            "-q",
            "--builder",
            "engine",
            f"--ext-artifacts={context}",
            f"--ext-version={version}",
            "tests/layout",
        ],
        env,
    )
    seen: dict[str, str] = {}
    try:
        if stage == "build":

            def copying() -> bool:  # podman is copying the 200 MB file into its working container
                seen.update(working_containers(storage, version))
                return bool(seen) and "COPY artifact/lib" in pytest_run.output and bool(processes_naming(str(context)))

            pytest_run.wait_for("the engine build copying files", copying)
        else:

            def saving() -> bool:  # podman is writing the archive next to its place in the cache
                partial = any(p.name.endswith(".partial") for p in (cache / "images").glob("*/.*"))
                return partial and bool(processes_naming(f"save --format oci-archive -o {cache}"))

            pytest_run.wait_for("the built image being saved to the cache", saving)
        assert "Successfully tagged" not in pytest_run.output or stage == "save"
        code = pytest_run.interrupt(sig)
    finally:
        if pytest_run.proc.poll() is None:
            pytest_run.kill()
    pytest_run.assert_interrupted(code, sig)

    def count() -> dict[str, list[str]]:
        ours = working_containers(storage, version)
        return {
            "processes": processes_naming(str(context)) + processes_naming(f"extharness-{run}-"),
            "containers": [f"working container {cid[:12]}" for cid in ours] + our_containers(run),
            "mounts": mounted(sorted(set(seen.values()) | set(ours.values()))),
            "temp_dirs": temp_leftovers(tmpdir),
            "partial_archives": cache_archive_problems(cache, version),
        }

    found = settle(count)
    details = report(f"{sig.name} during engine {stage}", found)
    if stage == "build":
        assert seen, "no working container was seen: the build was not interrupted while it ran"
    assert not any(found.values()), details


# -- (b) server start and (c) a running SQL test ------------------------------------------------------
SLOW_LOGIN_PROFILE = """
# pg_ticker's profile, with every login held {delay}s before authentication (pre_auth_delay):
# starting a server (its first login sets the password) and every test take that long.
name = "pg_ticker-slow-login"
extension = "pg_ticker"
cnpg_name = "pg-ticker"
preload = ["pg_ticker"]
background_workers = ["pg_ticker ticker"]
module_name = "pg_ticker"
module_version = "1.1.0"

[settings]
"pg_ticker.interval_ms" = "200"
pre_auth_delay = "{delay}"

[[smoke]]
sql = "SELECT ticker.add(2, 3)"
expect = [[5]]
"""


def sql_run(run: str, tmp_path: Path, tmpdir: Path, backend: str, delay: int) -> Run:
    profile = tmp_path / "slow-login.toml"
    profile.write_text(SLOW_LOGIN_PROFILE.format(delay=delay))
    env = run_env(run, tmpdir, **({} if backend == "container" else {"EXTHARNESS_ENGINE": "none"}))
    args = [
        "-m",
        "sql",
        "-p",
        "no:xdist",
        "-v",
        "--pg-backend",
        backend,
        f"--ext-profile={profile}",
        "tests/sql/test_create.py",
        "tests/sql/test_smoke.py",
    ]
    return Run(args, env)


def sql_leftovers(run: str, tmpdir: Path, before: dict[str, set[str]]) -> dict[str, list[str]]:
    """The run's processes, containers (any state) and temporary folders, and the image mounts and
    volumes new since ``before`` (an ``engine_baseline()`` from before the run) that nothing holds."""
    found = leftovers(run, since=before)
    found["temp_dirs"] = sorted(set(found["temp_dirs"] + our_temp_dirs(run, tmpdir) + temp_leftovers(tmpdir)))
    return found


def _needs(backend: str) -> None:
    if backend == "container" and detect_engine() is None:
        pytest.skip("no container engine: install podman or docker")


def _server_process_up(run: str) -> bool:
    return any("postgres" in p for p in our_processes(run))


def _started(run: str, backend: str) -> Callable[[], bool]:
    if backend == "native":
        return lambda: _server_process_up(run)
    return lambda: bool(our_containers(run)) and _server_process_up(run)


def _test_results(output: str) -> list[str]:
    return re.findall(r"^tests/sql/\S+ (PASSED|FAILED|ERROR|SKIPPED)", output, re.MULTILINE)


@pytest.mark.parametrize("backend", ["native", "container"])
@pytest.mark.parametrize("sig", SIGNALS)
def test_interrupted_server_start_leaves_nothing(
    sig: signal.Signals, backend: str, tmp_path: Path, run_tmpdir: Path
) -> None:
    _needs(backend)
    run = f"is{secrets.token_hex(3)}"
    # the first login (setting the server's password) is part of the start; containers try logins
    # with a 3 s connect timeout, so their delay must stay below that
    tmpdir = run_tmpdir
    before = engine_baseline()
    pytest_run = sql_run(run, tmp_path, tmpdir, backend, delay=4 if backend == "native" else 2)
    try:
        pytest_run.wait_for(f"a {backend} server starting", _started(run, backend))
        assert not _test_results(pytest_run.output), "a test finished: the server had already started"
        code = pytest_run.interrupt(sig)
    finally:
        if pytest_run.proc.poll() is None:
            pytest_run.kill()
    pytest_run.assert_interrupted(code, sig)
    assert not _test_results(pytest_run.output), "a test finished: the signal came after the server start"
    found = settle(lambda: sql_leftovers(run, tmpdir, before))
    assert not any(found.values()), report(f"{sig.name} during {backend} server start", found)
    report(f"{sig.name} during {backend} server start", found)


@pytest.mark.parametrize("backend", ["native", "container"])
def test_sigterm_during_a_sql_test_leaves_nothing(backend: str, tmp_path: Path, run_tmpdir: Path) -> None:
    """SIGTERM while tests run (Ctrl-C there: test_sql_leftovers.py)."""
    _needs(backend)
    run = f"it{secrets.token_hex(3)}"
    tmpdir = run_tmpdir
    before = engine_baseline()
    pytest_run = sql_run(run, tmp_path, tmpdir, backend, delay=1)
    try:
        pytest_run.wait_for("a SQL test passed", lambda: "PASSED" in _test_results(pytest_run.output))
        assert _started(run, backend)(), "no server of the run is up"
        code = pytest_run.interrupt(signal.SIGTERM)
    finally:
        if pytest_run.proc.poll() is None:
            pytest_run.kill()
    pytest_run.assert_interrupted(code, signal.SIGTERM)
    found = settle(lambda: sql_leftovers(run, tmpdir, before))
    assert not any(found.values()), report(f"SIGTERM during a {backend} SQL test", found)
    report(f"SIGTERM during a {backend} SQL test", found)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_to_an_xdist_controller_alone_leaves_nothing(sig: signal.Signals, tmp_path: Path,
                                                            run_tmpdir: Path) -> None:  # fmt: skip
    """``kill PID`` of a ``-n 2`` run: the controller stops its workers, which clean up."""
    backend = "container" if detect_engine() is not None else "native"
    run = f"ix{secrets.token_hex(3)}"
    env = run_env(run, run_tmpdir, **({} if backend == "container" else {"EXTHARNESS_ENGINE": "none"}))
    before = engine_baseline()
    pytest_run = Run(["-m", "sql", "-n", "2", "-q", "--pg-backend", backend, "tests/sql"], env)
    try:
        pytest_run.wait_for(f"{backend} servers of both workers up", _started(run, backend))
        code = pytest_run.interrupt(sig, group=False)
    finally:
        if pytest_run.proc.poll() is None:
            pytest_run.kill()
    pytest_run.assert_interrupted(code, sig)
    found = settle(lambda: sql_leftovers(run, run_tmpdir, before))
    assert not any(found.values()), report(f"{sig.name} to a -n 2 controller ({backend})", found)
    report(f"{sig.name} to a -n 2 controller ({backend})", found)


# -- (d) kind cluster creation ------------------------------------------------------------------------
# The stand-in kind (tests/unit/standins.py) registers the cluster, then sleeps FAKE_CREATE_SECONDS.
@pytest.mark.parametrize("sig", SIGNALS)
def test_interrupted_kind_cluster_creation_deletes_the_cluster(sig: signal.Signals, tmp_path: Path) -> None:
    bindir, state, basetemp, tmpdir = (tmp_path / n for n in ("bin", "state", "basetemp", "tmp"))
    for folder in (bindir, state, tmpdir):
        folder.mkdir()
    install_kind_and_docker(bindir)
    run = f"ik{secrets.token_hex(3)}"
    seconds = f"300.{secrets.randbelow(10**6):06d}"  # names this test's `sleep` among other processes
    env = run_env(
        run,
        tmpdir,
        EXTHARNESS_ENGINE="none",
        EXTHARNESS_KIT="0",  # the fake kind, not the cluster kit, even where the kit is built
        FAKE_STATE=str(state),
        FAKE_CREATE_SECONDS=seconds,
        PATH=f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin",
    )
    env.pop("KIND_EXPERIMENTAL_PROVIDER", None)
    pytest_run = Run(
        ["-p", "no:xdist", "-q", f"--basetemp={basetemp}", "tests/cnpg/test_cluster.py::test_operator_is_available"],
        env,
    )
    try:
        pytest_run.wait_for("kind creating a cluster", lambda: (state / "creating").exists())
        code = pytest_run.interrupt(sig)
    finally:
        if pytest_run.proc.poll() is None:
            pytest_run.kill()
    pytest_run.assert_interrupted(code, sig)

    calls = (state / "calls").read_text().splitlines()
    created = [re.search(r"--name (\S+)", c).group(1) for c in calls if c.startswith("kind create cluster")]
    assert len(created) == 1, calls
    deleted = [c for c in calls if c.startswith(f"kind delete cluster --name {created[0]}")]

    def count() -> dict[str, list[str]]:
        from filelock import FileLock, Timeout

        held = []
        for lock in basetemp.rglob("*.lock"):  # the file may stay (flock locks do); nobody may hold it
            try:
                FileLock(str(lock), timeout=0).acquire().lock.release()
            except Timeout:
                held.append(str(lock))
        return {
            "clusters": [line for line in (state / "clusters").read_text().split() if line],
            "processes": processes_naming(str(bindir)) + processes_naming(f"sleep {seconds}"),
            "state_files": sorted(
                str(p) for p in basetemp.rglob("*") if p.suffix in (".json", ".tmp", ".kubeconfig", ".yaml")
            ),
            "held_locks": held,
            "temp_dirs": temp_leftovers(tmpdir),
        }

    found = settle(count)
    details = report(f"{sig.name} during kind create cluster", found)
    assert len(deleted) == 1, f"the cluster being created was not deleted: {calls}"
    assert not any(found.values()), details
