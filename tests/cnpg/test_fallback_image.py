"""The fallback path's composite operand image, built and run with the local engine (no cluster).

Where a cluster cannot mount image volumes the cnpg tier deploys CNPG's operand image with the
extension's files copied into ``$libdir``/``$system``, owned by UID 26. This is that image,
built exactly as the kind path builds it (offline: on the minimal operand stand-in), started
as UID 26 the way a CNPG instance runs postgres, and checked with the sql tier's functions.
Skips with one line without podman or docker: every test here is on that image, built from the
image under test (the name the harness gives it is tested without an engine in
``tests/unit/kube/test_manifest_rules.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import psycopg
import pytest

from extharness.config import HarnessConfig
from extharness.inspect.model import FileType, PlatformImage
from extharness.kube.deploy import CNPG_POSTGRES_UID, build_fallback_operand
from extharness.kube.manifests import split_settings
from extharness.postgres import sqlchecks
from extharness.postgres.containers import PG_LIBDIR, PG_SHAREDIR, data_template, postgres_as_uid, ulimit_args
from extharness.postgres.mount import ImageVolumeMount
from extharness.postgres.profiles import Profile
from extharness.postgres.server import THROWAWAY_SETTINGS, RunningServer, unique_name
from extharness.pytest_plugin import ImageUnderTest, harness_step
from extharness.source.engine import NO_ENGINE, Engine, detect_engine


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


@pytest.fixture(scope="module")
def fallback_server(
    engine: Engine, fallback_image: str, cnpg_profile: Profile | None, harness_config: HarnessConfig
) -> Iterator[RunningServer]:
    """The composite image's postgres run as UID 26, as a CNPG instance runs it, with the
    Cluster's preload and parameters (the sql tier's container mechanism, no mount)."""
    preload, parameters = split_settings(
        cnpg_profile.settings if cnpg_profile else {}, cnpg_profile.preload if cnpg_profile else ()
    )
    name = unique_name("cnpg-fallback")
    settings = {**THROWAWAY_SETTINGS, **parameters, "cluster_name": name}
    settings.update(unix_socket_directories="/tmp", listen_addresses="*")
    if preload:
        settings["shared_preload_libraries"] = ",".join(preload)
    template = harness_step(
        "initialising a data directory in the composite image",
        lambda: data_template(engine, fallback_image, CNPG_POSTGRES_UID, harness_config.cache_dir),
    )
    with ExitStack() as stack:  # the container is removed when the module's tests are done
        server = harness_step(
            "starting the fallback composite image as UID 26",
            lambda: stack.enter_context(
                postgres_as_uid(
                    engine,
                    fallback_image,
                    CNPG_POSTGRES_UID,
                    template,  # type: ignore[arg-type]
                    name,
                    settings,
                    backend="cnpg-fallback",
                    preload=preload,
                    description=f"{fallback_image} as UID {CNPG_POSTGRES_UID}",
                )
            ),
        )
        yield server  # type: ignore[misc]


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
def test_postgres_runs_as_uid_26(fallback_server: RunningServer) -> None:
    uid = fallback_server.run_tool(["stat", "-c", "%u", "/proc/1"]).stdout.decode().strip()
    assert uid == str(CNPG_POSTGRES_UID), f"postgres runs as UID {uid}, CloudNativePG runs it as 26"


def test_create_extension_from_system(
    fallback_server: RunningServer,
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


def test_preloaded_background_workers_run(fallback_server: RunningServer, cnpg_profile: Profile | None) -> None:
    if not cnpg_profile or not cnpg_profile.background_workers:
        pytest.skip("no profile naming background workers for this extension (--ext-profile)")
    with fallback_server.connect() as conn:
        missing = sqlchecks.wait_for_backend_types(conn, cnpg_profile.background_workers)
    assert not missing, f"background workers not running: {missing}"


def test_smoke_sql(
    fallback_server: RunningServer, cnpg_profile: Profile | None, image_under_test: ImageUnderTest
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
    fallback_image: str, image_under_test: ImageUnderTest, cnpg_profile: Profile | None, harness_findings
) -> None:
    from extharness.kube.deploy import render, spec_for
    from extharness.kube.imagevolume import FALLBACK
    from extharness.kube.manifests import check_cluster

    cluster, _ = render(
        spec_for(FALLBACK, extension=image_under_test.name, operand_image=fallback_image, profile=cnpg_profile)
    )
    # e.g. cnpg.manifest.image-tag: CNPG reads the PostgreSQL major from the image tag
    harness_findings.check(check_cluster(cluster).findings)
