"""SQL tier: the profile's smoke SQL gives exactly the expected results."""

from __future__ import annotations

import pytest

from extharness.postgres.sqlchecks import run_smoke


def test_profile_smoke_sql(backend, profile_server, target, database, install, sql_findings):
    if target.profile is None or not target.profile.smoke:
        pytest.skip(f"no smoke SQL for {target.name}: give an extension profile with --ext-profile")
    with profile_server.connect(database(profile_server)) as conn:
        install(conn)
        results = run_smoke(conn, target.profile.smoke)
    failed = [r for r in results if not r.ok]
    if failed:
        sql_findings.fail(
            "sql.smoke",
            f"{target.profile.source} step {len(results)} of {len(target.profile.smoke)}",
            failed[0].describe(),
        )
