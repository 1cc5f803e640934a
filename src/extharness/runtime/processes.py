"""Running commands and ending them, with everything they started in turn."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from extharness.errors import EnvironmentMissing, HarnessError

#: how much of a log file's end ``last_lines`` reads
_LOG_TAIL_BYTES = 8192


class CommandTimedOut(HarnessError):
    """A command ran out of time and was killed with everything it started."""


def last_lines(*outputs: str | bytes | Path | None, count: int = 3, default: str = "no output") -> str:
    """The last ``count`` non-blank lines of the first of ``outputs`` that has any, joined by " | ",
    for one-line messages like "... failed (exit 2): ...". A Path is a log file: its end is read."""
    for output in outputs:
        if isinstance(output, Path):
            output = _file_end(output)
        text = output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return " | ".join(lines[-count:])
    return default


def _file_end(path: Path, since: int = 0) -> bytes:
    """The end of a file, not before offset ``since``."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(since, path.stat().st_size - _LOG_TAIL_BYTES))
            return handle.read()
    except OSError:
        return b""


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    timeout: float | None = None,
    setting: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    input: str | None = None,
    stdin: int | IO[Any] | None = None,
    check: bool = True,
    capture: bool = True,
    merge: bool = False,
    log: Path | None = None,
    hint: str | None = None,
    tail: int = 3,
    **popen: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in a session of its own and return its result (text; undecodable bytes replaced).

    Its own session, so that a time-out or an interrupt (Ctrl-C does not reach another session)
    ends it and everything it started: the group gets SIGKILL and is reaped before the error
    goes up. Each way of failing is one line naming ``what`` and the command, with the last
    lines of its output (``tail`` of them for a failure: a compiler's error takes more than
    three): a time-out is ``CommandTimedOut`` with the ``setting`` that raises ``timeout``; a
    non-zero exit (when ``check``) a HarnessError with the exit code; a program that cannot be
    started EnvironmentMissing, with the ``hint`` on what to install.

    ``env`` is added to ``environ`` (default: this process's environment). Output is captured
    (stderr into stdout with ``merge``), or inherited without ``capture``, or appended to
    ``log`` after a ``$ cmd`` line (messages then name the file and quote this command's part
    of it). ``stdin`` is DEVNULL unless ``input`` or ``stdin`` says otherwise; ``popen`` goes
    to Popen as is (``user``, ``group``, ...).
    """
    args = [os.fspath(part) for part in cmd]
    out: IO[str] | None = log.open("a") if log else None
    try:
        if out:
            out.write(f"$ {' '.join(args)}\n")
            out.flush()
            start = out.tell()
        piped = subprocess.PIPE if capture else None
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if input is not None else stdin if stdin is not None else subprocess.DEVNULL,
                stdout=out or piped,
                stderr=subprocess.STDOUT if out or merge else piped,
                text=True,
                errors="replace",
                cwd=cwd,
                env=_environment(env, environ),
                start_new_session=True,
                **popen,
            )
        except OSError as exc:
            raise _not_started(args, what, exc, cwd, hint) from None
        try:
            stdout, stderr = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc, first=None)
            stdout, stderr = _leftover_output(proc)
            logged = _file_end(log, start) if log else b""
            raise CommandTimedOut(
                f"{what}: `{_brief(args)}` did not finish within {timeout:g}s "
                f"(last output: {last_lines(stderr, stdout, logged, count=1, default='none')}"
                + (f"; raise {setting})" if setting else ")")
                + (f"; log: {log}" if log else "")
            ) from None
        except BaseException:
            stop_group(proc, first=None)
            raise
    finally:
        if out:
            out.close()
    if check and proc.returncode != 0:
        output = last_lines(stderr, stdout, _file_end(log, start) if log else b"", count=tail)
        raise HarnessError(
            f"{what}: `{_brief(args)}` failed ({_exit(proc.returncode)}): {output}" + (f"; log: {log}" if log else "")
        )
    return subprocess.CompletedProcess(args, proc.returncode, stdout or "", stderr or "")


def _environment(env: Mapping[str, str] | None, environ: Mapping[str, str] | None) -> dict[str, str] | None:
    if env is None and environ is None:
        return None
    return {**(os.environ if environ is None else environ), **(env or {})}


def _leftover_output(proc: subprocess.Popen[str]) -> tuple[str | None, str | None]:
    """What a killed command wrote (its group is dead, so its pipes are at their end, unless
    something left the group holding one: then what was read so far)."""
    try:
        return proc.communicate(timeout=5)
    except subprocess.TimeoutExpired as exc:
        return _text(exc.stdout), _text(exc.stderr)
    except (ValueError, OSError):
        return None, None


def _text(output: str | bytes | None) -> str | None:
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def _not_started(
    args: list[str], what: str, exc: OSError, cwd: str | os.PathLike[str] | None, hint: str | None
) -> HarnessError:
    if cwd is not None and exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd):
        return HarnessError(f"{what}: cannot run {args[0]} in {os.fspath(cwd)}: {exc.strerror}")
    return EnvironmentMissing(f"{what}: cannot run {args[0]}: {exc.strerror}" + (f" ({hint})" if hint else ""))


def _brief(args: list[str]) -> str:
    """The program's name and its first arguments: enough to find the command in a log."""
    return " ".join([Path(args[0]).name, *args[1:4]]) + (" ..." if len(args) > 4 else "")


def _exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            pass
    return f"exit {returncode}"


def stop_groups(
    procs: Iterable[subprocess.Popen],
    first: signal.Signals | None = signal.SIGTERM,
    grace: float = 10.0,
    *,
    leader_only: bool = False,
    reap: float | None = 5.0,
) -> None:
    """Stop each process and its process group (started with ``start_new_session=True``).

    ``first`` goes to each group (or only to its leader: PostgreSQL's fast shutdown is SIGINT
    to the postmaster), which then has ``grace`` seconds in all to end; after that, or at once
    when ``first`` is None, every group gets SIGKILL and each process is reaped (waiting up to
    ``reap`` seconds; None: not at all, for a watchdog thread while another thread waits).
    Never raises.
    """
    procs = list(procs)
    try:
        if first is not None:
            alive = [proc for proc in procs if proc.poll() is None]
            for proc in alive:
                _send(proc, first, leader_only)
            deadline = time.monotonic() + grace
            for proc in alive:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
    finally:
        for proc in procs:  # also when the leader has ended: what it started may still run
            _send(proc, signal.SIGKILL, leader_only=False)
        if reap is not None:
            for proc in procs:
                try:
                    proc.wait(timeout=reap)
                except subprocess.TimeoutExpired:
                    pass


def stop_group(
    proc: subprocess.Popen, first: signal.Signals | None = signal.SIGTERM, grace: float = 10.0, **kw
) -> None:
    """``stop_groups`` for one process."""
    stop_groups([proc], first, grace, **kw)


def _send(proc: subprocess.Popen, sig: signal.Signals, leader_only: bool) -> None:
    try:
        if leader_only:
            os.kill(proc.pid, sig)
        else:
            os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
