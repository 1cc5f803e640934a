"""Two pytest sessions started together on one machine, each with ``-n 2``, share one cache safely.

Both start on an empty ``EXTHARNESS_CACHE_DIR`` (and an empty native runtime folder), so their
four workers race to build the sample extension, its image and the native template data
directory, and (with an engine) the container data templates. Both must pass. ``make`` and
the engine CLI on PATH are wrappers that record their calls, which shows what was built how
many times: each sample release (1.1, and 1.0 for the upgrade) compiled once, its image built once (or not at
all when the machine's engine already holds its key-named tag from an earlier run: then saved
from it), each image saved once, each data template made once.
Nothing half-written may stay in the cache, and neither run may leave processes, containers
or temporary folders behind.

Without a container engine the variant with the container backends skips with one line.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from extharness.postgres.janitor import leftovers, our_temp_dirs
from extharness.source.engine import detect_engine

REPO = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT = 420

pytestmark = pytest.mark.timeout(900)

COUNTING_WRAPPER = """#!/bin/sh
# one line per call (its arguments joined on one line), then the real {name}
printf '%s\\n' "$(printf '%s ' "$@" | tr '\\n' ' ')" >> "{log}"
exec {real} "$@"
"""


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Empty cache and native runtime folders for both sessions; make and the engine CLI record calls."""
    if shutil.which("make") is None:
        pytest.skip("no make: the sample extension cannot be built here")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("make", "podman", "docker"):
        real = shutil.which(name)
        if real:
            (bindir / name).write_text(COUNTING_WRAPPER.format(name=name, real=real, log=tmp_path / f"{name}.calls"))
            (bindir / name).chmod(0o755)
    # World-traversable, as the native backend needs when it runs postgres as another user (root).
    native = Path(tempfile.mkdtemp(prefix="xh-parallel-native-", dir="/var/tmp"))
    native.chmod(0o755)
    tmpdir = Path(tempfile.mkdtemp(prefix="xh-parallel-tmp-"))
    tmpdir.chmod(0o755)
    yield {"cache": tmp_path / "cache", "bin": bindir, "logs": tmp_path, "native": native, "tmp": tmpdir}
    shutil.rmtree(native, ignore_errors=True)
    shutil.rmtree(tmpdir, ignore_errors=True)


def start_session(shared: dict[str, Path], run: str, backend: str, engine: bool, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update(
        EXTHARNESS_CACHE_DIR=str(shared["cache"]),
        EXTHARNESS_NATIVE_ROOT=str(shared["native"]),
        EXTHARNESS_RUN_ID=run,
        TMPDIR=str(shared["tmp"]),
        PATH=f"{shared['bin']}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    if not engine:
        env["EXTHARNESS_ENGINE"] = "none"
    cmd = [sys.executable, "-m", "pytest", "-n", "2", "-m", "layout or sql", "-p", "no:cacheprovider", "-q",
           "--pg-backend", backend, "tests/layout", "tests/sql"]  # fmt: skip
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def race(shared: dict[str, Path], backend: str, engine: bool) -> dict[str, tuple[int, str, str]]:
    """Both sessions, started together; name -> (exit code, output, run id)."""
    runs = {name: f"ps{name}{secrets.token_hex(3)}" for name in ("a", "b")}
    logs = {name: shared["logs"] / f"session-{name}.log" for name in runs}
    procs = {name: start_session(shared, run, backend, engine, logs[name]) for name, run in runs.items()}
    deadline = time.monotonic() + SESSION_TIMEOUT
    results = {}
    for name, proc in procs.items():
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # a clean stop, so the leftover count still means something
            code = proc.wait(timeout=120)
        results[name] = (code, logs[name].read_text(errors="replace"), runs[name])
    return results


def calls(shared: dict[str, Path], name: str) -> list[str]:
    log = shared["logs"] / f"{name}.calls"
    return log.read_text().splitlines() if log.exists() else []


def summary_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if " in " in line and ("passed" in line or "failed" in line)]
    return lines[-1].strip("= ") if lines else "no summary"


def run_leftovers(shared: dict[str, Path], runs: list[str]) -> dict[str, list[str]]:
    """Processes, containers and temporary folders of both runs, given a moment to go away."""
    deadline = time.monotonic() + 20
    while True:
        found: dict[str, list[str]] = {"processes": [], "containers": [], "temp_dirs": []}
        for run in runs:
            for kind, items in leftovers(run).items():
                found[kind] += items
            found["temp_dirs"] += our_temp_dirs(run, shared["tmp"])
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def engine_tags() -> set[str]:
    """The harness's key-named image tags the machine's engine holds now."""
    engine = detect_engine()
    if engine is None:
        return set()
    out = engine.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    return {line for line in out.split() if line.startswith("localhost/extharness/")}


def check(shared: dict[str, Path], results: dict[str, tuple[int, str, str]], label: str,
          tags_before: set[str] = frozenset()) -> None:  # fmt: skip
    for name, (code, out, _run) in results.items():
        print(f"\n[parallel] {label} session {name}: exit {code}, {summary_line(out)}")
        assert code == 0, f"session {name} ({label}) failed with exit {code}:\n{out[-5000:]}"

    make_calls = calls(shared, "make")
    builds = [call for call in make_calls if " install " not in f" {call} "]
    engine_calls = calls(shared, "podman") + calls(shared, "docker")
    image_builds = [call for call in engine_calls if call.startswith("build ") and "cnpg/Dockerfile.ext " in call]
    built_tags = [re.search(r" -t (\S+)", call).group(1) for call in image_builds]
    saved_tags = [call.split()[-1] for call in engine_calls
                  if call.startswith("save ") and call.split()[-1].startswith("localhost/extharness/pg_ticker")]  # fmt: skip
    initdbs: dict[str, int] = {}  # engine image -> data directory templates made with it
    for call in engine_calls:
        made = re.search(r"--entrypoint /bin/sh (\S+) -c .*initdb -D /out/data", call)
        if made:
            initdbs[made.group(1)] = initdbs.get(made.group(1), 0) + 1
    templates = [p for p in shared["native"].glob("template-*") if p.is_dir()]
    stray = sorted(str(p) for p in shared["cache"].rglob("*")
                   if ".tmp" in p.name or p.name.endswith(".partial") or p.name.startswith(".artifact-"))  # fmt: skip
    stray += sorted(str(p) for p in shared["native"].glob("*.tmp-*"))
    found = run_leftovers(shared, [run for _code, _out, run in results.values()])
    print(
        f"[parallel] {label}: sample builds={len(builds)} sample image builds={len(image_builds)} "
        f"sample image saves={len(saved_tags)} held before={len(tags_before & set(saved_tags))} "
        f"native templates={len(templates)} container templates={sum(initdbs.values())} "
        f"stray cache files={len(stray)} leftovers: " + " ".join(f"{k}={len(v)}" for k, v in found.items())
    )

    # Two releases of the sample: 1.1 under test, 1.0 the upgrade's old image (DATA= names its one script).
    releases = sorted("1.0" if "DATA=pg_ticker--1.0.sql" in call else "1.1" for call in builds)
    assert releases == ["1.0", "1.1"], f"each sample release must be compiled once, got {releases}: {make_calls}"
    assert len(templates) == 1, f"{len(templates)} native templates, not one: {templates}"
    if engine_calls:
        assert len(saved_tags) == 2 == len(set(saved_tags)), (
            f"each sample release's image must be saved once: {saved_tags}"
        )
        # A tag named by the release's key that the engine held before is that build: saved, not
        # rebuilt. One the engine did not hold is built once at most (not at all if another test's
        # session built the same key-named tag meanwhile).
        assert len(built_tags) == len(set(built_tags)), f"a sample release's image was built twice: {image_builds}"
        assert set(built_tags) <= set(saved_tags) - tags_before, (
            f"an image the engine already held was rebuilt (held before: {sorted(tags_before & set(saved_tags))}): "
            f"{image_builds}"
        )
        assert all(n == 1 for n in initdbs.values()), f"a container data template was made twice: {initdbs}"
    assert not stray, f"half-written files left in the cache: {stray}"
    assert not any(found.values()), f"leftovers: {found}"


def test_two_native_sessions_share_the_cache(shared: dict[str, Path]) -> None:
    check(shared, race(shared, "native", engine=False), "native, no engine")


def test_two_sessions_with_every_backend_share_the_cache(shared: dict[str, Path]) -> None:
    if detect_engine() is None:
        pytest.skip("no container engine: install podman or docker")
    before = engine_tags()
    check(shared, race(shared, "all", engine=True), "all backends", before)
