"""The PostgreSQL backend interface the sql tier runs on, and CNPG's settings.

A backend (``native``, ``composite``, ``imagevolume``) says whether it can run here
(:meth:`PostgresBackend.available`) and starts servers as context managers that always
stop and remove what they made, on success, failure or Ctrl-C. A
:class:`RunningServer` is what the checks need: a superuser connection, the client tools,
the mount path the server sees, and its log for failure messages.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psycopg

#: Where CloudNativePG mounts extension images inside the instance pods.
CNPG_MOUNT_ROOT = "/extensions"

#: Label on every container the sql tier starts (value: the run id), for cleanup and counting.
RUN_LABEL = "io.extharness.run"
PID_LABEL = "io.extharness.pid"
HOST_LABEL = "io.extharness.host"

#: Settings every test server gets: durability off (throw-away clusters), small footprint.
THROWAWAY_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
}


def cnpg_settings(mount_root: str, names: Sequence[str]) -> dict[str, str]:
    """The two settings CloudNativePG adds for the declared extension images, in list order.

    >>> cnpg_settings("/extensions", ["a", "b"])["dynamic_library_path"]
    '$libdir:/extensions/a/lib:/extensions/b/lib'
    """
    root = mount_root.rstrip("/")
    return {
        "extension_control_path": ":".join(["$system", *(f"{root}/{n}/share" for n in names)]),
        "dynamic_library_path": ":".join(["$libdir", *(f"{root}/{n}/lib" for n in names)]),
    }


def ld_library_path(mount_path: str, entries: Sequence[str]) -> str:
    """``LD_LIBRARY_PATH`` CNPG gives postgres for an image's ``ld_library_path`` entries."""
    return ":".join(f"{mount_path.rstrip('/')}/{e.strip('/')}" for e in entries)


# -- names that never collide ---------------------------------------------------------------
def run_id() -> str:
    """This run's id: ``EXTHARNESS_RUN_ID``, else a random one shared with child processes."""
    value = os.environ.get("EXTHARNESS_RUN_ID", "").strip().lower()
    if not value:
        value = secrets.token_hex(4)
        os.environ["EXTHARNESS_RUN_ID"] = value
    return value


def container_labels() -> dict[str, str]:
    """The labels of every container the harness starts: the janitor and the leftover checks find
    them by these, also a throw-away ``run --rm`` whose CLI was killed before it removed it."""
    return {RUN_LABEL: run_id(), PID_LABEL: str(os.getpid()), HOST_LABEL: socket.gethostname()}


def throwaway_flags(kind: str) -> list[str]:
    """Labels and a name for a throw-away ``run --rm`` (a probe, initdb, removing a tree as root).
    The name is what conmon and ``runc init`` show: when such a run is cut short between creating
    and starting its container, the engine removes the container but they stay, and only the name
    finds them (:func:`extharness.postgres.janitor.kill_orphans_of`)."""
    labels = [f"--label={key}={value}" for key, value in container_labels().items()]
    return [*labels, "--name", unique_name(kind)]


_counter = 0


def own_name_prefix(pid: int | None = None) -> str:
    """``extharness-<run>-<worker>-<pid>-``: how every name this process gives begins."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"extharness-{run_id()}-{worker}-{os.getpid() if pid is None else pid}-"


def unique_name(kind: str) -> str:
    """``extharness-<run>-<worker>-<pid>-<kind>-<n>``: unique per run, xdist worker and process."""
    global _counter
    _counter += 1
    return f"{own_name_prefix()}{kind}-{_counter}"


def temp_prefix(kind: str) -> str:
    """Prefix of our temporary folders; the janitor finds them (and their owner pid) by it."""
    return f"extharness-{run_id()}-{os.getpid()}-{kind}-"


def make_temp_dir(kind: str, parent: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix=temp_prefix(kind), dir=str(parent) if parent else None))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on collision)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_password() -> str:
    return secrets.token_urlsafe(18)


# -- a running server ---------------------------------------------------------------------------
@dataclass
class RunningServer:
    """A PostgreSQL 18 server the checks can use; stopped by the context that made it."""

    backend: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    mount_path: str  # where the extension's folder is, as the server sees it ("" for composite)
    settings: dict[str, str]
    preload: list[str]
    tool_runner: Callable[[Sequence[str], bytes | None, float], subprocess.CompletedProcess[bytes]] = field(repr=False)
    log_reader: Callable[[], str] = field(repr=False)
    sharedir: str = ""  # the server's $system is <sharedir>/extension
    description: str = ""

    def conninfo(self, dbname: str = "postgres", user: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=user or self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=10,
            application_name="extharness",
        )

    def connect(self, dbname: str = "postgres", user: str | None = None) -> psycopg.Connection:
        """An autocommit connection as the superuser (or ``user``, with the same password)."""
        return psycopg.connect(self.conninfo(dbname, user), autocommit=True)

    def run_tool(
        self, args: Sequence[str], input: bytes | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a client tool (``pg_dump``, ``pg_restore``, ``psql``) against this server.

        Connection settings come from PG* variables; the tool is the server's own
        (host binary for native, ``exec`` in the container otherwise).
        """
        return self.tool_runner(list(args), input, timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_reader()
        except Exception as exc:  # a failure message must not fail itself
            return f"(server log unavailable: {exc})"
        return "\n".join(text.strip().splitlines()[-lines:])


class PostgresBackend(Protocol):
    """One way of running PostgreSQL 18 with the extension image's files."""

    name: str

    def available(self) -> str | None:
        """None if this backend can run here, else one line saying what is missing."""

    def start(
        self, settings: dict[str, str] | None = None, preload: Sequence[str] = ()
    ) -> AbstractContextManager[RunningServer]:
        """A server with CNPG's settings plus ``settings``; ``preload`` becomes
        ``shared_preload_libraries``. Stopped and removed when the context exits."""

    def base_extension_files(self) -> set[str]:
        """File names in the base's ``$system`` extension folder, before the extension is added."""


def settings_args(settings: dict[str, str]) -> list[str]:
    """``-c name=value`` arguments, in a stable order."""
    args: list[str] = []
    for key in sorted(settings):
        args += ["-c", f"{key}={settings[key]}"]
    return args


def merged_settings(cnpg: dict[str, str], extra: dict[str, str] | None, preload: Sequence[str]) -> dict[str, str]:
    """Throw-away defaults, then the profile's settings, then CNPG's (which win, like the operator's)."""
    result = dict(THROWAWAY_SETTINGS)
    result.update(extra or {})
    for key in ("extension_control_path", "dynamic_library_path"):
        user = result.pop(key, None)
        # CNPG appends a user value after its own entries.
        result[key] = cnpg[key] + (f":{user}" if user else "")
    if preload:
        result["shared_preload_libraries"] = ",".join(preload)
    return result
