"""The container engine at the edge: podman or docker CLI, found and driven as a subprocess.

Only what the harness needs: build an image from a Dockerfile, save it as an archive the
image reader understands, tell whether an image exists locally, and remove what we made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.runtime.processes import last_lines, stop_group
from extharness.runtime.settings import limit_of
from extharness.source.engine_cli import installed_clis

#: How long a single engine call may take before we give up (seconds); builds get more.
CLEANUP_TIMEOUT = 10.0  # removing what a killed build left: best effort, never a long wait

NO_ENGINE = "no container engine: install podman (or docker with a running daemon) or set DOCKER_HOST"

#: Build argument naming one podman build, so its working containers can be found if it is killed.
BUILD_ID_ARG = "EXTHARNESS_BUILD_ID"


@dataclass(frozen=True)
class Engine:
    """A working container engine CLI (``podman`` or ``docker``)."""

    cli: str  # absolute path of the executable
    kind: str  # "podman" or "docker"

    # -- low level -------------------------------------------------------------------
    def run(
        self,
        *args: str,
        timeout: float | None = None,
        check: bool = True,
        capture: bool = True,
        env: dict[str, str] | None = None,
        progress: bool = False,
        setting: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``<engine> args...``; on failure raise HarnessError with the engine's own words.

        ``setting``: the environment variable that sets ``timeout``, named when it runs out.
        """
        cmd = [self.cli, *args]
        run_env = dict(os.environ)
        if self.kind == "docker":
            # The classic builder works against podman's Docker-compatible API and Docker alike.
            run_env.setdefault("DOCKER_BUILDKIT", "0")
        if env:
            run_env.update(env)
        limit = timeout or (limit_of("EXTHARNESS_BUILD_TIMEOUT") if progress else limit_of("EXTHARNESS_ENGINE_TIMEOUT"))
        piped = subprocess.PIPE if capture or progress else None
        # A session of its own, so that ending the call also ends the helpers the CLI started.
        proc = subprocess.Popen(
            cmd,
            stdout=piped,
            stderr=subprocess.STDOUT if progress else piped,
            text=True,
            env=run_env,
            start_new_session=True,
        )
        timed_out = threading.Event()
        # A timer rather than a timeout on reads: a silent, hung build never returns from a read.
        watchdog = threading.Timer(limit, _end_process_group, (proc, timed_out))
        watchdog.start()
        tail: list[str] = []
        try:
            if progress:
                # Long steps show their progress on stderr, but we still keep the tail for errors.
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail = (tail + [line])[-30:]
                    if "build args were not consumed" in line and BUILD_ID_ARG in line:
                        line = line.replace(f"{BUILD_ID_ARG} ", "").replace(f" {BUILD_ID_ARG}", "")
                        if f"[{BUILD_ID_ARG}]" in line:
                            continue  # only our own marker (see build()), not the user's concern
                    sys.stderr.write(f"  [{self.kind}] {line}")
                stdout, stderr = "".join(tail), ""
                proc.wait()
            else:
                stdout, stderr = proc.communicate()
        except BaseException:  # Ctrl-C does not reach a process in another session: end it here
            _end_process_group(proc)
            try:
                proc.wait(timeout=10)  # reaped, so what cleans up after it sees it gone
            except subprocess.TimeoutExpired:
                pass
            raise
        finally:
            watchdog.cancel()
        if timed_out.is_set():
            raise HarnessError(
                f"{self.kind} {' '.join(args[:2])} did not finish within {limit:g}s "
                f"(last output: {last_lines(''.join(tail), count=1, default='none')}; raise "
                f"{setting or ('EXTHARNESS_BUILD_TIMEOUT' if progress else 'EXTHARNESS_ENGINE_TIMEOUT')})"
            )
        result = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()
            last = " | ".join(detail[-3:]) if detail else "no output"
            raise HarnessError(f"{self.kind} {' '.join(args[:2])} failed (exit {result.returncode}): {last}")
        return result

    # -- images ----------------------------------------------------------------------
    def image_exists(self, ref: str) -> bool:
        if self.kind == "podman":
            return self.run("image", "exists", ref, check=False).returncode == 0
        return self.run("image", "inspect", ref, check=False).returncode == 0

    def image_id(self, ref: str) -> str | None:
        """The ID of the image ``ref`` names now; None when the engine has no such image.

        A tag can move to another image at any time (a build of the same tag elsewhere); what
        must stay the same image for a while (a container's image mount) is named by this ID.
        """
        out = self.run("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        found = out.stdout.strip()
        return found if out.returncode == 0 and found else None

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        build_args: dict[str, str] | None = None,
        platform: str | None = None,
        no_cache: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> str:
        """Build ``dockerfile`` with ``context``; returns the tag.

        ``no_cache``: podman 4.3 (buildah 1.28) reuses a cached ``LABEL`` step although the
        ``--build-arg`` it expands changed, giving an image with another build's labels.
        ``extra_args``: more options for the engine's ``build`` (``--network host``, ``--volume``).
        """
        args = ["build", "-f", str(dockerfile), "-t", tag] + (["--no-cache"] if no_cache else [])
        build_id = secrets.token_hex(8)
        if self.kind == "podman":
            # A podman build that is killed (Ctrl-C, SIGTERM, our timeout) leaves its working
            # containers in storage, mounted; the build argument finds them (_remove_build_containers).
            args += ["--build-arg", f"{BUILD_ID_ARG}={build_id}"]
            if no_cache:
                args.append("--layers=false")  # one working container, no intermediate images left behind
        for key, value in sorted((build_args or {}).items()):
            args += ["--build-arg", f"{key}={value}"]
        if platform:
            args += ["--platform", platform]
        args += list(extra_args)
        args.append(str(context))
        with _private_tmpdir() as tmp:
            try:
                self.run(*args, timeout=limit_of("EXTHARNESS_BUILD_TIMEOUT"), progress=True, env={"TMPDIR": str(tmp)})
            except BaseException:
                if self.kind == "podman":
                    self._remove_build_containers(build_id)
                raise
        return tag

    def _remove_build_containers(self, build_id: str) -> None:
        """Remove the working containers (and their mounts) a killed ``podman build`` left behind.

        podman lists them with ``ps --external`` but cannot filter those by label; each keeps its
        build arguments in ``buildah.json`` next to it in storage.
        """
        try:  # briefly: the engine that just hung or was killed may not answer
            info = self.run(
                "info",
                "--format",
                "{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}",
                check=False,
                timeout=CLEANUP_TIMEOUT / 2,
            )
            root, _, driver = info.stdout.strip().partition("\t")
            if info.returncode != 0 or not root or not driver:
                return
            for state in Path(root, f"{driver}-containers").glob("*/userdata/buildah.json"):
                try:
                    data = json.loads(state.read_text())
                except (OSError, ValueError):
                    continue
                if (data.get("Args") or {}).get(BUILD_ID_ARG) == build_id and data.get("container-id"):
                    self.run("rm", "-f", data["container-id"], check=False, timeout=CLEANUP_TIMEOUT)
        except HarnessError:
            pass  # the error that brought us here is the one to report

    def save(self, ref: str, dest: Path) -> str:
        """Save ``ref`` as an archive at ``dest``; returns the reader reference for it.

        Written next to ``dest`` and renamed, so ``dest`` is complete or absent, never half written
        (the cache trusts an archive that exists).
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
        fmt = ["--format", "oci-archive"] if self.kind == "podman" else []
        try:
            partial.unlink(missing_ok=True)
            with _private_tmpdir() as tmp:
                self.run(
                    "save",
                    *fmt,
                    "-o",
                    str(partial),
                    ref,
                    timeout=limit_of("EXTHARNESS_BUILD_TIMEOUT"),
                    env={"TMPDIR": str(tmp)},
                    setting="EXTHARNESS_BUILD_TIMEOUT",
                )
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return f"{'oci-archive' if self.kind == 'podman' else 'docker-archive'}:{dest}"

    def remove_image(self, ref: str) -> None:
        self.run("rmi", "-f", ref, check=False)

    def load_archive(self, archive: Path) -> str:
        """Load an archive (oci-archive for podman, docker-archive for both); returns the image id."""
        out = self.run(
            "load", "-i", str(archive), timeout=limit_of("EXTHARNESS_BUILD_TIMEOUT"), setting="EXTHARNESS_BUILD_TIMEOUT"
        ).stdout
        return out.strip().splitlines()[-1].split()[-1] if out.strip() else ""


@contextmanager
def _private_tmpdir() -> Iterator[Path]:
    """A TMPDIR of its own for one engine call, removed afterwards whatever happened.

    podman keeps partial layers in ``$TMPDIR`` (default /var/tmp: ``buildah*``, ``storage*``) and
    leaves them when it is killed. Named like the sql tier's temporary folders
    (``extharness-<run>-<pid>-engine-``) so the janitor counts it and sweeps it after a SIGKILL.
    """
    run = os.environ.get("EXTHARNESS_RUN_ID", "").strip().lower()
    if not run:  # as extharness.postgres.server.run_id(), which this module cannot import (psycopg)
        run = os.environ["EXTHARNESS_RUN_ID"] = secrets.token_hex(4)
    path = Path(tempfile.mkdtemp(prefix=f"extharness-{run}-{os.getpid()}-engine-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _end_process_group(proc: subprocess.Popen[str], timed_out: threading.Event | None = None) -> None:
    """Kill an engine call and every process it started (its process group), at once."""
    if timed_out is not None:
        timed_out.set()
    stop_group(proc, first=None, reap=None)  # the caller reaps it


def _works(cli: str) -> bool:
    try:
        return (
            subprocess.run(
                [cli, "info", "--format", "{{json .}}"],
                capture_output=True,
                timeout=20,
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=1)
def detect_engine() -> Engine | None:
    """The first working engine: ``EXTHARNESS_ENGINE`` if set, else podman, else docker.

    ``EXTHARNESS_ENGINE=none`` forces the embedded path (no engine), which is how tests
    prove the harness works on a machine without one.
    """
    for engine in _installed():
        if _works(engine.cli):
            return engine
    return None


def installed_engine() -> Engine | None:
    """The engine :func:`detect_engine` would try first, without proving that it works (``podman
    info`` takes about 0.3 s): for questions whose every failure has an answer, as "does the
    engine hold this image?" (``extharness layout`` asking for the operand image; a broken
    engine answers no)."""
    return next(_installed(), None)


def _installed() -> Iterator[Engine]:
    """``EXTHARNESS_ENGINE`` if set (``none``: nothing), else podman, then docker, where installed."""
    for cli, kind in installed_clis():
        yield Engine(cli=cli, kind=kind)


def require_engine(why: str) -> Engine:
    engine = detect_engine()
    if engine is None:
        raise EnvironmentMissing(f"{NO_ENGINE} ({why})")
    return engine
