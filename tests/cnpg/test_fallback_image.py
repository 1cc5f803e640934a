"""The fallback path's composite operand image, built and run with the local engine (no cluster).

Where a cluster cannot mount image volumes the cnpg tier deploys CNPG's operand image with the
extension's files copied into ``$libdir``/``$system``, owned by UID 26. This is that image,
built exactly as the kind path builds it (offline: on the minimal operand stand-in), started
as UID 26 the way a CNPG instance runs postgres, and checked with the sql tier's functions.
Skips with one line without podman or docker.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from extharness.config import HarnessConfig
from extharness.inspect.model import FileType, PlatformImage
from extharness.kube.deploy import CNPG_POSTGRES_UID, build_fallback_operand
from extharness.kube.manifests import split_settings
from extharness.postgres import sqlchecks
from extharness.postgres.containers import PG_LIBDIR, PG_SHAREDIR, container_labels, ulimit_args
from extharness.postgres.mount import ImageVolumeMount
from extharness.postgres.profiles import Profile
from extharness.postgres.server import THROWAWAY_SETTINGS, settings_args, unique_name
from extharness.pytest_plugin import ImageUnderTest, harness_step
from extharness.source.engine import NO_ENGINE, Engine, detect_engine

START_TIMEOUT = 90.0

#: What a CNPG instance does first, in miniature: initdb and start postgres as the image's
#: UID 26 (the operand image has no postgres-style entrypoint; CNPG's instance manager runs it).
STARTUP = r"""
set -eu
export PATH=/usr/lib/postgresql/18/bin:$PATH PGDATA=/tmp/pgdata
umask 077
printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pw
initdb -U postgres --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync \
    >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log >&2; exit 1; }
rm -f /tmp/pw
echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
exec postgres -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    found = detect_engine()
    if found is None:
        pytest.skip(f"{NO_ENGINE}: the fallback composite operand image is built with podman or docker")
    return found


@pytest.fixture(scope="module")
def fallback_image(
    engine: Engine,
    harness_config: HarnessConfig,
    platform_image: PlatformImage,
    image_under_test: ImageUnderTest,
    cnpg_profile: Profile | None,
) -> str:
    name = cnpg_profile.cnpg_name if cnpg_profile else image_under_test.name

    def build() -> str:
        with ImageVolumeMount(platform_image, name) as mount:
            return build_fallback_operand(engine, harness_config.operand_image, mount, harness_config.cache_dir)

    return harness_step("building the fallback composite operand image", build)  # type: ignore[return-value]


@dataclass
class FallbackServer:
    name: str
    port: int
    password: str

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )


@pytest.fixture(scope="module")
def fallback_server(engine: Engine, fallback_image: str, cnpg_profile: Profile | None) -> Iterator[FallbackServer]:
    """The composite image run as UID 26 with the Cluster's preload and parameters."""
    preload, parameters = split_settings(
        cnpg_profile.settings if cnpg_profile else {}, cnpg_profile.preload if cnpg_profile else ()
    )
    settings = {**THROWAWAY_SETTINGS, **parameters}
    if preload:
        settings["shared_preload_libraries"] = ",".join(preload)
    name = unique_name("cnpg-fallback")
    password = secrets.token_urlsafe(18)
    args = [
        "run",
        "-d",
        "--name",
        name,
        "-p",
        "127.0.0.1::5432",
        "--user",
        str(CNPG_POSTGRES_UID),
        *ulimit_args(engine, fallback_image),
        "--entrypoint",
        "/bin/sh",
        "-e",
        "POSTGRES_PASSWORD",
    ]
    for key, value in container_labels().items():
        args += ["--label", f"{key}={value}"]
    args += [fallback_image, "-c", STARTUP, "extharness", *settings_args(settings)]
    try:
        harness_step(
            "starting the fallback composite image as UID 26",
            lambda: engine.run(*args, env={"POSTGRES_PASSWORD": password}),
        )
        server = harness_step("waiting for PostgreSQL in the composite image", lambda: _wait(engine, name, password))
        yield server  # type: ignore[misc]
    finally:
        engine.run("rm", "-f", "-t", "0", name, check=False)


def _wait(engine: Engine, name: str, password: str) -> FallbackServer:
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        state = engine.run("container", "inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state in ("exited", "stopped", "dead"):
            logs = engine.run("logs", "--tail", "20", name, check=False)
            pytest.fail(
                f"the composite image stopped while starting PostgreSQL: {(logs.stdout + logs.stderr)[-1500:]}",
                pytrace=False,
            )
        ports = engine.run("port", name, "5432/tcp", check=False).stdout.split()
        port = next((int(p.rpartition(":")[2]) for p in ports if p.startswith("127.0.0.1:")), None)
        if port:
            server = FallbackServer(name, port, password)
            try:
                with server.connect() as conn:
                    conn.execute("SELECT 1")
                return server
            except psycopg.Error as exc:
                last = " ".join(str(exc).split())[:200]
        time.sleep(0.25)
    pytest.fail(f"PostgreSQL in {name} did not accept connections within {START_TIMEOUT:.0f}s: {last}", pytrace=False)


# -- the image ------------------------------------------------------------------------------------------
def test_extension_files_are_in_libdir_and_system_owned_by_uid_26(
    engine: Engine, fallback_image: str, platform_image: PlatformImage
) -> None:
    wanted = []
    for entry in platform_image.files:
        if entry.type != FileType.FILE:
            continue
        if entry.path.startswith("/lib/"):
            wanted.append(f"{PG_LIBDIR}/{entry.path[len('/lib/') :]}")
        elif entry.path.startswith("/share/extension/"):
            wanted.append(f"{PG_SHAREDIR}/extension/{entry.path[len('/share/extension/') :]}")
    assert wanted, "the extension image has no files under /lib or /share/extension"
    out = engine.run(
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0",
        *ulimit_args(engine, fallback_image),
        "--entrypoint",
        "stat",
        fallback_image,
        "-c",
        "%u:%g %n",
        *wanted,
    ).stdout
    owners = dict(line.split(" ", 1)[::-1] for line in out.splitlines() if line.strip())
    wrong = {path: owner for path, owner in owners.items() if owner != f"{CNPG_POSTGRES_UID}:{CNPG_POSTGRES_UID}"}
    assert set(owners) == set(wanted), f"missing in the composite image: {sorted(set(wanted) - set(owners))}"
    assert not wrong, f"not owned by {CNPG_POSTGRES_UID}:{CNPG_POSTGRES_UID}: {wrong}"


# -- postgres as UID 26 loads it --------------------------------------------------------------------------
def test_postgres_runs_as_uid_26(engine: Engine, fallback_server: FallbackServer) -> None:
    uid = engine.run("exec", fallback_server.name, "stat", "-c", "%u", "/proc/1").stdout.strip()
    assert uid == str(CNPG_POSTGRES_UID), f"postgres runs as UID {uid}, CloudNativePG runs it as 26"


def test_create_extension_from_system(
    fallback_server: FallbackServer,
    image_under_test: ImageUnderTest,
    platform_image: PlatformImage,
    harness_config: HarnessConfig,
) -> None:
    from extharness.inspect.extension import describe

    ext = image_under_test.name
    control = describe(platform_image, ext).control
    expected = harness_config.expect_version or (control.default_version if control else None)
    with fallback_server.connect() as conn:
        available = sqlchecks.available_extension(conn, ext)
        assert available, f"{ext} is not in pg_available_extensions: the composite's $system lacks its control file"
        try:
            sqlchecks.create_extension(conn, ext)
        except psycopg.Error as exc:
            pytest.fail(sqlchecks.explain_create_failure(sqlchecks.error_text(exc), ext), pytrace=False)
        installed = sqlchecks.installed_extension(conn, ext)
    assert installed is not None
    if expected:
        assert installed["version"] == expected


def test_preloaded_background_workers_run(fallback_server: FallbackServer, cnpg_profile: Profile | None) -> None:
    if not cnpg_profile or not cnpg_profile.background_workers:
        pytest.skip("no profile naming background workers for this extension (--ext-profile)")
    with fallback_server.connect() as conn:
        missing = sqlchecks.wait_for_backend_types(conn, cnpg_profile.background_workers)
    assert not missing, f"background workers not running: {missing}"


def test_smoke_sql(
    fallback_server: FallbackServer, cnpg_profile: Profile | None, image_under_test: ImageUnderTest
) -> None:
    if not cnpg_profile or not cnpg_profile.smoke:
        pytest.skip("no profile with smoke SQL for this extension (--ext-profile)")
    with fallback_server.connect() as conn:
        if sqlchecks.installed_extension(conn, image_under_test.name) is None:
            sqlchecks.create_extension(conn, image_under_test.name)
        results = sqlchecks.run_smoke(conn, cnpg_profile.smoke)
    failed = [r.describe() for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def test_the_fallback_cluster_on_this_image_passes_cnpg_rules(
    fallback_image: str, image_under_test: ImageUnderTest, cnpg_profile: Profile | None
) -> None:
    from extharness.kube.deploy import render, spec_for
    from extharness.kube.imagevolume import FALLBACK
    from extharness.kube.manifests import check_cluster

    cluster, _ = render(
        spec_for(FALLBACK, extension=image_under_test.name, operand_image=fallback_image, profile=cnpg_profile)
    )
    report = check_cluster(cluster)
    assert report.ok, str(report)  # e.g. CNPG reads the PostgreSQL major from the image tag
