"""Fixtures of the sql tier: backends, servers and databases, made once and always cleaned up.

Every test that takes ``backend`` runs once per backend ``--pg-backend`` selects (ids
``native``, ``composite``, ``imagevolume``). With ``auto`` (the default) a backend this
machine cannot run skips with one line saying why; a backend asked for by name fails
instead. The expensive parts (template data directory, composite image, stand-in images)
are made once per session; servers are shared per backend, databases are per test.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

from extharness.checks.findings import Finding
from extharness.config import HarnessConfig
from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.extension import ExtensionLayout, describe
from extharness.inspect.model import ExtensionImage, PlatformImage
from extharness.postgres.backend_summary import BACKENDS
from extharness.postgres.mount import ImageVolumeMount
from extharness.postgres.profiles import Profile, load_profile, profile_for_extension
from extharness.postgres.server import RunningServer
from extharness.postgres.sqlchecks import CreateFailed, install_extension, sql_finding
from extharness.pytest_plugin import (
    NO_UPGRADE_FROM,
    NO_UPGRADE_FROM_REASON,
    FindingRecorder,
    ImageUnderTest,
    harness_config_of,
    harness_step,
    image_under_test_of,
    read_previous_release,
    upgrade_source_id,
    upgrade_source_label,
    upgrade_sources,
)

SELECTIONS = {
    "auto": BACKENDS,
    "all": BACKENDS,
    "native": ("native",),
    "composite": ("composite",),
    "imagevolume": ("imagevolume",),
    "container": ("composite", "imagevolume"),
}


# -- what is checked ---------------------------------------------------------------------------------------
@dataclass
class SqlTarget:
    """The extension under test as the sql tier sees it."""

    name: str
    layout: ExtensionLayout
    profile: Profile | None
    mount_name: str  # /extensions/<mount_name> (CNPG's extension name)
    ld_library_paths: list[str] = field(default_factory=list)

    @property
    def default_version(self) -> str | None:
        return self.layout.control.default_version if self.layout.control else None

    @property
    def library(self) -> str | None:
        """The bare library name ``module_pathname`` names (what shared_preload_libraries takes)."""
        path, _problem = self.layout.module_library()
        return path.rsplit("/", 1)[-1].removesuffix(".so") if path else None

    @property
    def preload(self) -> list[str]:
        if self.profile and self.profile.preload:
            return list(self.profile.preload)
        return [self.library] if self.library else []

    @property
    def settings(self) -> dict[str, str]:
        return dict(self.profile.settings) if self.profile else {}


def platform_image(image: ExtensionImage, platform: str) -> PlatformImage:
    return image.for_platform(platform) or image.images[0]


def resolve_target(iut: ImageUnderTest, harness: HarnessConfig) -> SqlTarget:
    profile = load_profile(harness.profile) if harness.profile else profile_for_extension(iut.name)
    if profile is not None and profile.extension != iut.name:
        raise HarnessError(f"profile {profile.name} is for extension {profile.extension}, the image holds {iut.name}")
    image = platform_image(iut.image, harness.request.platform)
    layout = describe(image, iut.name)
    if layout.control is None:
        raise HarnessError(
            f"{iut.acquired.description}: no usable /share/extension/{iut.name}.control "
            f"({layout.control_error}); is this the {iut.name} image?"
        )
    ld = (
        list(profile.ld_library_path)
        if profile and profile.ld_library_path
        else (["system"] if any(f.path.startswith("/system/") for f in image.files) else [])
    )
    return SqlTarget(iut.name, layout, profile, profile.cnpg_name if profile else iut.name, ld)


@pytest.fixture(scope="session")
def target(image_under_test: ImageUnderTest, harness_config: HarnessConfig) -> SqlTarget:
    return harness_step("reading the extension profile", lambda: resolve_target(image_under_test, harness_config))


@pytest.fixture(scope="session")
def extension_mount(target: SqlTarget) -> Iterator[ImageVolumeMount]:
    """The image's files in a read-only folder that plays /extensions/<name>; checked untouched at the end."""
    with ImageVolumeMount(target.layout.image, target.mount_name) as mount:
        yield mount
        changes = mount.changes()
        assert not changes, f"something wrote under {mount.path} (mounted read-only in CNPG): {'; '.join(changes)}"


# -- backends ----------------------------------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        _parametrize_backend(metafunc)
    if "upgrade_source" in metafunc.fixturenames:
        sources = upgrade_sources(harness_config_of(metafunc.config))
        metafunc.parametrize("upgrade_source", sources, ids=[upgrade_source_id(s) for s in sources], scope="session")
    if "update_pair" in metafunc.fixturenames:
        pairs = _update_pairs(metafunc.config)
        metafunc.parametrize("update_pair", pairs, ids=[p if isinstance(p, str) else f"{p[0]}-{p[1]}" for p in pairs])


def _parametrize_backend(metafunc: pytest.Metafunc) -> None:
    choice = harness_config_of(metafunc.config).pg_backend
    names = SELECTIONS[choice]
    if metafunc.definition.get_closest_marker("mounted_backends_only") is not None:
        names = tuple(n for n in names if n != "composite")  # the check is about a mounted folder: composite has none
        if not names:
            reason = f"about the mounted extension folder, which --pg-backend {choice} (composite) does not have"
            metafunc.parametrize("backend", [pytest.param("composite", marks=pytest.mark.skip(reason=reason))])
            return
    metafunc.parametrize("backend", names, indirect=True, scope="session")


def _update_pairs(config: pytest.Config) -> list:
    """(from, to) pairs of the image's update scripts, read at collection time.

    The image is the session's one (``image_under_test_of``: read once per process); if getting
    it fails here, one placeholder test runs and fails through the fixtures with the real error.
    """
    try:
        iut = image_under_test_of(config)
        harness = harness_config_of(config)
        layout = describe(platform_image(iut.image, harness.request.platform), iut.name)
    except HarnessError:  # reported by the fixtures, with the harness's own message
        return ["image-unreadable"]
    pairs = [(a, b) for a, b, _path in layout.scripts.update_pairs()]
    if not pairs:
        return ["no-update-scripts"]
    # Paths from versions this image cannot install are reported once, grouped
    # (test_upgrades.py::test_unreplayable_update_paths), not as one skip each.
    return [(a, b) for a, b in pairs if layout.scripts.install_path(a) is not None] or ["none-replayable"]


@pytest.fixture(scope="session")
def old_release(upgrade_source: str, harness_config: HarnessConfig, target: SqlTarget) -> ImageUnderTest:
    """The release users upgrade from (--upgrade-from, or the sample's 1.0), acquired and read."""
    if upgrade_source == NO_UPGRADE_FROM:
        pytest.skip(NO_UPGRADE_FROM_REASON)
    return harness_step(  # type: ignore[return-value]
        f"getting the release to upgrade from ({upgrade_source})",
        lambda: read_previous_release(upgrade_source, harness_config, target.name),
    )


@pytest.fixture(scope="session")
def upgrade_run(
    backend, old_release: ImageUnderTest, upgrade_source: str, target: SqlTarget, harness_config: HarnessConfig
):
    """The old release installed, its data written, the candidate swapped in and updated to: what was
    seen, or why the run broke off (kept, not raised: ``image_upgrade`` reports it once)."""
    from extharness.postgres.upgrade import replay_upgrade, stages_for

    old_image = platform_image(old_release.image, harness_config.request.platform)
    old_layout = describe(old_image, target.name)
    if old_layout.control is None:
        pytest.fail(
            f"{old_release.acquired.description}: no usable {target.name}.control ({old_layout.control_error})",
            pytrace=False,
        )
    label = upgrade_source_label(upgrade_source)

    def run():
        with stages_for(
            backend,
            old_release,
            old_image,
            target.layout.image,
            target.mount_name,
            target.settings,
            target.preload,
            harness_config,
        ) as (start_old, swap, start_new):
            return replay_upgrade(
                start_old,
                swap,
                start_new,
                old=label,
                old_layout=old_layout,
                new_layout=target.layout,
                profile=target.profile,
                preload=target.preload,
            )

    missing: str | None = None
    started = time.monotonic()
    try:
        record = run()
        record.seconds = time.monotonic() - started
        return record
    except EnvironmentMissing as exc:
        missing = str(exc)
    except HarnessError as exc:
        return SetupFailed(f"upgrading from {label}: {exc}")
    pytest.skip(missing)  # a tool this machine lacks, as harness_step has it


@pytest.fixture
def image_upgrade(upgrade_run, upgrade_source: str, sql_findings: SqlFindings, request: pytest.FixtureRequest):
    """What the upgrade run saw; if it broke off, the first test fails with a ``sql.upgrade.run``
    finding and the later ones skip naming it."""
    if not isinstance(upgrade_run, SetupFailed):
        return upgrade_run
    upgrade_run.report_once(request, sql_findings, f"the upgrade from {upgrade_source}", "sql.upgrade.run")
    sql_findings.fail("sql.upgrade.run", upgrade_source, upgrade_run.reason)


@pytest.fixture(scope="session")
def backend(
    request: pytest.FixtureRequest,
    harness_config: HarnessConfig,
    image_under_test: ImageUnderTest,
    target: SqlTarget,
    extension_mount: ImageVolumeMount,
):
    """One PostgreSQL backend, checked for availability and prepared (template, images) once."""
    from extharness.postgres.janitor import remove_own_stopped, sweep_stale

    sweep_stale()  # what killed runs left behind
    try:
        yield from _backend(request, harness_config, image_under_test, target, extension_mount)
    finally:
        remove_own_stopped()  # throw-away containers an interrupt caught between create and remove


def _backend(request, harness_config, image_under_test, target, extension_mount):
    name = request.param
    if name == "native":
        from extharness.postgres.native import NativeBackend

        made = NativeBackend(
            extension_mount.path,
            harness_config.cache_dir,
            target.layout,
            harness_config.request.pg_config,
            target.ld_library_paths,
        )
    elif name == "composite":
        from extharness.postgres.containers import CompositeBackend

        made = CompositeBackend(
            harness_config.pg_image, extension_mount, harness_config.cache_dir, target.ld_library_paths
        )
    else:
        from extharness.postgres.containers import ImageVolumeBackend

        made = ImageVolumeBackend(
            harness_config.operand_image,
            extension_mount,
            harness_config.cache_dir,
            image_under_test.acquired.engine_ref,
            target.ld_library_paths,
        )
    reason = made.available()
    if reason:
        if harness_config.pg_backend == "auto":
            _unavailable[name] = reason
            pytest.skip(reason)
        pytest.fail(
            f"--pg-backend {harness_config.pg_backend} asks for the {name} backend, which cannot run here: {reason}",
            pytrace=False,
        )
    try:
        harness_step(f"preparing the {name} backend", made.prepare)
        yield made
    finally:
        close = getattr(made, "close", None)
        if close:
            close()


_unavailable: dict[str, str] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """One skip line per unavailable backend (not one per test) in the -ra summary."""
    report = yield
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("backend") if callspec else None
    if report.skipped and call.when == "setup" and name in _unavailable and isinstance(report.longrepr, tuple):
        report.longrepr = (__file__, 0, f"{name} backend: {_unavailable[name]}")
    return report


def _started(backend, stack: ExitStack, what: str, settings: dict[str, str], preload: list[str]) -> RunningServer:
    return harness_step(
        f"starting {what} ({backend.name})", lambda: stack.enter_context(backend.start(settings, preload))
    )


@pytest.fixture(scope="session")
def server(backend, target: SqlTarget) -> Iterator[RunningServer]:
    """A server with CNPG's settings and the profile's, without preload; shared by the backend's tests."""
    with ExitStack() as stack:
        yield _started(backend, stack, "PostgreSQL", target.settings, [])


@pytest.fixture(scope="session")
def preloaded(backend, target: SqlTarget) -> Iterator[RunningServer | SetupFailed]:
    """The backend's server with shared_preload_libraries set, or why it did not start (kept, not
    raised: ``preload_server`` reports it once as a finding)."""
    if not target.preload:
        pytest.skip(f"{target.name} has no library to preload (no module_pathname, no profile preload)")
    with ExitStack() as stack:
        missing: str | None = None
        try:
            server: RunningServer | SetupFailed = stack.enter_context(backend.start(target.settings, target.preload))
        except EnvironmentMissing as exc:
            missing = str(exc)
        except HarnessError as exc:
            server = SetupFailed(str(exc))
        if missing is not None:  # a tool this machine lacks: a skip, as harness_step makes it
            pytest.skip(missing)
        yield server


@pytest.fixture
def preload_server(
    preloaded: RunningServer | SetupFailed,
    target: SqlTarget,
    sql_findings: SqlFindings,
    request: pytest.FixtureRequest,
) -> RunningServer:
    """A server with shared_preload_libraries set to the extension's bare library name(s).

    If it cannot start, the first test that needs it fails with a ``sql.preload`` finding; the
    later ones skip naming it (a root cause is reported once)."""
    if isinstance(preloaded, RunningServer):
        return preloaded
    subject = f"shared_preload_libraries={','.join(target.preload)}"
    preloaded.report_once(request, sql_findings, f"the server with {subject}", "sql.preload")
    sql_findings.fail("sql.preload", subject, f"the server did not start: {preloaded.reason}")


@pytest.fixture
def profile_server(backend, target: SqlTarget, request: pytest.FixtureRequest) -> RunningServer:
    """Where the profile's SQL runs: preloaded when the profile preloads (as its Cluster would be).

    Function-scoped on purpose: it picks one of the backend's session servers per test.
    """
    if target.profile and target.profile.preload:
        return request.getfixturevalue("preload_server")
    return request.getfixturevalue("server")


# -- databases ---------------------------------------------------------------------------------------------
@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[Callable[[RunningServer], str]]:
    """Factory: a fresh database on a server, dropped after the test."""
    made: list[tuple[RunningServer, str]] = []

    def make(srv: RunningServer) -> str:
        name = f"xh_{request.node.name[:30].lower().strip('_')}_{secrets.token_hex(3)}"
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
        with srv.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append((srv, name))
        return name

    yield make
    for srv, name in made:
        try:
            with srv.connect() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.Error:
            pass  # the server is going away anyway


# -- findings ----------------------------------------------------------------------------------------------
@dataclass
class SetupFailed:
    """A backend's shared step (a server, an upgrade run) that failed: why, and the test that said so.

    Session fixtures keep it instead of raising (pytest would raise the same error in every
    test that uses them); a function fixture reports it once (``report_once``)."""

    reason: str
    reported_by: str | None = None

    def report_once(self, request: pytest.FixtureRequest, findings: SqlFindings, what: str, rule: str) -> None:
        """Skip, naming the finding, when a test reported this already; else let this test report it."""
        if self.reported_by is not None:
            pytest.skip(
                f"needs {what}, which failed on the {findings.backend} backend: {rule} "
                f"(reported once, by {self.reported_by})"
            )
        self.reported_by = request.node.nodeid


@dataclass
class SqlFindings:
    """A test's failing sql checks, as findings (``sqlchecks.RULES``) that name the backend."""

    recorder: FindingRecorder
    backend: str | None

    def finding(self, rule: str, subject: str, message: str) -> Finding:
        return sql_finding(rule, subject, message, self.backend)

    def fail(self, rule: str, subject: str, message: str) -> NoReturn:
        """Record the finding, then fail the test with it (one line, no traceback)."""
        self.recorder.fail(self.finding(rule, subject, message))


@pytest.fixture
def sql_findings(harness_findings: FindingRecorder, request: pytest.FixtureRequest) -> SqlFindings:
    callspec = getattr(request.node, "callspec", None)
    return SqlFindings(harness_findings, callspec.params.get("backend") if callspec else None)


#: backend name -> (the sql.create finding of CREATE EXTENSION at the default version, the test that made it).
#: Per process: with -n N each worker reports it once.
_not_installable: dict[str, tuple[Finding, str]] = {}


@dataclass
class Installer:
    """``install(conn, version=None, schema=None)``: CREATE EXTENSION, or a ``sql.create`` finding.

    A root cause is reported once: when the extension cannot be created at its default version
    on a backend, the later tests there that need it skip with one line naming that finding."""

    target: SqlTarget
    findings: SqlFindings
    nodeid: str

    def require(self) -> None:
        """Skip when this backend could not create the extension earlier in the session."""
        known = _not_installable.get(self.findings.backend or "")
        if known is not None:
            finding, where = known
            pytest.skip(
                f"needs {self.target.name} installed, which failed on the {self.findings.backend} backend: "
                f"{finding.rule} {finding.path} (reported once, by {where})"
            )

    def __call__(self, conn: psycopg.Connection, version: str | None = None, schema: str | None = None) -> None:
        if version is None:
            self.require()
        try:
            install_extension(conn, self.target.name, self.target.layout, version, schema)
            return
        except CreateFailed as exc:
            finding = self.findings.finding("sql.create", exc.statement, exc.reason)
        # outside the except block, so the report shows the finding, not a chained traceback
        if version is None and schema is None and self.findings.backend:
            _not_installable.setdefault(self.findings.backend, (finding, self.nodeid))
        self.findings.recorder.fail(finding)


@pytest.fixture
def install(target: SqlTarget, sql_findings: SqlFindings, request: pytest.FixtureRequest) -> Installer:
    return Installer(target, sql_findings, request.node.nodeid)
