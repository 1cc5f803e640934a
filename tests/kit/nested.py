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
    proc = subprocess.Popen(cmd, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the nested session turns it into an interrupt and deletes its cluster.
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err += f"\n[nested pytest stopped after {timeout:.0f}s]"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
