"""An image-to-image upgrade the way CloudNativePG users make one, replayed on one data directory.

The old release's image is mounted, its default version installed, the profile's data
written; the server stops; the candidate image takes the old one's place with the same
settings (the native and ImageVolume backends swap what is mounted at
``/extensions/<name>``, the composite backend starts a rebuilt image); the server starts
again and ``ALTER EXTENSION ... UPDATE TO`` the candidate's default version runs, as CNPG's
``Database`` resource does. What the server says is recorded in an
:class:`~extharness.checks.upgrade.UpgradeRecord`; the checks over it are pure
(``extharness.checks.upgrade``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg
from psycopg import sql

from extharness.checks.upgrade import UpgradeRecord, failing_statement
from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.extension import ExtensionLayout, describe
from extharness.inspect.model import PlatformImage
from extharness.postgres.mount import ImageVolumeMount
from extharness.postgres.native import NativeBackend
from extharness.postgres.profiles import Profile
from extharness.postgres.server import RunningServer
from extharness.postgres.sqlchecks import (
    create_extension,
    error_text,
    installed_extension,
    loaded_modules,
    member_objects,
    normalize,
    run_smoke,
    update_extension,
    wait_for_backend_types,
)

#: The databases of one run: the profile's data, the smoke SQL (its own rows), a fresh install.
DATA_DB, SMOKE_DB, FRESH_DB = "xh_upgrade_data", "xh_upgrade_smoke", "xh_upgrade_fresh"
WORKER_TIMEOUT = 20.0

Start = Callable[[], AbstractContextManager[RunningServer]]


def query_rows(conn: psycopg.Connection, query: str) -> list[list]:
    cur = conn.execute(query)
    return [[normalize(v) for v in row] for row in cur.fetchall()] if cur.description else []


def _full_error(exc: psycopg.Error) -> tuple[str, str]:
    """(message with detail and hint, PostgreSQL's error context)."""
    diag = getattr(exc, "diag", None)
    return error_text(exc), (diag.context or "") if diag is not None else ""


def new_record(
    old: str, old_layout: ExtensionLayout, new_layout: ExtensionLayout, profile: Profile | None, preload: list[str]
) -> UpgradeRecord:
    """The record an upgrade run (on a backend, or on a Cluster: ``kube.upgrade``) starts from."""
    data_check = profile.data_check if profile else None
    return UpgradeRecord(
        extension=new_layout.name,
        old=old,
        old_version=old_layout.control.default_version if old_layout.control else None,
        new_version=new_layout.control.default_version if new_layout.control else None,
        preload=list(preload),
        data_check=" ".join(data_check.sql.split()) if data_check else None,
    )


def record_preload(record: UpgradeRecord, conn: psycopg.Connection, profile: Profile | None, timeout: float) -> None:
    """What the server shows once the candidate's library is preloaded: its workers, its loaded modules."""
    record.workers_expected = list(profile.background_workers) if profile else []
    record.workers_missing = wait_for_backend_types(conn, record.workers_expected, timeout)
    record.modules_seen = [
        (m["module_name"] or "", m["version"] or "", m["file_name"] or "") for m in loaded_modules(conn)
    ]
    if profile and profile.module_name and profile.module_version:
        record.module_expected = (profile.module_name, profile.module_version)


def replay_upgrade(
    start_old: Start,
    swap: Callable[[], None],
    start_new: Start,
    *,
    old: str,
    old_layout: ExtensionLayout,
    new_layout: ExtensionLayout,
    profile: Profile | None,
    preload: list[str],
) -> UpgradeRecord:
    """Install from the old image, swap in the candidate, update, and record what happened."""
    ext = new_layout.name
    record = new_record(old, old_layout, new_layout, profile, preload)
    data_check = profile.data_check if profile else None

    # 1. the old release, as the Cluster ran it before the image reference changed
    with start_old() as server:
        with server.connect() as conn:
            for db in (DATA_DB, SMOKE_DB, FRESH_DB):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        for db in (DATA_DB, SMOKE_DB):
            with server.connect(db) as conn:
                try:
                    create_extension(conn, ext)
                except psycopg.Error as exc:
                    record.install_error = error_text(exc)
                    return record
                installed = installed_extension(conn, ext)
                record.installed_version = installed["version"] if installed else None
                if db == DATA_DB and profile and profile.data_setup.strip() and data_check:
                    conn.execute(profile.data_setup)
                    record.data_before = query_rows(conn, data_check.sql)

    # 2. the rolling update: same data directory, same settings, the candidate's files
    swap()

    # 3. the candidate image, then the Database resource's ALTER EXTENSION ... UPDATE TO
    with start_new() as server:
        if preload:
            with server.connect() as conn:
                record_preload(record, conn, profile, WORKER_TIMEOUT)
        for db in (DATA_DB, SMOKE_DB):
            with server.connect(db) as conn:
                try:
                    update_extension(conn, ext, record.new_version or "")
                except psycopg.Error as exc:
                    message, context = _full_error(exc)
                    record.update_error = message + (f" (CONTEXT: {' '.join(context.split())})" if context else "")
                    record.update_statement = failing_statement(context, new_layout.sql_scripts())
                    record.server_log = server.log_tail(8)
                    return record
                installed = installed_extension(conn, ext)
                if db == DATA_DB:
                    record.version_after = installed["version"] if installed else None
                    record.after_update = member_objects(conn, ext)
                    if data_check:
                        try:
                            record.data_after = query_rows(conn, data_check.sql)
                        except psycopg.Error as exc:
                            record.data_error = error_text(exc)
                else:
                    steps = profile.smoke if profile else []
                    record.smoke = [(" ".join(r.step.sql.split()), r.ok, r.describe()) for r in run_smoke(conn, steps)]
        with server.connect(FRESH_DB) as conn:
            create_extension(conn, ext)
            record.fresh = member_objects(conn, ext)
        # 4. rolling back by version must be refused and leave everything as it was
        with server.connect(DATA_DB) as conn:
            if record.old_version and record.old_version != record.new_version:
                try:
                    update_extension(conn, ext, record.old_version)
                except psycopg.Error as exc:
                    record.downgrade_error = error_text(exc)
            installed = installed_extension(conn, ext)
            record.version_after_downgrade = installed["version"] if installed else None
            record.members_after_downgrade = member_objects(conn, ext)
        record.server_log = record.server_log or server.log_tail(8)
    return record


# -- how each backend swaps the old image for the candidate -----------------------------------------------
@contextmanager
def native_stages(
    backend: NativeBackend,
    old_image: PlatformImage,
    new_image: PlatformImage,
    mount_name: str,
    settings: dict[str, str],
    preload: list[str],
) -> Iterator[tuple[Start, Callable[[], None], Start]]:
    """(start on the old image, swap, start on the candidate) for the native backend: one data
    directory, one folder at ``.../extensions/<name>`` whose files are swapped while postgres is down."""
    with ImageVolumeMount(old_image, mount_name) as mount:
        old_layout = describe(old_image, backend.layout.name) if backend.layout is not None else None
        reason = NativeBackend(mount.path, backend.cache_dir, old_layout, backend.pg_config).available()
        if reason:  # e.g. an old release built for another architecture or a newer glibc
            raise EnvironmentMissing(f"the release to upgrade from cannot run here: {reason}")
        native = NativeBackend(
            mount.path, backend.cache_dir, backend.layout, backend.pg_config, backend.ld_library_paths
        )
        with native.data_directory() as data:

            def start() -> AbstractContextManager[RunningServer]:
                return native.start(settings, preload, data_dir=data)

            yield start, lambda: mount.swap(new_image), start


def stages_for(
    backend,
    old_release,
    old_image: PlatformImage,
    new_image: PlatformImage,
    mount_name: str,
    settings: dict[str, str],
    preload: list[str],
    harness=None,
) -> AbstractContextManager[tuple[Start, Callable[[], None], Start]]:
    """The three stages of an image-to-image upgrade on ``backend`` (a prepared sql-tier backend)."""
    if backend.name == "native":
        return native_stages(backend, old_image, new_image, mount_name, settings, preload)
    if backend.name in ("composite", "imagevolume"):
        return container_stages(backend, old_release, old_image, mount_name, settings, preload)
    raise HarnessError(f"no image-to-image upgrade for the {backend.name} backend")


@contextmanager
def container_stages(
    backend, old_release, old_image: PlatformImage, mount_name: str, settings: dict[str, str], preload: list[str]
) -> Iterator[tuple[Start, Callable[[], None], Start]]:
    """(start on the old image, swap, start on the candidate) for a container backend.

    The old release runs in a backend of the same kind made for its image (composite: built
    into ``--pg-image``; imagevolume: mounted at the same ``/extensions/<name>`` in the same
    operand); the candidate runs in ``backend`` itself. Both share one data directory (same base
    image, same UID, same template), so swapping is only which container starts next.
    """
    from extharness.postgres.containers import CompositeBackend, ImageVolumeBackend

    with ImageVolumeMount(old_image, mount_name) as mount:
        if backend.name == "composite":
            old = CompositeBackend(backend.requested_image, mount, backend.cache_dir, backend.ld_library_paths)
        else:
            old = ImageVolumeBackend(
                backend.requested_image,
                mount,
                backend.cache_dir,
                old_release.acquired.engine_ref,
                backend.ld_library_paths,
            )
        try:
            reason = old.available()
            if reason:
                raise EnvironmentMissing(reason)
            old.prepare()
            with backend.data_directory() as data:
                yield (
                    lambda: old.start(settings, preload, data_dir=data),
                    lambda: None,
                    lambda: backend.start(settings, preload, data_dir=data),
                )
        finally:
            old.close()
