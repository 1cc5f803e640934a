"""The pytest wiring, kept thin: options, session fixtures, findings output.

Loaded by the repository's root ``conftest.py``. Everything substantial lives in the
``source``/``inspect``/``checks``/``postgres``/``kube`` packages.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from extharness.checks.findings import Finding, Severity, grouped_findings, summary_lines
from extharness.checks.run import layouts_of, run_rule
from extharness.checks.target import LayoutTarget
from extharness.config import ACTIVATE_INI, OPTIONS, HarnessConfig, is_active, options_help
from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.extension import ExtensionLayout
from extharness.inspect.operand import OperandProfile, baseline_profile, probe_operand
from extharness.source.acquire import ImageRequest, OpenedImage, open_image
from extharness.source.engine import detect_engine, installed_engine

FINDINGS_KEY = "extharness_findings"

# The fixture factories' module (extharness.fixtures) is a plugin too: its `layout_check` fixture
# is then there in every session, like the fixtures below. Imported by pytest after this module.
pytest_plugins = ["extharness.fixtures"]


class HarnessFindingWarning(UserWarning):
    """A finding of severity warning: the test passes, the report shows it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("extharness", "extension image harness (env EXTHARNESS_<NAME>, ini extharness_<name>)")
    for option in OPTIONS:
        extra: dict = {}
        if option.kind == "switch":
            extra["action"] = "store_true"
        elif option.kind == "list":
            extra["action"] = "append"
        elif option.kind == "number":
            extra["type"] = float
        if option.choices:
            extra["choices"] = list(option.choices)
        default = f" (default {option.default})" if option.default not in (None, (), False) else ""
        # default=None: whether an option was given is then plain to see, also when the value
        # given equals the default (an explicit --builder auto beats EXTHARNESS_BUILDER)
        group.addoption(
            option.flag, dest=option.dest, default=None, help=f"{option.help}{default} [env {option.env}]", **extra
        )
        parser.addini(
            option.ini,
            f"extharness: {option.help} (as {option.flag})",
            type="linelist" if option.kind == "list" else "string",
            default=[] if option.kind == "list" else "",
        )
    parser.addini(ACTIVATE_INI, "switch the extension image harness on in this project", type="bool", default=False)


def _sources_if_active(config: pytest.Config) -> tuple[dict, dict] | None:
    """(command-line values, ini values) when the harness is switched on in this session, else None."""
    cli = {o.dest: config.getoption(o.dest) for o in OPTIONS}
    ini = {o.dest: config.getini(o.ini) for o in OPTIONS}
    try:
        switched_on = bool(config.getini(ACTIVATE_INI))
    except ValueError:
        raise pytest.UsageError(f"extharness: ini {ACTIVATE_INI}: expected true or false") from None
    return (cli, ini) if is_active(cli, ini, switched_on) else None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``--help`` where the harness is on (``./harness check --help``): its own options first."""
    if config.option.help and _sources_if_active(config) is not None:
        sys.stdout.write(options_help() + "\npytest's options follow.\n\n")
        sys.stdout.flush()


_LOADGROUP = "extharness_loadgroup"


def _group_expensive_tests(config: pytest.Config) -> None:
    """With ``-n N``, keep each ``xdist_group`` on one worker (a module's CNPG deployment, the
    kit's clusters): xdist's default ``--dist load`` ignores the marks and would make one
    deployment per worker. Not in ``addopts``: ``--dist`` is unknown to ``-p no:xdist`` runs.

    Both sides must agree: the controller schedules by group, and each worker (which re-reads
    the command line, so sees ``load``) must tag its test ids with the group, told through
    ``workerinput`` (``pytest_configure_node``)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get(_LOADGROUP):
            config.option.loadgroup = True
        return
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", None) == "load":
        config.option.dist = "loadgroup"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a worker, after xdist tagged the ids: say so when grouping did not take (pytest 9.2
    with pytest-xdist 3.8, pytest-xdist#1386); the tests still run, shared things once per worker."""
    if not (getattr(config, "workerinput", None) and getattr(config.option, "loadgroup", False)):
        return
    grouped = [item for item in items if item.get_closest_marker("xdist_group") is not None]
    if grouped and "@" not in grouped[0].nodeid.split("::")[-1]:
        warnings.warn(
            pytest.PytestWarning(
                f"extharness: xdist_group marks are ignored by this pytest {pytest.__version__} and pytest-xdist "
                "(pytest-xdist#1386): grouped tests spread over workers, and what a group shares is made once "
                "per worker (use pytest<9.2, or -p no:xdist)"
            ),
            stacklevel=1,
        )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller, before a worker starts: pass the grouping on."""
    if node.config.getvalue("dist") == "loadgroup":
        node.workerinput[_LOADGROUP] = True


def pytest_configure(config: pytest.Config) -> None:
    sources = _sources_if_active(config)
    if sources is None:
        return  # not asked for here: no markers, no signal handlers, no environment read
    cli, ini = sources
    config.stash[_ACTIVE] = True
    for marker, text in (
        ("layout", "image contents, metadata, binaries and control files (no engine needed)"),
        ("sql", "the extension in real PostgreSQL 18 (native, composite and ImageVolume backends)"),
        ("cnpg", "deployment to Kubernetes with the CloudNativePG operator"),
        ("unit", "tests of the harness itself"),
        ("kit", "the harness on real clusters built by the cluster kit (./harness cluster)"),
        ("mounted_backends_only", "sql-tier check about the mounted folder (not generated for the composite backend)"),
        ("xdist_group(name)", "run these tests on one xdist worker (known here too for runs with -p no:xdist)"),
    ):
        config.addinivalue_line("markers", f"{marker}: {text}")
    # The plugin, not pyproject.toml, is the one source of markers: with `--ext-artifacts DIR`
    # outside the repository pytest takes DIR for a path when it looks for its ini file, finds
    # none there, and would otherwise not know them.
    if config.option.help or getattr(config.option, "markers", False):
        return  # help works whatever the settings say
    _handle_sigterm(config)
    _group_expensive_tests(config)
    try:
        harness = HarnessConfig.from_sources(cli, os.environ, ini)
        harness.request.validate()
        config.stash[_CONFIG] = harness
        _check_image_up_front(config, harness)
    except HarnessError as exc:
        raise pytest.UsageError(f"extharness: {exc}") from None
    _refuse_option_value_taken_for_a_path(config)  # after the values' own checks: a bad folder is said first
    config.stash[_FINDINGS] = []


def _refuse_option_value_taken_for_a_path(config: pytest.Config) -> None:
    """``--ext-artifacts DIR`` (a space, DIR outside the project): pytest looks for its ini file
    before any plugin's options are known, takes DIR for a test path, and settles on DIR as its
    rootdir with no ini file (no addopts, no timeout, odd test ids). Said once, with the fix,
    when the ini file pytest chose is not the one the real test paths give."""
    try:
        from _pytest.config.findpaths import determine_setup  # pytest's own rule, not a copy of it

        expected = determine_setup(
            inifile=config.known_args_namespace.inifilename,
            override_ini=config.known_args_namespace.override_ini,
            args=config.known_args_namespace.file_or_dir,
            rootdir_cmd_arg=config.known_args_namespace.rootdir or None,
            invocation_dir=config.invocation_params.dir,
        )
    except (ImportError, TypeError, AttributeError):  # another pytest's internals: no check
        return
    if expected[0] == config.rootpath and expected[1] == config.inipath:
        return
    args = list(config.invocation_params.args)
    flags = {option.flag for option in OPTIONS}
    taken = [f"{a}={b}" for a, b in itertools.pairwise(args) if a in flags and not b.startswith("-")]
    if not taken:
        return
    raise pytest.UsageError(
        f"extharness: pytest took the value of {', '.join(t.split('=')[0] for t in taken)} for a test path and "
        f"chose {config.rootpath} as its rootdir ({'no ini file' if config.inipath is None else config.inipath}) "
        f"instead of {expected[0]} ({expected[1] or 'no ini file'}): pytest reads its ini file before it knows "
        f"plugins' options; write {' '.join(taken)} (with '=')"
    )


INACTIVE = (
    "extharness is not switched on in this session: give an extharness option (e.g. --ext-image REF) "
    f"or set `{ACTIVATE_INI} = true` in the pytest ini file"
)


def is_active_session(config: pytest.Config) -> bool:
    return config.stash.get(_ACTIVE, False)


def harness_config_of(config: pytest.Config) -> HarnessConfig:
    """The session's config, built once per process in ``pytest_configure``."""
    harness = config.stash.get(_CONFIG, None)
    if harness is None:
        raise pytest.UsageError(INACTIVE)
    return harness


def _handle_sigterm(config: pytest.Config) -> None:
    """SIGTERM (CI cancelling a job, ``kill``, ``timeout``) ends the session like Ctrl-C: as a
    KeyboardInterrupt, so every ``finally`` and fixture teardown runs and removes servers,
    containers, clusters and temporary folders. (Python's default for SIGTERM is to die on the
    spot, cleaning nothing.)

    With pytest-xdist, a signal that reaches the controller alone is passed on to its workers at
    once: otherwise execnet interrupts them only 5 s later and kills them 5 s after that, often in
    the middle of their cleanup. A worker ignores further signals once interrupted (the one
    passed on, execnet's own), so they cannot cut its cleanup short either.
    """
    worker = hasattr(config, "workerinput")
    interrupted = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal interrupted
        if worker and interrupted:
            return
        interrupted = True
        if not worker and config.pluginmanager.has_plugin("dsession"):  # an xdist controller
            _pass_on_to_workers(signal.SIGTERM)
        raise KeyboardInterrupt(f"signal {signum} ({signal.Signals(signum).name})")

    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread (an embedding runner): leave signals alone
        return
    config.add_cleanup(lambda: [signal.signal(sig, handler) for sig, handler in previous.items()])


def _pass_on_to_workers(sig: signal.Signals) -> None:
    """Signal this process's children running this Python (pytest-xdist workers)."""
    me, python = os.getpid(), os.path.realpath(sys.executable)
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == me and os.path.realpath(entry / "exe") == python:
                os.kill(int(entry.name), sig)
        except (OSError, ValueError, IndexError):
            continue


_ACTIVE = pytest.StashKey[bool]()
_CONFIG = pytest.StashKey[HarnessConfig]()
_FINDINGS = pytest.StashKey[list]()
_IMAGE = pytest.StashKey["ImageUnderTest | HarnessError"]()


def _check_image_up_front(config: pytest.Config, harness: HarnessConfig) -> None:
    """Check --ext-image now: read an oci:/oci-archive:/docker-archive: image (digests verified),
    or ask the engine for an image name.

    A corrupt, truncated or mislabelled archive, or an unknown image, is then one usage
    error, not the same failure repeated by every test of the session. An image read here is
    the session's image: it is not read again (``image_under_test_of``).
    """
    from extharness.source.acquire import READER_SCHEMES, looks_like_registry_reference

    image = harness.request.image
    if image and not image.startswith(READER_SCHEMES) and not looks_like_registry_reference(image):
        engine = detect_engine()  # an engine image name: the engine must have it
        if engine is None or not engine.image_exists(image):
            where = f"{engine.kind} has no image {image!r}" if engine else "no container engine to look it up"
            raise HarnessError(
                f"--ext-image {image}: {where}; give oci:DIR, oci-archive:FILE, docker-archive:FILE "
                "or a registry reference like ghcr.io/owner/name:tag"
            )
    if image and image.startswith(READER_SCHEMES):
        image_under_test_of(config)  # raises the reader's HarnessError as a usage error


def image_under_test_of(config: pytest.Config) -> ImageUnderTest:
    """The session's image, acquired (built, saved, pulled), read and chosen once per process.

    Collection (the sql tier's update pairs), the fixtures and the up-front check all come here,
    so an image is read once; a failure is kept too and raised again to every later caller.
    """
    memo = config.stash.get(_IMAGE, None)
    if memo is None:
        try:
            memo = _get_image_under_test(harness_config_of(config))
        except HarnessError as exc:  # EnvironmentMissing included: the fixtures turn it into a skip
            memo = exc
        config.stash[_IMAGE] = memo
    if isinstance(memo, HarnessError):
        raise memo
    return memo


def _get_image_under_test(harness: HarnessConfig) -> ImageUnderTest:
    return read_requested_image(
        harness.request, harness.cache_dir, harness.request.ext_name or _profile_extension(harness)
    )


def read_requested_image(request: ImageRequest, cache_dir: Path, wanted: str | None) -> ImageUnderTest:
    """Any image request (the one under test, a release to upgrade from) acquired and read."""
    return open_image(request, cache_dir, wanted)


# -- the release users upgrade from (sql and cnpg tiers) ------------------------------------------------
#: The built-in sample's previous release, the old image when no --upgrade-from is given.
SAMPLE_PREVIOUS = "sample-release:1.0"
NO_UPGRADE_FROM = "no-upgrade-from"
NO_UPGRADE_FROM_REASON = (
    "no previous release to upgrade from: give --upgrade-from REF (the last released image or release folder)"
)


def upgrade_sources(harness: HarnessConfig) -> list[str]:
    """The old releases of an image-to-image upgrade: --upgrade-from, else the sample's 1.0 for
    the built-in sample, else a placeholder whose tests skip with :data:`NO_UPGRADE_FROM_REASON`."""
    if harness.upgrade_from:
        return list(harness.upgrade_from)
    from extharness.source.acquire import is_builtin_sample

    return [SAMPLE_PREVIOUS] if is_builtin_sample(harness.request) else [NO_UPGRADE_FROM]


def upgrade_source_id(source: str) -> str:
    """A short test id for an old release."""
    if source == SAMPLE_PREVIOUS:
        return "pg_ticker-1.0"
    tail = source.rstrip("/").rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "._:-" else "_" for c in tail)[:40] or "old"


def upgrade_source_label(source: str) -> str:
    return "pg_ticker 1.0 (built-in sample release)" if source == SAMPLE_PREVIOUS else source


def read_previous_release(source: str, harness: HarnessConfig, wanted: str | None) -> ImageUnderTest:
    """The old release ``source`` names, acquired the way the image under test is, and read."""
    from extharness.source.acquire import ImageRequest, build_sample_release, request_for_reference

    like = harness.request
    if source == SAMPLE_PREVIOUS:
        folder = build_sample_release(harness.cache_dir, like.pg_config, "1.0")
        request = ImageRequest(artifacts=folder, builder=like.builder, pg_config=like.pg_config, platform=like.platform)
    else:
        request = request_for_reference(source, like)
    return read_requested_image(request, harness.cache_dir, wanted)


@pytest.fixture(scope="session")
def harness_config(pytestconfig: pytest.Config) -> HarnessConfig:
    if _CONFIG not in pytestconfig.stash:
        pytest.fail(INACTIVE, pytrace=False)
    return pytestconfig.stash[_CONFIG]


def harness_step(what: str, fn: Callable[[], object]) -> object:
    """Run a harness step; bad input fails (one line, no traceback), a missing tool skips."""
    try:
        return fn()
    except EnvironmentMissing as exc:
        missing: str | None = str(exc)
        failure: str | None = None
    except HarnessError as exc:
        missing, failure = None, f"extharness: {what}: {exc}"
    # outside the except blocks, so the report shows one line, not a chained traceback
    if missing is not None:
        pytest.skip(missing)
    pytest.fail(failure or what, pytrace=False)


#: The image the tiers test: acquired, read, its extension chosen (source/acquire.py's OpenedImage).
ImageUnderTest = OpenedImage


@pytest.fixture(scope="session")
def image_under_test(harness_config: HarnessConfig, pytestconfig: pytest.Config) -> ImageUnderTest:
    """The image the tiers test, acquired (built, saved, pulled) and read once per process."""
    return harness_step("getting the image under test", lambda: image_under_test_of(pytestconfig))  # type: ignore[return-value]


def _profile_extension(harness_config: HarnessConfig) -> str | None:
    if not harness_config.profile:
        return None
    try:
        from extharness.postgres.profiles import load_profile
    except ImportError:
        return None
    return load_profile(harness_config.profile).extension


@pytest.fixture(scope="session")
def operand_profile(harness_config: HarnessConfig) -> OperandProfile:
    def get() -> OperandProfile:
        # only asked whether it holds the operand image: no `podman info` (~0.3 s) for the layout tier
        engine = installed_engine()
        probed = probe_operand(
            harness_config.operand_image, engine, harness_config.cache_dir, harness_config.target_glibc
        )
        return probed or baseline_profile(harness_config.operand_image, harness_config.target_glibc)

    return harness_step("reading the operand image", get)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def expected_tag_digests(harness_config: HarnessConfig) -> dict[str, str] | None:
    """--expect-tags resolved once against the repository of --ext-image: tag -> digest or why not."""
    from extharness.source.acquire import READER_SCHEMES, looks_like_registry_reference

    tags = harness_config.expect_tags
    if not tags:
        return None
    image = harness_config.request.image or ""
    if image.startswith(READER_SCHEMES) or not looks_like_registry_reference(image):
        reason = f"--expect-tags needs --ext-image as a registry reference (registry/name:tag), not {image or 'none'}"
        return {tag: reason for tag in tags}
    from extharness.source.registry import resolve_tags

    return harness_step("resolving --expect-tags", lambda: resolve_tags(image, tags))  # type: ignore[return-value]


@pytest.fixture(scope="session")
def layout_target(
    harness_config: HarnessConfig, operand_profile: OperandProfile, expected_tag_digests: dict[str, str] | None
) -> LayoutTarget:
    return LayoutTarget(
        operand=operand_profile,
        expect_version=harness_config.expect_version,
        max_image_mb=harness_config.max_image_mb,
        platforms=harness_config.platforms,
        tag_digests=expected_tag_digests,
    )


@pytest.fixture(scope="session")
def extension_layouts(image_under_test: ImageUnderTest) -> list[ExtensionLayout]:
    return layouts_of(image_under_test.image, image_under_test.name)


def record_findings(item: pytest.Item, findings: Iterable[Finding]) -> None:
    """Keep ``findings`` with the test ``item``: --findings-json, JUnit and the summaries show them.

    Recorded in the test or in one of its function-scoped fixtures (its setup counts too)."""
    item.user_properties.append((FINDINGS_KEY, [f.as_dict() for f in findings]))


class FindingRecorder:
    """How a test (of any tier) reports what it found: as findings, recorded before it fails."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    def record(self, *findings: Finding) -> None:
        record_findings(self.item, findings)

    def check(self, findings: Iterable[Finding]) -> list[Finding]:
        """Record ``findings``, warn for each warning, and fail naming every error (one line each)."""
        found = list(findings)
        record_findings(self.item, found)
        for finding in found:
            if finding.severity == Severity.WARNING:
                warnings.warn(HarnessFindingWarning(str(finding)), stacklevel=3)
        errors = [f for f in found if f.severity == Severity.ERROR]
        if errors:
            pytest.fail("\n".join(str(f) for f in errors), pytrace=False)
        return found

    def fail(self, finding: Finding) -> NoReturn:
        """Record ``finding`` and fail the test with it (one line, no traceback)."""
        record_findings(self.item, [finding])
        pytest.fail(str(finding), pytrace=False)


@pytest.fixture
def harness_findings(request: pytest.FixtureRequest) -> FindingRecorder:
    """Record findings for this test: ``harness_findings.check(findings)`` / ``.fail(finding)``."""
    return FindingRecorder(request.node)


@pytest.fixture
def check_rule(
    harness_findings: FindingRecorder,
    image_under_test: ImageUnderTest,
    extension_layouts: list[ExtensionLayout],
    layout_target: LayoutTarget,
) -> Callable[[str], list[Finding]]:
    """Run one layout rule: record its findings, warn on warnings, fail on errors."""

    def check(rule_id: str) -> list[Finding]:
        return harness_findings.check(run_rule(rule_id, image_under_test.image, extension_layouts, layout_target))

    return check


# -- findings output (on the controller, which sees every worker's reports) -------------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":  # its properties hold what setup, call and teardown recorded
        for key, value in report.user_properties:
            if key == FINDINGS_KEY:
                _collected.extend(value)
    if report.when != "call":
        return
    # Cleanup tests print "[leftovers] ..." (and "[parallel] ...") counts; repeat them in the summary so a CI log shows the 0s.
    for _name, text in report.sections:
        _leftover_lines.extend(line for line in text.splitlines() if line.startswith(("[leftovers]", "[parallel]")))


_collected: list[dict] = []
_leftover_lines: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # xdist worker: the controller writes the files
    harness = session.config.stash.get(_CONFIG, None)
    if harness is None:
        return
    unique = grouped_findings(_collected)
    if harness.findings_json:
        _write_atomic(harness.findings_json, json.dumps({"findings": unique}, indent=2) + "\n")
    if harness.summary_md:
        from extharness.report import markdown_summary

        _write_atomic(harness.summary_md, markdown_summary(session, unique, harness))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not is_active_session(config):
        return
    from extharness.postgres import backend_summary  # sql tier: which backends ran, or why not

    backend_summary.write(terminalreporter)
    if _leftover_lines:
        terminalreporter.section("extharness leftovers after interrupts and runs")
        for line in _leftover_lines:
            terminalreporter.write_line(line)
    if not _collected:
        return
    terminalreporter.section("extharness findings")
    for line in summary_lines(grouped_findings(_collected)):
        terminalreporter.write_line(line)


def iter_findings() -> Iterator[dict]:
    return iter(_collected)


TIER_FOLDERS = ("layout", "sql", "cnpg", "unit", "kit")


def mark_tier_folders(items: list[pytest.Item], tests_root: Path) -> None:
    """Tests under ``tests_root/<tier>/`` carry the <tier> marker, so ``-m layout`` selects the tier.

    Called by this repository's root conftest.py only: a foreign project's tests/unit is its own.
    """
    root = tests_root.resolve()
    for item in items:
        try:
            relative = Path(str(item.path)).resolve().relative_to(root)
        except ValueError:
            continue
        if len(relative.parts) > 1 and relative.parts[0] in TIER_FOLDERS:
            item.add_marker(getattr(pytest.mark, relative.parts[0]))


_WORDS = {"and", "or", "not", "True", "False", "None"}


def could_select(markexpr: str, folder: str) -> bool:
    """Whether ``-m markexpr`` can select any test of ``tests/<folder>``.

    A test there carries its folder's tier mark (none under a folder that is not a tier) and no
    other tier's mark (``tests/unit/test_tier_marks.py`` holds the tests to that); any other mark
    it may or may not carry, so every combination of the expression's other names is tried.
    True whenever unsure (a long expression, pytest's expression module changed).

    The root conftest skips collecting such a folder; ``extharness check`` does not pass it at all
    (its conftest, loaded before collection, would import the tier's extras: psycopg, kubernetes).
    """
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
    except Exception:  # noqa: BLE001  (a bad expression: pytest reports it itself, later)
        return True
    names = [n for n in dict.fromkeys(re.findall(r"[A-Za-z_][\w]*", markexpr)) if n not in _WORDS]
    others = [n for n in names if n not in TIER_FOLDERS]
    if len(others) > 8:
        return True
    for values in itertools.product((False, True), repeat=len(others)):
        present = dict(zip(others, values))

        def matcher(name: str, /, _assigned: dict[str, bool] = present, **kwargs: object) -> bool:
            if name in TIER_FOLDERS:
                return name == folder and not kwargs  # the folder's mark has no arguments
            return _assigned.get(name, True)

        try:
            if expression.evaluate(matcher):
                return True
        except Exception:  # noqa: BLE001
            return True
    return False
