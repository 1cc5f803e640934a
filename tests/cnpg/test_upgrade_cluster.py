"""Cnpg tier: the upgrade CloudNativePG users make, on a real Cluster, from the previous release's image.

A Cluster runs the old release (``--upgrade-from``; for the built-in sample its 1.0 release); its
``Database`` resources create the extension and the profile's data is written. Then, as a user
ships the release: the extension's image reference changes to the candidate (CNPG rolls every
instance onto it) and the ``Database`` extension ``version`` is bumped (the operator runs
``ALTER EXTENSION ... UPDATE TO``). Each test checks one thing about that one run with the sql
tier's checks; failures are ``cnpg.upgrade.*`` findings naming the object, statement or setting.
"""

from __future__ import annotations

import pytest

from extharness.checks.findings import Finding, error
from extharness.checks.upgrade import (
    UpgradeRecord,
    data_findings,
    downgrade_findings,
    member_findings,
    not_updated,
    nothing_to_downgrade,
    on_cluster,
    preload_findings,
    smoke_findings,
    update_findings,
)
from extharness.pytest_plugin import record_findings

pytestmark = pytest.mark.xdist_group("cnpg-deployment")  # one deployment per module, on one worker


def _passes(request: pytest.FixtureRequest, findings: list[Finding]) -> None:
    findings = on_cluster(findings)
    record_findings(request.node, findings)
    if findings:
        pytest.fail("\n".join(str(f) for f in findings), pytrace=False)


@pytest.fixture
def upgraded(cluster_upgrade, cluster_upgrade_source: str, request: pytest.FixtureRequest) -> UpgradeRecord:
    """The run's record; if the run broke off, the first test fails with a ``cnpg.upgrade.run``
    finding and the later ones skip naming it."""
    if cluster_upgrade.record is not None:
        return cluster_upgrade.record
    if cluster_upgrade.reported_by is not None:
        pytest.skip(
            f"needs the cluster upgrade, which broke off: cnpg.upgrade.run (reported by {cluster_upgrade.reported_by})"
        )
    cluster_upgrade.reported_by = request.node.nodeid
    finding = error("cnpg.upgrade.run", cluster_upgrade_source, cluster_upgrade.broke_off or "broke off")
    record_findings(request.node, [finding])
    pytest.fail(str(finding), pytrace=False)


def _updated(record: UpgradeRecord) -> None:
    """Skip a check of the updated extension when the update did not run: a root cause is reported
    once, by test_cluster_old_release_updates_to_candidate (whatever the order tests run in)."""
    reason = not_updated(record, "test_cluster_old_release_updates_to_candidate", cluster=True)
    if reason:
        pytest.skip(reason)


def test_cluster_old_release_updates_to_candidate(upgraded, request, record_property):
    if upgraded.seconds is not None:  # the benchmark report reads it (benchmarks/report.py, section 6)
        record_property("extharness_upgrade_seconds", round(upgraded.seconds, 1))
    _passes(request, update_findings(upgraded))


def test_cluster_updated_objects_match_fresh_install(upgraded, request):
    _updated(upgraded)
    _passes(request, member_findings(upgraded.after_update, upgraded.fresh, upgraded.case))


def test_cluster_data_intact_after_update(upgraded, request):
    if upgraded.data_check is None:
        pytest.skip(f"the profile of {upgraded.extension} has no [data] to write before the update")
    _updated(upgraded)
    _passes(request, data_findings(upgraded))


def test_cluster_smoke_sql_after_update(upgraded, request, cnpg_profile):
    if not (cnpg_profile and cnpg_profile.smoke):
        pytest.skip(f"the profile of {upgraded.extension} has no smoke SQL")
    _updated(upgraded)
    _passes(request, smoke_findings(upgraded))


def test_cluster_preload_after_update(upgraded, request):
    if not upgraded.preload:
        pytest.skip(f"the profile of {upgraded.extension} preloads nothing")
    _passes(request, preload_findings(upgraded))


def test_cluster_downgrade_refused(upgraded, request):
    _updated(upgraded)
    if problem := nothing_to_downgrade(upgraded):
        pytest.fail(problem, pytrace=False)
    _passes(request, downgrade_findings(upgraded))
