"""The container backends: PostgreSQL 18 images run by podman or docker.

- ``composite``: ``--pg-image`` (default ``postgres:18.1``; offline, the postgres stand-in)
  with the extension's files copied into ``$libdir`` and ``$system`` — what pg_trickle's
  release gate did — started through the image's own entrypoint as its default user.
- ``imagevolume``: the unmodified ``--operand-image`` (offline, the CNPG minimal stand-in)
  with the extension image mounted read-only at ``/extensions/<name>`` — the engine's image
  mount (``--mount type=image``, as Kubernetes ImageVolume does) where it has one, else the
  extracted files bind-mounted read-only — CNPG's settings, and postgres as UID 26.

Both are queried with psycopg on a port published on 127.0.0.1 only; every container has a
unique name and the run's labels, gets a random password that is never printed, and is
removed in ``finally``.

There is one driver, the engine CLI (``podman run``/``docker run``, :func:`run_postgres`),
for every container of both backends, the throw-away helpers included. It expresses the image
mount (``--mount type=image``), which the Docker API path through testcontainers (this
module's second driver until it was removed) could not, and it needs no API service: no
private ``podman system service`` socket to start, wait for and stop per run.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.operand import CNPG_POSTGRES_UID
from extharness.postgres.janitor import kill_orphaned_runtime
from extharness.postgres.mount import ImageVolumeMount
from extharness.postgres.server import (
    CNPG_MOUNT_ROOT,
    RunningServer,
    cnpg_settings,
    container_labels,
    make_temp_dir,
    merged_settings,
    new_password,
    settings_args,
    throwaway_flags,
    unique_name,
)
from extharness.runtime.cache import default_cache_dir
from extharness.runtime.locks import held_lock
from extharness.runtime.processes import last_lines, run
from extharness.runtime.settings import limit_of
from extharness.runtime.waits import wait_until
from extharness.source.engine import Engine, detect_engine

PG_LIBDIR = "/usr/lib/postgresql/18/lib"
PG_SHAREDIR = "/usr/share/postgresql/18"
PG_BINDIR = "/usr/lib/postgresql/18/bin"
SUPERUSER = "postgres"
CNPG_UID = CNPG_POSTGRES_UID
NO_ENGINE_REASON = "no container engine: install podman or docker"


_working_ulimits: dict[str, dict[str, int]] = {}


def ulimits(engine: Engine, image: str) -> dict[str, int]:
    """Resource limits a container may be given here ({}: the engine's defaults work).

    Rootful engines give containers high default limits (podman: nofile 1048576); setting a
    limit above the engine's own needs CAP_SYS_RESOURCE, which sandboxed machines lack
    ("error setting rlimit type 7: operation not permitted"). Found once per engine by
    starting ``true`` in ``image`` with the defaults, then with our own hard limits, then lower.
    """
    ours = {}
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        ours[name] = 1048576 if hard == resource.RLIM_INFINITY else int(hard)
    key = f"{engine.cli} {sorted(ours.items())}"
    record = default_cache_dir() / "container-ulimits.json"
    if engine.cli not in _working_ulimits:
        try:
            _working_ulimits[engine.cli] = json.loads(record.read_text())[key]
        except (OSError, ValueError, KeyError):
            pass
    if engine.cli not in _working_ulimits:
        candidates = [{}, ours] + [{k: min(v, cap) for k, v in ours.items()} for cap in (32768, 8192, 1024)]
        last = ""
        for limits in candidates:
            out = engine.run(
                "run",
                "--rm",
                *throwaway_flags("ulimits"),
                "--network",
                "none",
                *_ulimit_flags(limits),
                "--entrypoint",
                "true",
                image,
                check=False,
            )
            if out.returncode == 0:
                _working_ulimits[engine.cli] = limits
                try:
                    known = json.loads(record.read_text()) if record.exists() else {}
                    record.parent.mkdir(parents=True, exist_ok=True)
                    record.write_text(json.dumps({**known, key: limits}))
                except (OSError, ValueError):
                    pass
                break
            last = (out.stderr or out.stdout).strip().splitlines()[-1:] or [""]
            if "rlimit" not in last[0]:
                raise HarnessError(f"{engine.kind} cannot start a container of {image}: {last[0]}")
        else:
            raise EnvironmentMissing(f"{engine.kind} cannot start containers here: {last[0]}")
    return _working_ulimits[engine.cli]


def _ulimit_flags(limits: dict[str, int]) -> list[str]:
    return [arg for name, value in limits.items() for arg in ("--ulimit", f"{name}={value}:{value}")]


def ulimit_args(engine: Engine, image: str) -> list[str]:
    return _ulimit_flags(ulimits(engine, image))


# -- composite images -------------------------------------------------------------------------------
def build_composite_image(engine: Engine, base_image: str, mount_dir: Path, tag: str, postgres_uid: int) -> str:
    """``base_image`` plus the extension files of ``mount_dir`` (an /extensions/<name> folder)
    copied into PostgreSQL's ``$libdir`` and ``$system``, owned by ``postgres_uid``; cached by tag.

    Extra native libraries of the image (``system/``) go to ``/usr/lib/extharness/<name>`` on
    ``LD_LIBRARY_PATH``. Nothing is written into ``mount_dir``.
    """
    if engine.image_exists(tag):
        return tag
    lines = [f"FROM {base_image}"]
    owner = f"{postgres_uid}:{postgres_uid}"
    if (mount_dir / "lib").is_dir():
        lines.append(f"COPY --chown={owner} lib/ {PG_LIBDIR}/")
    if (mount_dir / "share" / "extension").is_dir():
        lines.append(f"COPY --chown={owner} share/extension/ {PG_SHAREDIR}/extension/")
    if (mount_dir / "system").is_dir():
        target = f"/usr/lib/extharness/{mount_dir.name}"
        lines += [f"COPY --chown={owner} system/ {target}/", f"ENV LD_LIBRARY_PATH={target}"]
    lines.append(f"LABEL io.extharness.composite.base={base_image}")
    with tempfile.TemporaryDirectory(prefix="extharness-containerfile-") as tmp:
        containerfile = Path(tmp) / "Containerfile"
        containerfile.write_text("\n".join(lines) + "\n")
        engine.build(mount_dir, containerfile, tag)
    return tag


def composite_tag(engine: Engine, base_image: str, mount: ImageVolumeMount, postgres_uid: int) -> str:
    image_id = engine.run("image", "inspect", "--format", "{{.Id}}", base_image).stdout.strip()
    key = hashlib.sha256(f"{image_id}\0{mount.content_fingerprint()}\0{postgres_uid}\0composite-1".encode()).hexdigest()
    return f"localhost/extharness/composite-{mount.name}:{key[:16]}"


def postgres_uid_of(engine: Engine, image: str) -> int:
    """The uid of the ``postgres`` user in ``image`` (999 for the official image, 26 for CNPG's)."""
    from extharness.postgres.base_images import STANDINS

    for standin in STANDINS.values():
        if standin.ref == image:
            return standin.postgres_uid
    out = engine.run(
        "run",
        "--rm",
        *throwaway_flags("uid"),
        "--network",
        "none",
        *ulimit_args(engine, image),
        "--entrypoint",
        "id",
        image,
        "-u",
        "postgres",
        check=False,
    )
    text = out.stdout.strip()
    return int(text) if out.returncode == 0 and text.isdigit() else 999


_image_mounts: dict[str, bool] = {}


def image_mount_supported(engine: Engine, image: str | None = None, operand: str | None = None) -> bool:
    """Whether the engine mounts images like ImageVolume: podman does; Docker Engine 28+ with the
    containerd image store does (tried once with ``image`` mounted into ``operand``)."""
    if engine.kind == "podman":
        return True
    if image is None or operand is None:
        out = engine.run("version", "--format", "{{.Server.Version}}", check=False)
        try:
            return int(out.stdout.strip().split(".")[0]) >= 28
        except ValueError:
            return False
    key = f"{engine.cli} {image} {operand}"
    if key not in _image_mounts:
        out = engine.run(
            "run",
            "--rm",
            *throwaway_flags("mountprobe"),
            "--network",
            "none",
            *ulimit_args(engine, operand),
            "--mount",
            f"type=image,source={image},destination=/extensions/probe",
            "--entrypoint",
            "/bin/sh",
            operand,
            "-c",
            "ls /extensions/probe >/dev/null",
            check=False,
        )
        _image_mounts[key] = out.returncode == 0
    return _image_mounts[key]


# -- data directories -----------------------------------------------------------------------------------
PGDATA_IN = "/var/lib/postgresql/extharness-data"  # where a server's data directory is mounted

TEMPLATE_SCRIPT = r"""
set -eu
export PATH=/usr/lib/postgresql/18/bin:$PATH
umask 077
printf '%s\n' "$EXTHARNESS_PASSWORD" > /tmp/extharness-pw
initdb -D /out/data -U postgres --pwfile=/tmp/extharness-pw --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C --wal-segsize=1 --no-sync --no-instructions
rm -f /tmp/extharness-pw
echo 'host all all all scram-sha-256' >> /out/data/pg_hba.conf
"""


def _as_root(
    engine: Engine, image: str, volumes: Sequence[str], script: str, setting: str = "EXTHARNESS_INITDB_TIMEOUT"
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as root in a throw-away container of ``image`` (for files owned by UID 26/999
    when the harness itself is not root, with a rootful engine; for reading the image's folders),
    within the limit ``setting`` names."""
    args = ["run", "--rm", *throwaway_flags("root"), "--network", "none", "--user", "0", *ulimit_args(engine, image)]
    for volume in volumes:
        args += ["-v", volume]
    return engine.run(*args, "--entrypoint", "/bin/sh", image, "-c", script, timeout=limit_of(setting), setting=setting)


def remove_tree(path: Path, engine: Engine | None = None, image: str | None = None) -> None:
    """Remove ``path``; files of another uid that we may not delete are removed in a container."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists() and engine is not None and image is not None:
        _as_root(engine, image, [f"{path}:/victim"], "rm -rf /victim/* /victim/.[!.]* 2>/dev/null; true")
        shutil.rmtree(path, ignore_errors=True)


def data_template(engine: Engine, image: str, uid: int, cache_dir: Path) -> tuple[Path, str]:
    """An initdb'd data directory made by ``image``'s own initdb as ``uid``, cached per image id.

    initdb in a container takes seconds (every ``postgres --check`` it runs starts slowly
    there); copying this template takes tens of milliseconds. The superuser password it was
    made with is random and stays in the cache (mode 0600); each server gets its own at start.
    """
    image_id = engine.run("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    recipe = hashlib.sha256(TEMPLATE_SCRIPT.encode()).hexdigest()[:8]
    folder = cache_dir / "container-pgdata" / f"{image_id.rsplit(':', 1)[-1][:16]}-{uid}-{recipe}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with held_lock(str(folder) + ".lock", f"initdb of a data directory template in {image}"):
        if not ((folder / "data" / "PG_VERSION").is_file() and (folder / "password").is_file()):
            remove_tree(folder, engine, image)
            work = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
            remove_tree(work, engine, image)
            work.mkdir()
            try:
                work.chmod(0o777)  # initdb runs as ``uid`` in the container and creates data/ here
                password = new_password()
                engine.run(
                    "run",
                    "--rm",
                    *throwaway_flags("initdb"),
                    "--network",
                    "none",
                    "--user",
                    f"{uid}:{uid}",
                    *ulimit_args(engine, image),
                    "-e",
                    "EXTHARNESS_PASSWORD",
                    "-v",
                    f"{work}:/out",
                    "--entrypoint",
                    "/bin/sh",
                    image,
                    "-c",
                    TEMPLATE_SCRIPT,
                    timeout=limit_of("EXTHARNESS_INITDB_TIMEOUT"),
                    env={"EXTHARNESS_PASSWORD": password},
                    setting="EXTHARNESS_INITDB_TIMEOUT",
                )
                work.chmod(0o700)
                (work / "password").touch(mode=0o600)
                (work / "password").write_text(password + "\n")
                os.rename(work, folder)
            finally:
                remove_tree(work, engine, image)
        return folder / "data", (folder / "password").read_text().strip()


def fresh_data_dir(template: Path, engine: Engine, image: str) -> Path:
    """A temporary folder holding a copy of ``template`` as ``data``, owners kept."""
    work = make_temp_dir("pg")
    try:
        if os.geteuid() == 0:
            run(
                ["cp", "-a", str(template), str(work / "data")],
                what=f"copying the data directory template {template}",
                timeout=limit_of("EXTHARNESS_INITDB_TIMEOUT"),
                setting="EXTHARNESS_INITDB_TIMEOUT",
            )
        else:  # the template belongs to UID 26/999: copy it as root in a container
            _as_root(engine, image, [f"{template}:/template:ro", f"{work}:/work"], "cp -a /template /work/data")
    except BaseException:
        remove_tree(work, engine, image)
        raise
    return work


# -- a started container ---------------------------------------------------------------------------
class _Container:
    """What both kinds of container offer the server wrapper (by name, through the engine CLI)."""

    def __init__(self, engine: Engine, name: str, password: str) -> None:
        self.engine, self.name, self.password = engine, name, password

    def status(self) -> str:
        out = self.engine.run("container", "inspect", "--format", "{{.State.Status}}", self.name, check=False)
        return out.stdout.strip() if out.returncode == 0 else "gone"

    def host_port(self) -> int:
        out = self.engine.run("port", self.name, "5432/tcp").stdout.strip().splitlines()
        for line in out:
            host, _, port = line.rpartition(":")
            if port.isdigit() and host in ("127.0.0.1", "localhost"):
                return int(port)
        raise HarnessError(f"container {self.name} publishes 5432 on {out}, not on 127.0.0.1")

    def logs(self) -> str:
        out = self.engine.run("logs", "--tail", "300", self.name, check=False)
        return (out.stdout or "") + (out.stderr or "")

    def exec_tool(self, args: Sequence[str], input: bytes | None, timeout: float) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": SUPERUSER, "PGPASSWORD": self.password}
        cmd = [
            self.engine.cli,
            "exec",
            "-i",
            "-e",
            "PGHOST",
            "-e",
            "PGPORT",
            "-e",
            "PGUSER",
            "-e",
            "PGPASSWORD",
            self.name,
            *args,
        ]
        return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=env)

    def remove(self) -> None:
        # Throw-away clusters: no shutdown checkpoint to wait for.
        self.engine.run("rm", "-f", "-t", "0", self.name, check=False)
        self.kill_orphans()

    def kill_orphans(self) -> None:
        """A start cut short (an interrupted ``podman run``) leaves conmon and ``runc init`` behind
        the removed container: kill them once the engine no longer knows the container."""
        if self.engine.kind == "podman" and self.engine.run("container", "exists", self.name, check=False).returncode:
            kill_orphaned_runtime(self.name)


def _wait_accepting(container: _Container, template_password: str) -> int:
    """The published port, once postgres accepts a login on it; then the server's own password."""
    last = "no attempt finished"
    port: int | None = None

    def accepts() -> int | None:
        nonlocal last, port
        try:
            port = port or container.host_port()
            with psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=SUPERUSER,
                password=template_password,
                dbname="postgres",
                connect_timeout=3,
                autocommit=True,
            ) as conn:
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        psycopg.sql.Identifier(SUPERUSER), psycopg.sql.Literal(container.password)
                    )
                )
            return port
        except (psycopg.Error, HarnessError) as exc:
            last = " ".join(str(exc).split())[:200]
        if container.status() in ("exited", "stopped", "dead", "gone"):
            raise HarnessError(
                f"container {container.name} stopped while starting PostgreSQL: {last_lines(container.logs(), count=8)}"
            )
        return None

    def state() -> str:
        return f"{last}; container {container.status()}; log: {last_lines(container.logs(), count=5, default='empty')}"

    return wait_until(
        accepts,
        limit_of("EXTHARNESS_CONTAINER_START_TIMEOUT"),
        f"PostgreSQL in {container.name}",
        "EXTHARNESS_CONTAINER_START_TIMEOUT",
        last_state=state,
        failed="did not accept connections",
    )


def _server(
    backend: str,
    container: _Container,
    port: int,
    mount_path: str,
    settings: dict[str, str],
    preload: Sequence[str],
    description: str,
) -> RunningServer:
    return RunningServer(
        backend=backend,
        host="127.0.0.1",
        port=port,
        user=SUPERUSER,
        password=container.password,
        mount_path=mount_path,
        settings=settings,
        preload=list(preload),
        tool_runner=container.exec_tool,
        log_reader=container.logs,
        sharedir=PG_SHAREDIR,
        description=description,
    )


@contextmanager
def run_postgres(
    engine: Engine,
    image: str,
    template: tuple[Path, str],
    name: str,
    settings: dict[str, str],
    *,
    backend: str,
    uid: int | None = None,
    image_entrypoint: bool = False,
    run_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    mount_path: str = "",
    preload: Sequence[str] = (),
    description: str = "",
    data_dir: Path | None = None,
) -> Iterator[RunningServer]:
    """PostgreSQL in a container of ``image``, started with the engine CLI, on a copy of
    ``template`` (or on ``data_dir``, which is kept: a clean stop, then only the container goes),
    published on 127.0.0.1 only; the container and its data are removed afterwards, also on
    failure or interrupt.

    ``image_entrypoint``: the image's own entrypoint as its default user, with ``PGDATA`` set and
    ``postgres -c ...`` as the command (the composite image, as pg_trickle's release gate ran
    it; the data directory exists, so it starts the server straight away). Otherwise
    ``<bindir>/postgres`` is the entrypoint, run as ``uid`` (CNPG's instance manager starts
    postgres itself; there is no entrypoint to go through). ``run_args``: more ``run`` options
    (the extension's mount); ``env``: variables handed over by name (``-e KEY``), their values
    only in the CLI's environment, never on a command line.
    """
    handle = _Container(engine, name, new_password() if data_dir is None else template[1])
    work = fresh_data_dir(template[0], engine, image) if data_dir is None else data_dir.parent
    try:
        env = dict(env or {})
        args = ["run", "-d", "--name", name, "-p", "127.0.0.1::5432"]
        if uid is not None:
            args += ["--user", f"{uid}:{uid}"]
        args += [*ulimit_args(engine, image), "-v", f"{work / 'data'}:{PGDATA_IN}", *run_args]
        if image_entrypoint:
            env["PGDATA"] = PGDATA_IN
            command = ["postgres", *settings_args(settings)]
        else:
            args += ["--entrypoint", f"{PG_BINDIR}/postgres"]
            command = ["-D", PGDATA_IN, *settings_args(settings)]
        for key, value in container_labels().items():
            args += ["--label", f"{key}={value}"]
        for key in env:
            args += ["-e", key]
        engine.run(*args, image, *command, env=env)
        port = _wait_accepting(handle, template[1])
        yield _server(backend, handle, port, mount_path, settings, preload, f"{description}, port {port}")
    finally:
        if data_dir is None:
            handle.remove()
            remove_tree(work, engine, image)
        else:
            _stop(handle)


@contextmanager
def postgres_as_uid(
    engine: Engine,
    image: str,
    uid: int,
    template: tuple[Path, str],
    name: str,
    settings: dict[str, str],
    **options: Any,
) -> Iterator[RunningServer]:
    """``image``'s own postgres binary run directly as ``uid`` (no entrypoint): :func:`run_postgres`."""
    with run_postgres(engine, image, template, name, settings, uid=uid, **options) as server:
        yield server


def _stop(handle: _Container) -> None:
    """Shut postgres down cleanly (the stop signal, then wait) and remove the container in one
    ``rm -f -t N``: its data directory is kept for the next server, as a rolling update keeps the
    volume. One command, not ``stop`` then ``rm``: between the two, podman's cleanup of an image
    mount races a new container mounting the same image (runc "error mounting ...", seen here
    under load; the same race and fix: NVIDIA/OpenShell#2568 and #2570)."""
    timeout = str(int(limit_of("EXTHARNESS_CONTAINER_START_TIMEOUT")))
    handle.engine.run("rm", "-f", "-t", timeout, handle.name, check=False, timeout=float(timeout) + 30)
    handle.kill_orphans()


# -- the backends -------------------------------------------------------------------------------------
class _ContainerBackend:
    name = "container"

    def __init__(
        self, requested_image: str, mount: ImageVolumeMount, cache_dir: Path, ld_library_paths: Sequence[str] = ()
    ) -> None:
        self.requested_image = requested_image
        self.mount = mount
        self.cache_dir = cache_dir
        self.ld_library_paths = list(ld_library_paths)
        self.engine: Engine | None = None
        self.image: str | None = None  # resolved (maybe a stand-in)
        self.template: tuple[Path, str] | None = None
        self._base_files: set[str] | None = None

    def available(self) -> str | None:
        self.engine = self.engine or detect_engine()
        if self.engine is None:
            return NO_ENGINE_REASON
        if os.geteuid() != 0 and self.engine.kind == "podman":
            return (
                "container backends need rootful podman (run as root) or docker: rootless podman maps "
                "UID 26/999 to other host ids"
            )
        return None

    def close(self) -> None:
        """Nothing to release: each server's container is removed when the server stops."""

    @contextmanager
    def data_directory(self) -> Iterator[Path]:
        """A data directory that outlives one server (an upgrade stops and starts on it); removed at the end."""
        self.prepare()  # type: ignore[attr-defined]
        engine = self._require_engine()
        assert self.template is not None and self.image is not None
        work = fresh_data_dir(self.template[0], engine, self.image)
        try:
            yield work / "data"
        finally:
            remove_tree(work, engine, self.image)

    def _require_engine(self) -> Engine:
        reason = self.available()
        if reason:
            raise EnvironmentMissing(reason)
        assert self.engine is not None
        return self.engine

    def base_extension_files(self) -> set[str]:
        """What ``$system`` of the (unmodified) base image holds, listed with the engine."""
        if self._base_files is None:
            engine = self._require_engine()
            assert self.image is not None, "prepare() first"
            self._base_files = system_extension_files(engine, self.image)
        return self._base_files

    def _settings(
        self, cnpg: dict[str, str], settings: dict[str, str] | None, preload: Sequence[str], name: str
    ) -> dict[str, str]:
        final = merged_settings(cnpg, settings, preload)
        final["cluster_name"] = name  # the janitor finds its processes by it
        final["unix_socket_directories"] = "/tmp"
        final["listen_addresses"] = "*"
        return final


_system_files: dict[str, set[str]] = {}


def system_extension_files(engine: Engine, image: str) -> set[str]:
    """File names in ``image``'s ``$system`` extension folder (read in a throw-away container)."""
    if image not in _system_files:
        out = _as_root(engine, image, (), f"ls -1 {PG_SHAREDIR}/extension", setting="EXTHARNESS_ENGINE_TIMEOUT")
        _system_files[image] = {line.strip() for line in out.stdout.splitlines() if line.strip()}
    return _system_files[image]


class CompositeBackend(_ContainerBackend):
    """``--pg-image`` with the extension copied into ``$libdir``/``$system`` (pg_trickle's release gate)."""

    name = "composite"

    def __init__(
        self, requested_image: str, mount: ImageVolumeMount, cache_dir: Path, ld_library_paths: Sequence[str] = ()
    ) -> None:
        super().__init__(requested_image, mount, cache_dir, ld_library_paths)
        self.composite: str | None = None

    def prepare(self) -> None:
        if self.composite:
            return
        from extharness.postgres.base_images import resolve_pg_image

        engine = self._require_engine()
        self.image = resolve_pg_image(self.requested_image, engine, self.cache_dir)
        uid = postgres_uid_of(engine, self.image)
        tag = composite_tag(engine, self.image, self.mount, uid)
        lock = self.cache_dir / "locks" / f"{tag.rsplit(':', 1)[-1]}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with held_lock(lock, f"building {tag}"):
            self.composite = build_composite_image(engine, self.image, self.mount.path, tag, uid)
        self.template = data_template(engine, self.image, uid, self.cache_dir)

    @contextmanager
    def start(
        self, settings: dict[str, str] | None = None, preload: Sequence[str] = (), data_dir: Path | None = None
    ) -> Iterator[RunningServer]:
        """A server on a fresh copy of the template, or on ``data_dir`` (kept when the server stops)."""
        self.prepare()
        engine = self._require_engine()
        assert self.composite is not None and self.template is not None
        name = unique_name("composite")
        final = self._settings(
            {"extension_control_path": "$system", "dynamic_library_path": "$libdir"}, settings, preload, name
        )
        # The image's own entrypoint and default user, as the release gate ran it.
        with run_postgres(
            engine,
            self.composite,
            self.template,
            name,
            final,
            backend=self.name,
            image_entrypoint=True,
            preload=preload,
            description=f"{self.composite} (from {self.image})",
            data_dir=data_dir,
        ) as server:
            yield server


class ImageVolumeBackend(_ContainerBackend):
    """The unmodified operand image with the extension image mounted at /extensions/<name>."""

    name = "imagevolume"

    def __init__(
        self,
        requested_image: str,
        mount: ImageVolumeMount,
        cache_dir: Path,
        engine_ref: str | None,
        ld_library_paths: Sequence[str] = (),
    ) -> None:
        super().__init__(requested_image, mount, cache_dir, ld_library_paths)
        self.engine_ref = engine_ref
        self.engine_id: str | None = None  # the image engine_ref named at prepare(): what is mounted
        self.how: str | None = None  # "image mount" or "bind mount"

    @property
    def mount_path(self) -> str:
        return f"{CNPG_MOUNT_ROOT}/{self.mount.name}"

    def prepare(self) -> None:
        if self.how:
            return
        from extharness.postgres.base_images import resolve_operand_image

        engine = self._require_engine()
        self.image = resolve_operand_image(self.requested_image, engine, self.cache_dir)
        self.template = data_template(engine, self.image, CNPG_UID, self.cache_dir)
        # Mounted by ID, not by tag: podman 4 unmounts a container's image volume by looking up
        # the name it was given, so when the tag moved to another image meanwhile (the same
        # release folder built with the engine by another session), it unmounts that image and the
        # mounted one stays mounted for good (seen after every full run until this used the ID).
        self.engine_id = engine.image_id(self.engine_ref) if self.engine_ref else None
        if self.engine_id and image_mount_supported(engine, self.engine_id, self.image):
            self.how = "image mount"
        else:
            self.how = "bind mount"

    @contextmanager
    def start(
        self, settings: dict[str, str] | None = None, preload: Sequence[str] = (), data_dir: Path | None = None
    ) -> Iterator[RunningServer]:
        """A server on a fresh copy of the template, or on ``data_dir`` (kept when the server stops)."""
        self.prepare()
        engine = self._require_engine()
        assert self.image is not None and self.template is not None
        name = unique_name("imagevolume")
        final = self._settings(cnpg_settings(CNPG_MOUNT_ROOT, [self.mount.name]), settings, preload, name)
        env = {}
        if self.ld_library_paths:
            env["LD_LIBRARY_PATH"] = ":".join(f"{self.mount_path}/{p.strip('/')}" for p in self.ld_library_paths)
        description = f"{self.image} as UID {CNPG_UID}, extension by {self.how} at {self.mount_path}"
        if self.how == "image mount":
            extension = ["--mount", f"type=image,source={self.engine_id},destination={self.mount_path}"]
        else:  # the extracted files
            extension = ["-v", f"{self.mount.path}:{self.mount_path}:ro"]
        with run_postgres(
            engine,
            self.image,
            self.template,
            name,
            final,
            backend=self.name,
            uid=CNPG_UID,
            run_args=extension,
            env=env,
            mount_path=self.mount_path,
            preload=preload,
            description=description,
            data_dir=data_dir,
        ) as server:
            yield server
