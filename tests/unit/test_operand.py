"""The operand image's facts: glibc versions as glibc writes them, the documented baseline, the probe."""

from __future__ import annotations

import pytest

from extharness.errors import HarnessError
from extharness.inspect.elf import glibc_version
from extharness.inspect.operand import GlibcVersion, baseline_profile, parse_probe_output

#: The start and end of what the probe printed in the offline operand stand-in
#: (localhost/extharness/cnpg-operand:18-minimal, built from debian-forky), lines kept as printed.
RECORDED_PROBE = """glibc 2.43
--libs--
apt
libc.so.6
libicuuc.so.78
libicuuc.so.78.3
libpq.so.5
libpq.so.5.18
libssl.so.3
--ext--
amcheck--1.0--1.1.sql
amcheck--1.0.sql
"""


@pytest.mark.parametrize(
    ("older", "newer"),
    [("2.2.5", "2.34"), ("2.9", "2.10"), ("2.34", "2.41"), ("2.41", "2.41.1"), ("2.0", "3.0")],
)
def test_glibc_versions_compare_as_numbers(older: str, newer: str) -> None:
    assert GlibcVersion.parse(older) < GlibcVersion.parse(newer)
    assert max(GlibcVersion.parse(newer), GlibcVersion.parse(older)) == GlibcVersion.parse(newer)


@pytest.mark.parametrize("text", ["2.2.5", "2.41", "2.10"])
def test_a_glibc_version_prints_as_written(text: str) -> None:
    assert str(GlibcVersion.parse(text)) == text
    assert f"glibc {GlibcVersion.parse(text)}" == f"glibc {text}"


@pytest.mark.parametrize("text", ["", "2.41rc1", "2..3", "v2.41", "2.41.", "PRIVATE"])
def test_what_is_no_glibc_version_is_none(text: str) -> None:
    assert GlibcVersion.parse(text) is None
    assert glibc_version(f"GLIBC_{text}") is None


def test_version_names_in_elf_files() -> None:
    assert glibc_version("GLIBC_2.2.5") == GlibcVersion.parse("2.2.5")
    assert glibc_version("GLIBC_PRIVATE") is None
    assert glibc_version("GCC_3.0") is None


@pytest.mark.parametrize(
    ("reference", "glibc"),
    [
        ("ghcr.io/cloudnative-pg/postgresql:18-minimal-bookworm", "2.36"),
        ("ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie", "2.41"),
        ("ghcr.io/cloudnative-pg/postgresql:18", "2.41"),  # no distribution named: trixie
    ],
)
def test_the_baseline_takes_glibc_from_the_distribution_in_the_reference(reference: str, glibc: str) -> None:
    profile = baseline_profile(reference)
    assert str(profile.glibc) == glibc
    assert f"glibc {glibc}" in profile.source


def test_target_glibc_overrides_the_baseline_and_a_bad_one_is_one_clear_line() -> None:
    assert str(baseline_profile("ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie", "2.36").glibc) == "2.36"
    with pytest.raises(HarnessError, match=r"^--target-glibc: '2\.41rc1' is not a version like 2\.41$"):
        baseline_profile("ghcr.io/cloudnative-pg/postgresql:18", "2.41rc1")


def test_a_recorded_probe_gives_glibc_and_libraries() -> None:
    profile = parse_probe_output("localhost/extharness/cnpg-operand:18-minimal", RECORDED_PROBE)
    assert profile.glibc == GlibcVersion.parse("2.43")
    assert profile.provides("libssl.so.3") and profile.provides("libpq.so.5")
    assert not profile.provides("libgdal.so.36")
    assert str(parse_probe_output("x", RECORDED_PROBE, target_glibc="2.36").glibc) == "2.36"
