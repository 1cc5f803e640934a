"""Every layout rule fires on a crafted bad image, names the offending path, and spares the sample.

Each case starts from the pg_ticker sample, breaks one thing, writes the image with the
embedded builder and reads it back with the OCI reader, then runs the layout rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from crafted import (
    AMD64,
    ARM64,
    CONTROL,
    EXT_DIR,
    INSTALL_SQL,
    LIB,
    SAMPLE,
    CraftedImage,
    ElfKit,
    RawEntry,
    multi_platform,
    patch_machine,
    read_blobs,
)

from extharness.checks.findings import RULES, Finding, Severity
from extharness.checks.run import run_all
from extharness.inspect.model import ExtensionImage, FileType, Platform

LAYOUT_TESTS = Path(__file__).resolve().parents[1] / "layout"
UPDATE_SQL = f"{EXT_DIR}/{SAMPLE}--1.0--1.1.sql"


@dataclass
class Case:
    """One crafted defect: what to break, and the finding it must produce."""

    id: str
    rule: str
    path: str  # the path the finding (and so its message) must name; "file:" matches "file:<line>"
    craft: Callable[[CraftedImage, ElfKit], CraftedImage | ExtensionImage]
    severity: Severity = Severity.ERROR
    target: dict = field(default_factory=dict)  # LayoutTarget overrides
    name: str = SAMPLE  # the extension the run checks
    mentions: str = ""  # a word the message must contain (what is wrong, or how to fix it)


def _multi(sample: CraftedImage, arm: CraftedImage, attestation: bool = False) -> ExtensionImage:
    return read_blobs(multi_platform([sample, arm], attestation=attestation))


def _arm64_variant(sample: CraftedImage, kit: ElfKit) -> CraftedImage:
    arm = sample.copy()
    arm.platform = ARM64
    return arm.put(LIB, kit.arm64_module(), 0o755)


CASES = [
    # -- files -----------------------------------------------------------------------------
    Case(
        "missing-control", "layout.files.control", CONTROL, lambda s, k: s.remove(CONTROL), mentions="share/extension"
    ),
    Case(
        "control-is-a-folder",
        "layout.files.control",
        CONTROL,
        lambda s, k: s.remove(CONTROL).mkdir(CONTROL),
        mentions="regular file",
    ),
    Case(
        "library-not-elf",
        "layout.files.library",
        LIB,
        lambda s, k: s.put(LIB, b"this is a text file, not a library\n", 0o755),
        mentions="ELF",
    ),
    Case(
        "library-is-an-executable",
        "layout.files.library",
        LIB,
        lambda s, k: s.put(LIB, k.executable(), 0o755),
        mentions="-shared",
    ),
    Case("library-missing", "layout.files.library", LIB, lambda s, k: s.remove(LIB), mentions="missing"),
    Case(
        "no-install-path-for-default-version",
        "layout.files.install-script",
        INSTALL_SQL,
        lambda s, k: s.remove(INSTALL_SQL).remove(UPDATE_SQL),
        mentions="update chain",
    ),
    Case(
        "no-default-version",
        "layout.files.install-script",
        CONTROL,
        lambda s, k: s.drop_param("default_version"),
        mentions="default_version",
    ),
    # -- tree ------------------------------------------------------------------------------
    Case(
        "extra-top-level-folder",
        "layout.tree.allowed-roots",
        "/etc",
        lambda s, k: s.put("/etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        mentions="FROM scratch",
    ),
    Case(
        "shell-binary",
        "layout.tree.no-executables",
        "/lib/sh",
        lambda s, k: s.put("/lib/sh", b"\x7fELF-not-really-but-named-sh", 0o755),
        mentions="shell",
    ),
    Case(
        "elf-program",
        "layout.tree.no-executables",
        "/lib/pg_ticker_tool",
        lambda s, k: s.put("/lib/pg_ticker_tool", k.executable(), 0o755),
        mentions="ELF executable",
    ),
    Case(
        "hashbang-script",
        "layout.tree.no-executables",
        f"{EXT_DIR}/setup.sh",
        lambda s, k: s.put(f"{EXT_DIR}/setup.sh", "#!/bin/sh\necho installing\n", 0o755),
        mentions="#!",
    ),
    Case(
        "data-with-execute-bits",
        "layout.tree.no-executables",
        INSTALL_SQL,
        lambda s, k: s.chmod(INSTALL_SQL, 0o755),
        severity=Severity.WARNING,
        mentions="0644",
    ),
    Case("setuid-library", "layout.tree.no-setuid", LIB, lambda s, k: s.chmod(LIB, 0o4755), mentions="setuid"),
    Case("setgid-folder", "layout.tree.no-setuid", EXT_DIR, lambda s, k: s.chmod(EXT_DIR, 0o2755), mentions="setgid"),
    Case(
        "world-writable-file",
        "layout.tree.no-world-writable",
        INSTALL_SQL,
        lambda s, k: s.chmod(INSTALL_SQL, 0o666),
        mentions="o-w",
    ),
    Case(
        "world-writable-folder",
        "layout.tree.no-world-writable",
        "/lib",
        lambda s, k: s.chmod("/lib", 0o777),
        mentions="o-w",
    ),
    Case(
        "fifo",
        "layout.tree.no-special-files",
        f"{EXT_DIR}/pipe",
        lambda s, k: s.special(f"{EXT_DIR}/pipe", FileType.FIFO),
        mentions="fifo",
    ),
    Case(
        "char-device",
        "layout.tree.no-special-files",
        "/lib/null",
        lambda s, k: s.special("/lib/null", FileType.CHAR),
        mentions="char-device",
    ),
    Case(
        "absolute-symlink",
        "layout.tree.symlinks",
        f"{EXT_DIR}/{SAMPLE}--1.2.sql",
        lambda s, k: s.symlink(f"{EXT_DIR}/{SAMPLE}--1.2.sql", "/usr/share/postgresql/18/extension/x.sql"),
        mentions="relative link",
    ),
    Case(
        "symlink-escaping-the-image",
        "layout.tree.symlinks",
        "/lib/libevil.so",
        lambda s, k: s.symlink("/lib/libevil.so", "../../../usr/lib/libc.so.6"),
        mentions="leaves the image",
    ),
    Case(
        "dangling-symlink",
        "layout.tree.symlinks",
        "/lib/libgone.so",
        lambda s, k: s.symlink("/lib/libgone.so", "libnothere.so"),
        mentions="does not exist",
    ),
    Case(
        "unreadable-control-file",
        "layout.tree.readable-by-postgres",
        CONTROL,
        lambda s, k: s.chmod(CONTROL, 0o600),
        mentions="UID 26",
    ),
    Case(
        "untraversable-folder",
        "layout.tree.readable-by-postgres",
        EXT_DIR,
        lambda s, k: s.chmod(EXT_DIR, 0o750),
        mentions="chmod 0755",
    ),
    Case(
        "dotdot-layer-entry",
        "layout.tree.archive-entries",
        "/",
        lambda s, k: s.add_layer([RawEntry("../../etc/cron.d/evil", content=b"* * * * * root sh\n")]),
        mentions="'..'",
    ),
    Case(
        "absolute-layer-entry",
        "layout.tree.archive-entries",
        "/",
        lambda s, k: s.add_layer([RawEntry("/share/extension/extra.sql", content=b"SELECT 1;\n")]),
        mentions="absolute",
    ),
    # -- control file and scripts ---------------------------------------------------------
    Case(
        "control-syntax-error",
        "layout.control.parse",
        CONTROL,
        lambda s, k: s.set_param("default_version", "'1.1"),
        mentions="syntax error",
    ),
    Case(
        "control-unknown-parameter",
        "layout.control.parse",
        CONTROL,
        lambda s, k: s.set_param("default_verison", "'1.1'"),
        mentions='unrecognized parameter "default_verison"',
    ),
    Case(
        "control-relocatable-with-schema",
        "layout.control.parse",
        CONTROL,
        lambda s, k: s.set_param("relocatable", "true").set_param("schema", "ticker"),
        mentions='"schema" cannot be specified',
    ),
    Case(
        "secondary-control-sets-directory",
        "layout.control.parse",
        f"{EXT_DIR}/{SAMPLE}--1.1.control",
        lambda s, k: s.put(f"{EXT_DIR}/{SAMPLE}--1.1.control", "directory = 'other'\n"),
        mentions="secondary extension control file",
    ),
    Case(
        "invalid-version-name",
        "layout.control.name",
        f"{EXT_DIR}/{SAMPLE}--1.2-.sql",
        lambda s, k: s.put(f"{EXT_DIR}/{SAMPLE}--1.2-.sql", "SELECT 1;\n"),
        mentions="begin or end",
    ),
    Case(
        "invalid-extension-name",
        "layout.control.name",
        f"{EXT_DIR}/-ticker.control",
        lambda s, k: s.put(f"{EXT_DIR}/-ticker.control", s.control_text).put(
            f"{EXT_DIR}/-ticker--1.1.sql", "SELECT 1;\n"
        ),
        name="-ticker",
        mentions="invalid extension name",
    ),
    Case(
        "script-name-postgres-ignores",
        "layout.control.name",
        f"{EXT_DIR}/{SAMPLE}--1.0--1.1--1.2.sql",
        lambda s, k: s.put(f"{EXT_DIR}/{SAMPLE}--1.0--1.1--1.2.sql", "SELECT 1;\n"),
        severity=Severity.WARNING,
        mentions="ignores",
    ),
    Case(
        "module-pathname-absolute",
        "layout.control.module-pathname",
        CONTROL,
        lambda s, k: s.set_param("module_pathname", "'/usr/lib/postgresql/18/lib/pg_ticker'"),
        mentions="absolute",
    ),
    Case(
        "module-pathname-libdir",
        "layout.control.module-pathname",
        CONTROL,
        lambda s, k: s.set_param("module_pathname", "'$libdir/pg_ticker'"),
        severity=Severity.WARNING,
        mentions="module_pathname = 'pg_ticker'",
    ),
    Case(
        "module-pathname-library-missing",
        "layout.control.module-pathname",
        "/lib/pg_tickr.so",
        lambda s, k: s.set_param("module_pathname", "'pg_tickr'"),
        mentions="not in the image",
    ),
    Case(
        "absolute-directory",
        "layout.control.directory",
        CONTROL,
        lambda s, k: s.set_param("directory", "'/usr/share/postgresql/18/extension'"),
        mentions="absolute",
    ),
    Case(
        "requires-reported",
        "layout.control.requires",
        CONTROL,
        lambda s, k: s.set_param("requires", "'hstore'"),
        severity=Severity.INFO,
        mentions="requires hstore",
    ),
    Case(
        "libdir-load-in-script",
        "layout.scripts.no-libdir-load",
        f"{UPDATE_SQL}:",
        lambda s, k: s.append(UPDATE_SQL, "\nLOAD '$libdir/pg_ticker';\n"),
        mentions="bare library name",
    ),
    # -- ELF -------------------------------------------------------------------------------
    Case(
        "wrong-architecture-arm64-elf",
        "layout.elf.architecture",
        LIB,
        lambda s, k: s.put(LIB, k.arm64_module(), 0o755),
        mentions="arm64",
    ),
    Case(
        "wrong-architecture-patched-e-machine",
        "layout.elf.architecture",
        LIB,
        lambda s, k: s.patch(LIB, 18, (183).to_bytes(2, "little")),
        mentions="EM_AARCH64",
    ),
    Case(
        "glibc-newer-than-operand",
        "layout.elf.glibc",
        LIB,
        lambda s, k: s.put(LIB, k.threaded_module(), 0o755),
        target={"glibc": "2.31"},
        mentions="GLIBC_2.34",
    ),
    Case(
        "glibc-2.99-version-need",
        "layout.elf.glibc",
        LIB,
        lambda s, k: s.put(LIB, k.future_glibc_module(), 0o755),
        mentions="GLIBC_2.99",
    ),
    Case(
        "needed-library-missing",
        "layout.elf.needed",
        LIB,
        lambda s, k: s.put(LIB, k.missing_dependency_module(), 0o755),
        mentions="libxhmissing.so.1",
    ),
    Case(
        "rpath-to-build-machine",
        "layout.elf.rpath",
        LIB,
        lambda s, k: s.put(LIB, k.rpath_module(), 0o755),
        mentions="RPATH /home/build",
    ),
    Case(
        "runpath-to-build-machine",
        "layout.elf.rpath",
        LIB,
        lambda s, k: s.put(LIB, k.rpath_module(runpath=True), 0o755),
        mentions="RUNPATH /home/build",
    ),
    Case(
        "no-module-magic",
        "layout.elf.module-magic",
        LIB,
        lambda s, k: s.put(LIB, k.no_magic_module(), 0o755),
        mentions="Pg_magic_func",
    ),
    Case(
        "helper-library-without-magic",
        "layout.elf.module-magic",
        "/lib/pg_ticker_helper.so",
        lambda s, k: s.put("/lib/pg_ticker_helper.so", k.no_magic_module(), 0o755),
        severity=Severity.WARNING,
        mentions="no module magic",
    ),
    # -- metadata --------------------------------------------------------------------------
    Case(
        "missing-labels",
        "layout.metadata.labels",
        "config.Labels",
        lambda s, k: (s.labels.clear(), s)[1],
        mentions="org.opencontainers.image.source",
    ),
    Case(
        "one-empty-label",
        "layout.metadata.labels",
        "config.Labels",
        lambda s, k: (s.labels.update({"org.opencontainers.image.licenses": " "}), s)[1],
        mentions="org.opencontainers.image.licenses",
    ),
    Case(
        "expect-version-mismatch-label",
        "layout.metadata.version",
        "config.Labels",
        lambda s, k: s,
        target={"expect_version": "2.0"},
        mentions="'2.0'",
    ),
    Case(
        "expect-version-mismatch-default-version",
        "layout.metadata.version",
        CONTROL,
        lambda s, k: (s.labels.update({"org.opencontainers.image.version": "2.0"}), s)[1],
        target={"expect_version": "2.0"},
        mentions="default_version is '1.1'",
    ),
    Case(
        "version-label-differs",
        "layout.metadata.version",
        "config.Labels",
        lambda s, k: (s.labels.update({"org.opencontainers.image.version": "1.0"}), s)[1],
        severity=Severity.WARNING,
        mentions="differs from default_version",
    ),
    Case(
        "size-over-limit",
        "layout.metadata.size",
        "/",
        lambda s, k: s.put(f"{EXT_DIR}/{SAMPLE}--0.9.sql", os.urandom(1_500_000)),
        target={"max_image_mb": 1.0},
        mentions="--max-image-mb 1",
    ),
    # -- platforms -------------------------------------------------------------------------
    Case(
        "platform-missing",
        "layout.platforms.expected",
        "index",
        lambda s, k: s,
        target={"platforms": (AMD64, ARM64)},
        mentions="missing platform(s) linux/arm64",
    ),
    Case(
        "platform-extra",
        "layout.platforms.expected",
        "index",
        lambda s, k: _multi(s, _arm64_variant(s, k)),
        target={"platforms": (AMD64,)},
        mentions="unexpected platform(s) linux/arm64",
    ),
    Case(
        "attestation-reported-not-counted",
        "layout.platforms.expected",
        "index",
        lambda s, k: _multi(s, _arm64_variant(s, k), attestation=True),
        severity=Severity.INFO,
        target={"platforms": (AMD64, ARM64)},
        mentions="attestation",
    ),
    Case(
        "platforms-with-different-sql",
        "layout.platforms.extension",
        INSTALL_SQL,
        lambda s, k: _multi(s, _arm64_variant(s, k).append(INSTALL_SQL, "\n-- arm64 only\n")),
        mentions="differs between linux/amd64 and linux/arm64",
    ),
    Case(
        "platforms-with-different-files",
        "layout.platforms.extension",
        f"{EXT_DIR}/{SAMPLE}--1.1--1.2.sql",
        lambda s, k: _multi(s, _arm64_variant(s, k).put(f"{EXT_DIR}/{SAMPLE}--1.1--1.2.sql", "SELECT 1;\n")),
        mentions="present in only one",
    ),
    # -- release tags ----------------------------------------------------------------------
    Case(
        "tag-points-at-another-index",
        "layout.tags.same-digest",
        "tag 0.2",
        lambda s, k: _multi(s, _arm64_variant(s, k)),
        target={"tag_digests": {"0.2": "sha256:" + "0" * 64}},
        mentions="skopeo copy",
    ),
    Case(
        "tag-unresolvable",
        "layout.tags.same-digest",
        "tag latest",
        lambda s, k: _multi(s, _arm64_variant(s, k)),
        target={"tag_digests": {"latest": "manifest unknown"}},
        mentions="cannot be resolved",
    ),
    Case(
        "index-annotation-other-version",
        "layout.tags.version-annotation",
        "index.annotations",
        lambda s, k: _multi(s, _arm64_variant(s, k)),
        target={"expect_version": "2.0"},
        mentions="'1.1'",
    ),
    Case(
        "one-platform-label-other-version",
        "layout.tags.version-annotation",
        "config.Labels",
        lambda s, k: _multi(s, _arm64_variant(s, k).copy_with_label("org.opencontainers.image.version", "1.0")),
        target={"expect_version": "1.1"},
        mentions="linux/arm64 has '1.0'",
    ),
]


def _image(case: Case, sample: CraftedImage, kit: ElfKit) -> ExtensionImage:
    crafted = case.craft(sample, kit)
    return crafted if isinstance(crafted, ExtensionImage) else crafted.read()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_fires_and_names_the_path(case: Case, sample: CraftedImage, elf_kit: ElfKit, make_target) -> None:
    image = _image(case, sample, elf_kit)
    findings = run_all(image, case.name, make_target(**case.target))
    hits = [
        f
        for f in findings
        if f.rule == case.rule
        and f.severity == case.severity
        and (f.path == case.path or (case.path.endswith(":") and f.path.startswith(case.path)))
    ]
    assert hits, f"{case.rule} did not report a {case.severity.value} on {case.path}; findings: " + "; ".join(
        str(f) for f in findings if f.severity != Severity.INFO or f.rule == case.rule
    )
    shown = str(hits[0])  # what a failing layout test prints
    assert case.path in shown
    assert case.mentions in shown, f"message should mention {case.mentions!r}: {shown}"


def _problems(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.severity != Severity.INFO]


def test_sample_passes_every_rule(sample: CraftedImage, make_target) -> None:
    findings = run_all(sample.read(), SAMPLE, make_target(expect_version="1.1", platforms=(AMD64,)))
    assert _problems(findings) == []
    assert {f.rule for f in findings} <= set(RULES)


def test_sample_passes_on_bookworm_glibc(sample: CraftedImage, make_target) -> None:
    assert _problems(run_all(sample.read(), SAMPLE, make_target(glibc="2.36"))) == []


def test_sample_as_two_platforms_passes(sample: CraftedImage, elf_kit: ElfKit, make_target) -> None:
    image = _multi(sample, _arm64_variant(sample, elf_kit), attestation=True)
    findings = run_all(image, SAMPLE, make_target(platforms=(AMD64, ARM64)))
    assert _problems(findings) == []


# -- near misses: what a rule must NOT flag ------------------------------------------------
def test_origin_rpath_and_shipped_dependency_are_accepted(sample: CraftedImage, elf_kit: ElfKit, make_target) -> None:
    sample.put(LIB, elf_kit.missing_dependency_module(), 0o755)
    sample.put("/system/libxhmissing.so.1", elf_kit.shared("xhmissing", ""), 0o755)
    sample.put("/lib/pg_ticker_origin.so", elf_kit.rpath_module(where="$ORIGIN/../system"), 0o755)
    findings = run_all(sample.read(), SAMPLE, make_target())
    assert [f for f in findings if f.rule in ("layout.elf.needed", "layout.elf.rpath")] == []


def test_glibc_234_module_loads_on_trixie(sample: CraftedImage, elf_kit: ElfKit, make_target) -> None:
    sample.put(LIB, elf_kit.threaded_module(), 0o755)
    assert [f for f in run_all(sample.read(), SAMPLE, make_target()) if f.rule == "layout.elf.glibc"] == []


def test_relative_symlink_inside_image_is_fine(sample: CraftedImage, make_target) -> None:
    sample.symlink(f"{EXT_DIR}/{SAMPLE}--1.1.0.sql", f"{SAMPLE}--1.1.sql")
    assert [f for f in run_all(sample.read(), SAMPLE, make_target()) if f.rule == "layout.tree.symlinks"] == []


def test_libdir_load_in_a_comment_is_fine(sample: CraftedImage, make_target) -> None:
    sample.append(UPDATE_SQL, "\n-- LOAD '$libdir/pg_ticker';\n")
    found = [f for f in run_all(sample.read(), SAMPLE, make_target()) if f.rule == "layout.scripts.no-libdir-load"]
    assert found == []


def test_patched_machine_helper_matches_the_real_cross_compiled_header(elf_kit: ElfKit) -> None:
    # The patched case stands for a real arm64 build only if the header field is the one that differs.
    from extharness.inspect.elf import summarize

    assert (
        summarize(patch_machine(elf_kit.module(), 183)).architecture == summarize(elf_kit.arm64_module()).architecture
    )


# -- coverage of the rule registry ---------------------------------------------------------
def test_every_rule_has_a_crafted_case() -> None:
    covered = {c.rule for c in CASES}
    assert sorted(set(RULES) - covered) == [], "add a Case to CASES for these rule ids"


def test_every_rule_has_a_layout_test() -> None:
    text = "\n".join(p.read_text() for p in sorted(LAYOUT_TESTS.glob("*.py")))
    used = set(re.findall(r"check_rule\(\s*[\"']([^\"']+)[\"']", text))
    assert sorted(set(RULES) - used) == [], "add a test in tests/layout/ calling check_rule(<id>)"
    assert sorted(used - set(RULES)) == [], "tests/layout/ names rule ids that are not registered"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_rule_ids_are_stable_names() -> None:
    for rule_id in RULES:
        assert re.fullmatch(r"layout\.[a-z]+\.[a-z][a-z-]*", rule_id), rule_id


def test_platform_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="os/arch"):
        Platform.parse("amd64")
