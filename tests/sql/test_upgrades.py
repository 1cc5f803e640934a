"""SQL tier: every update path gives the same objects as a fresh install of its target version."""

from __future__ import annotations

import psycopg
import pytest

from extharness.checks.upgrade import member_findings, unreplayable_finding
from extharness.postgres.sqlchecks import (
    error_text,
    explain_create_failure,
    member_objects,
    update_extension,
    update_paths,
)
from extharness.pytest_plugin import record_findings


def test_update_paths_match_scripts(backend, server, target, database, sql_findings):
    with server.connect(database(server)) as conn:
        seen = {(a, b) for a, b, _path in update_paths(conn, target.name)}
    expected = {(a, b) for a, b, _path in target.layout.scripts.update_pairs()}
    if seen != expected:
        sql_findings.fail(
            "sql.update.paths",
            target.name,
            f"pg_extension_update_paths('{target.name}') gives {sorted(seen)}, the image's scripts give "
            f"{sorted(expected)}: the server reads another copy of the extension's scripts",
        )


def test_installable_versions_update_to_default(backend, server, target, database, sql_findings):
    default = target.default_version
    with server.connect(database(server)) as conn:
        paths = {(a, b) for a, b, _path in update_paths(conn, target.name)}
    stuck = [v for v in sorted(target.layout.scripts.install) if v != default and (v, default) not in paths]
    if stuck:
        sql_findings.fail(
            "sql.update.to-default",
            f"{target.name}--{stuck[0]}--{default}.sql",
            f"{', '.join(stuck)} can be installed but not updated to the default version {default}: users on "
            f"{stuck[0]} cannot ALTER EXTENSION {target.name} UPDATE (missing upgrade script, e.g. "
            f"{target.name}--{stuck[0]}--{default}.sql)",
        )


def test_update_matches_fresh_install(backend, server, target, database, install, update_pair, request, sql_findings):
    if update_pair == "no-update-scripts":
        pytest.skip(f"{target.name} ships no update scripts: no update path to compare")
    if update_pair == "image-unreadable":
        pytest.fail("the image could not be read at collection time; see the other tests' errors", pytrace=False)
    if update_pair == "none-replayable":
        pytest.skip(
            f"no update path of {target.name} starts at a version this image installs "
            "(test_unreplayable_update_paths lists them; --upgrade-from tests them)"
        )
    source, version = update_pair
    with server.connect(database(server)) as conn:
        install(conn, version=source)
        failure = None
        try:
            update_extension(conn, target.name, version)
        except psycopg.Error as exc:
            failure = explain_create_failure(error_text(exc), target.name, target.layout)
        if failure is not None:  # outside the except block: the report shows the finding, not a chain
            sql_findings.fail(
                "sql.update.failed", f"ALTER EXTENSION {target.name} UPDATE TO '{version}' (from {source})", failure
            )
        updated = member_objects(conn, target.name)
    with server.connect(database(server)) as conn:
        install(conn, version=version)
        fresh = member_objects(conn, target.name)
    findings = member_findings(updated, fresh, f"{source} -> {version} (inside the image)")
    record_findings(request.node, findings)
    assert not findings, (
        f"ALTER EXTENSION {target.name} UPDATE from {source} to {version} leaves objects different from "
        f"CREATE EXTENSION {target.name} VERSION '{version}':\n  " + "\n  ".join(str(f) for f in findings)
    )


def test_unreplayable_update_paths(target, request):
    """Update paths from versions no script of this image installs: one grouped note, not a skip each."""
    scripts = target.layout.scripts
    pairs = [(a, b) for a, b, _path in scripts.update_pairs() if scripts.install_path(a) is None]
    finding = unreplayable_finding(target.name, pairs)
    if finding is None:
        return  # every update path of the image is replayed by test_update_matches_fresh_install
    record_findings(request.node, [finding])
    pytest.skip(finding.message)
