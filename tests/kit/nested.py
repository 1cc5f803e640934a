"""Nested pytest sessions for tests/kit: the harness run as a user runs it, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from extharness.kube import kit

REPO = Path(__file__).resolve().parents[2]


def nested_pytest(
    args: list[str], tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 1500
) -> subprocess.CompletedProcess[str]:
    """``pytest ARGS`` in a new session of its own (its own cluster, its own session id), with
    the kit's kind on PATH, artifacts and basetemp under ``tmp_path``."""
    proc = start_nested_pytest(args, tmp_path, env)
    return finish_nested_pytest(proc, timeout)


def start_nested_pytest(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The nested session started, not waited for (a test that interrupts it)."""
    environment = dict(os.environ, **(env or {}))
    kind_binary = kit.built_kind_binary()
    if kind_binary is not None:
        environment["PATH"] = f"{kind_binary.parent}{os.pathsep}{environment['PATH']}"
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID", "EXTHARNESS_CNPG_SESSION", "PYTEST_ADDOPTS"):
        environment.pop(name, None)
    cmd = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs", *args,
        "--artifacts-dir", str(tmp_path / "artifacts"), "--basetemp", str(tmp_path / "nested"),
    ]  # fmt: skip
    tmp_path.mkdir(parents=True, exist_ok=True)
    # Files, not pipes: nobody reads a pipe while a test waits to interrupt the session.
    with open(tmp_path / "nested.out", "w") as out, open(tmp_path / "nested.err", "w") as err:
        return subprocess.Popen(cmd, cwd=REPO, env=environment, stdout=out, stderr=err, text=True)


def finish_nested_pytest(proc: subprocess.Popen[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Its output once it ends; stopped (SIGTERM, then SIGKILL) after ``timeout``."""
    try:
        proc.wait(timeout=timeout)
        stopped = ""
    except subprocess.TimeoutExpired:
        # SIGTERM first: the nested session turns it into an interrupt and deletes its cluster.
        proc.terminate()
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stopped = f"\n[nested pytest stopped after {timeout:.0f}s]"
    folder = Path(proc.args[proc.args.index("--basetemp") + 1]).parent
    out = (folder / "nested.out").read_text(errors="replace")
    err = (folder / "nested.err").read_text(errors="replace") + stopped
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
