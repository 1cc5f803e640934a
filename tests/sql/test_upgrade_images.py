"""SQL tier: the upgrade CloudNativePG users make, from the previous release's image to this one.

The old release (``--upgrade-from``; for the built-in sample its 1.0 release) is installed at
its default version and given the profile's data; postgres stops, the candidate image takes
the old one's place with the same settings, postgres starts, and ``ALTER EXTENSION ... UPDATE
TO`` the candidate's default version runs (what a changed image reference plus a bumped
``Database`` extension version do). Each test checks one thing about that one run; failures
are ``sql.upgrade.*`` findings that name the object, statement or setting.
"""

from __future__ import annotations

import pytest

from extharness.checks.findings import Finding
from extharness.checks.upgrade import (
    UpgradeRecord,
    data_findings,
    downgrade_findings,
    member_findings,
    not_updated,
    nothing_to_downgrade,
    preload_findings,
    smoke_findings,
    update_findings,
)
from extharness.pytest_plugin import record_findings


def _passes(request: pytest.FixtureRequest, findings: list[Finding]) -> None:
    record_findings(request.node, findings)
    if findings:
        pytest.fail("\n".join(str(f) for f in findings), pytrace=False)


def _updated(record: UpgradeRecord) -> None:
    """Skip a check of the updated extension when the update did not run: a root cause is reported
    once, by test_old_release_updates_to_candidate (whatever the order tests run in)."""
    reason = not_updated(record, "test_old_release_updates_to_candidate")
    if reason:
        pytest.skip(reason)


def test_old_release_updates_to_candidate(backend, image_upgrade, request, record_property):
    if image_upgrade.seconds is not None:  # the benchmark report reads it (benchmarks/report.py, section 6)
        record_property("extharness_upgrade_seconds", round(image_upgrade.seconds, 1))
    _passes(request, update_findings(image_upgrade))


def test_updated_objects_match_fresh_install(backend, image_upgrade, request):
    _updated(image_upgrade)
    _passes(request, member_findings(image_upgrade.after_update, image_upgrade.fresh, image_upgrade.case))


def test_data_intact_after_update(backend, image_upgrade, request, target):
    if image_upgrade.data_check is None:
        pytest.skip(f"the profile of {target.name} has no [data] to write before the update")
    _updated(image_upgrade)
    _passes(request, data_findings(image_upgrade))


def test_smoke_sql_after_update(backend, image_upgrade, request, target):
    if not (target.profile and target.profile.smoke):
        pytest.skip(f"the profile of {target.name} has no smoke SQL")
    _updated(image_upgrade)
    _passes(request, smoke_findings(image_upgrade))


def test_preload_after_update(backend, image_upgrade, request, target):
    if not target.preload:
        pytest.skip(f"{target.name} has no library to preload (no module_pathname, no profile preload)")
    _passes(request, preload_findings(image_upgrade))


def test_downgrade_refused(backend, image_upgrade, request):
    _updated(image_upgrade)
    if problem := nothing_to_downgrade(image_upgrade):
        pytest.fail(problem, pytrace=False)
    _passes(request, downgrade_findings(image_upgrade))
