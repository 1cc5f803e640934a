"""``pytest -m sql`` leaves nothing behind: after a pass, a failure, and Ctrl-C in the middle.

Each scenario runs the sql tier in a subprocess with its own run id, then counts what carries
that id: processes (postgres' cluster_name), temporary folders
(``extharness-<run>-*``) and containers in any state (label ``io.extharness.run``); and what
carries no id, compared with before the run: image mounts no container holds and dangling
volumes. Ctrl-C is a SIGINT to the
subprocess' process group once a server of the run is up, as a terminal sends it. Run with
``-s`` to see the counts.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crafted import FAILING_PROFILE

from extharness.postgres.janitor import engine_baseline, leftovers, our_containers, our_processes
from extharness.source.engine import detect_engine

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600
#: How long an interrupted session may take to stop its servers and containers and end (under
#: a kind cluster being created beside it, podman commands wait on each other).
INTERRUPT_GRACE = 240


def _command(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "sql",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-q",
        "tests/sql",
        *extra,
    ]


def _env(run: str, engine: bool) -> dict[str, str]:
    env = {**os.environ, "EXTHARNESS_RUN_ID": run}
    env.pop("PYTEST_XDIST_WORKER", None)
    if not engine:
        env["EXTHARNESS_ENGINE"] = "none"
    return env


def _settled(run: str, before: dict[str, set[str]], wait: float = 20.0) -> dict[str, list[str]]:
    """Leftovers of ``run`` (and image mounts and volumes new since ``before``), given a moment
    for processes that are already exiting."""
    deadline = time.monotonic() + wait
    while True:
        found = leftovers(run, since=before)
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _report(scenario: str, found: dict[str, list[str]]) -> str:
    counts = ", ".join(f"{kind}={len(items)}" for kind, items in found.items())
    line = f"[leftovers] {scenario}: {counts}"
    print(line)
    return line + "".join(f"\n  {kind}: {item}" for kind, items in found.items() for item in items)


BACKENDS = pytest.mark.parametrize("backend", ["native", "container"])


def _engine_for(backend: str) -> bool:
    if backend == "native":
        return False
    if detect_engine() is None:
        pytest.skip("no container engine: install podman or docker")
    return True


@BACKENDS
def test_nothing_left_after_a_pass(backend):
    run = f"lp{secrets.token_hex(3)}"
    engine = _engine_for(backend)
    before = engine_baseline()
    proc = subprocess.run(
        _command("--pg-backend", backend),
        cwd=REPO,
        env=_env(run, engine=engine),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    found = _settled(run, before)
    assert not any(found.values()), _report(f"{backend} pass", found)
    _report(f"{backend} pass", found)


@BACKENDS
def test_nothing_left_after_a_failure(backend, tmp_path):
    run = f"lf{secrets.token_hex(3)}"
    engine = _engine_for(backend)
    before = engine_baseline()
    profile = tmp_path / "wrong.toml"
    profile.write_text(FAILING_PROFILE)
    proc = subprocess.run(
        _command("--pg-backend", backend, "--ext-profile", str(profile)),
        cwd=REPO,
        env=_env(run, engine=engine),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 1 and "test_profile_smoke_sql" in proc.stdout, proc.stdout[-3000:]
    found = _settled(run, before)
    assert not any(found.values()), _report(f"{backend} failure", found)
    _report(f"{backend} failure", found)


def _interrupt(run: str, backend: str, engine: bool, up: callable) -> tuple[int, str, dict[str, list[str]]]:
    before = engine_baseline()
    proc = subprocess.Popen(
        _command("--pg-backend", backend),
        cwd=REPO,
        env=_env(run, engine),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not up(run):
            if proc.poll() is not None:
                pytest.fail(f"the run ended before a server came up:\n{proc.stdout.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no server came up")
            time.sleep(0.1)
        seen = leftovers(run)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            out, _ = proc.communicate(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            # say what the session was still doing (a .ci/run saw only "timed out after 120 seconds")
            still = {"processes": our_processes(run), "containers": our_containers(run)}
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(
                f"the {backend} session had not ended {INTERRUPT_GRACE} s after Ctrl-C; still running: {still}\n"
                + out[-3000:]
            )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(
        f"[leftovers] {backend} interrupt: while running: "
        + ", ".join(f"{kind}={len(items)}" for kind, items in seen.items())
    )
    return proc.returncode, out, _settled(run, before)


def test_nothing_left_after_ctrl_c_native():
    run = f"li{secrets.token_hex(3)}"
    code, out, found = _interrupt(
        run, "native", engine=False, up=lambda r: any("postgres" in p for p in our_processes(r))
    )
    assert code == 2 and "KeyboardInterrupt" in out, out[-3000:]
    assert not any(found.values()), _report("native interrupt", found)
    _report("native interrupt", found)


def test_nothing_left_after_ctrl_c_containers():
    if detect_engine() is None:
        pytest.skip("no container engine: install podman or docker")
    run = f"lc{secrets.token_hex(3)}"
    code, out, found = _interrupt(
        run,
        "container",
        engine=True,
        up=lambda r: bool(our_containers(r)) and any("postgres" in p for p in our_processes(r)),
    )
    assert code == 2 and "KeyboardInterrupt" in out, out[-3000:]
    assert not any(found.values()), _report("container interrupt", found)
    _report("container interrupt", found)


def _conmon_like(container: str, child: str = "runc init") -> subprocess.Popen:
    """A shell titled conmon (``-n NAME`` as conmon gets it) with a child titled ``child``: ``runc
    init`` waiting for a start that never comes, or (another title) the engine's cleanup."""
    inner = f"(exec -a '{child}' sleep 300) & wait"
    return subprocess.Popen(
        ["bash", "-c", f'exec -a conmon bash -c "{inner}" bash -n {container}'], start_new_session=True
    )


def _stop_group(proc: subprocess.Popen) -> None:
    """The stand-in's whole group: the sleep too (it outlived its shell and held pytest's output)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def test_an_orphaned_conmon_of_a_removed_container_is_killed_with_its_child(tmp_path):
    """What a .ci/run left: conmon and its ``runc init`` of a container podman had already removed.
    A stand-in with conmon's process title (``-n NAME`` as conmon gets it) and a child process."""
    from extharness.postgres.janitor import kill_orphaned_runtime

    name = f"extharness-ko{secrets.token_hex(3)}-1-container-1"

    stand_in, other = _conmon_like(name), _conmon_like(f"{name}-2")
    try:
        deadline = time.monotonic() + 10
        children: list[str] = []
        while not children and time.monotonic() < deadline:
            time.sleep(0.1)
            children = open(f"/proc/{stand_in.pid}/task/{stand_in.pid}/children").read().split()
        assert children, "the stand-in started no child"
        killed = kill_orphaned_runtime(name)
        assert sorted(killed) == sorted([*children, str(stand_in.pid)])
        assert stand_in.wait(timeout=10) == -9
        assert other.poll() is None, "a conmon of another container was touched"
    finally:
        for proc in (stand_in, other):
            _stop_group(proc)


def test_what_a_cut_short_throwaway_run_leaves_is_found_by_its_name(tmp_path):
    """A throw-away ``run --rm`` (a probe, initdb) stopped between creating and starting its
    container left conmon and ``runc init`` in a .ci/run, named ``compassionate_black`` by podman:
    nothing could tell whose they were. Throw-away runs are named now; at the end of a backend
    (remove_own_stopped) this process's orphans go, and a later session (sweep_stale) removes a
    dead process's, never a live one's."""
    from extharness.postgres.janitor import remove_own_stopped, sweep_stale
    from extharness.postgres.server import own_name_prefix, throwaway_flags

    engine = detect_engine()
    if engine is None or engine.kind != "podman":
        pytest.skip("no podman: conmon and runc init are podman's")
    flags = throwaway_flags("probe")
    name = flags[flags.index("--name") + 1]
    assert name.startswith(own_name_prefix()) and "probe" in name, flags

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer exists: a killed run's
    live = os.getppid()  # a process that exists: another live session's
    own, of_dead, of_live, cleaning = (
        _conmon_like(f"{own_name_prefix()}probe-{secrets.token_hex(2)}"),
        _conmon_like(f"{own_name_prefix(dead.pid)}initdb-{secrets.token_hex(2)}"),
        _conmon_like(f"{own_name_prefix(live)}initdb-{secrets.token_hex(2)}"),
        # a container that ran and ended: its conmon runs the engine's cleanup (unmounting), no runc init
        _conmon_like(f"{own_name_prefix()}mountprobe-{secrets.token_hex(2)}", child="podman container cleanup"),
    )
    try:
        time.sleep(0.5)
        remove_own_stopped()
        assert own.wait(timeout=10) == -9, "this process's orphaned conmon was not killed"
        assert of_dead.poll() is None and of_live.poll() is None, "remove_own_stopped touched another process's"
        assert cleaning.poll() is None, "a conmon running its container's cleanup was killed"
        sweep_stale(tmp_path)
        assert of_dead.wait(timeout=10) == -9, "a dead process's orphaned conmon was not killed"
        assert of_live.poll() is None, "a live process's conmon was killed"
    finally:
        for proc in (own, of_dead, of_live, cleaning):
            _stop_group(proc)


def test_an_image_mount_ends_with_its_server_when_the_tag_moved(sample_release):
    """The extension image's tag names another image by the time its server stops (another
    session built the same tag meanwhile, as a fresh cache folder does): the server's image mount
    ends all the same. podman unmounts an image volume by the name it was given; mounted by tag,
    the image stayed mounted after every full run."""
    from extharness.inspect.extension import choose_extension, describe
    from extharness.inspect.oci_reader import read_image
    from extharness.inspect.operand import DEFAULT_OPERAND_IMAGE
    from extharness.postgres.containers import ImageVolumeBackend
    from extharness.postgres.mount import ImageVolumeMount
    from extharness.source.acquire import ImageRequest, acquire, default_cache_dir

    engine = detect_engine()
    if engine is None or engine.kind != "podman":
        pytest.skip("image mounts (--mount type=image) need podman")
    cache = default_cache_dir()
    acquired = acquire(ImageRequest(artifacts=sample_release), cache)
    image = read_image(acquired.reader_ref)
    name = choose_extension(image, None)
    tag = f"localhost/extharness-test/moving-tag:{secrets.token_hex(6)}"
    engine.run("tag", acquired.engine_ref, tag)
    before = engine_baseline()
    backend = None
    try:
        with ImageVolumeMount(describe(image.images[0], name).image, name.replace("_", "-")) as mount:
            backend = ImageVolumeBackend(DEFAULT_OPERAND_IMAGE, mount, cache, tag)
            reason = backend.available()
            if reason:
                pytest.skip(f"imagevolume backend: {reason}")
            backend.prepare()
            assert backend.how == "image mount"
            with backend.start() as server:
                engine.run("tag", backend.image, tag)  # the tag moves to the operand image
                with server.connect() as conn:
                    assert conn.execute(
                        "SELECT count(*) FROM pg_available_extensions WHERE name = %s", (name,)
                    ).fetchone() == (1,)
    finally:
        if backend is not None:
            backend.close()
        for holder in (acquired.engine_ref, backend.image if backend else None):
            if holder:  # untag only: both images keep their other names
                engine.run("untag", holder, tag, check=False)
    found = _settled("no-run", before)
    assert not found["image_mounts"], _report("moved tag", found)
    _report("moved tag", found)
