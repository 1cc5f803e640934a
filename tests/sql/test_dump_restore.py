"""SQL tier: pg_dump / pg_restore of a database using the extension keeps the extension and its data."""

from __future__ import annotations

import psycopg
import pytest

from extharness.postgres.sqlchecks import installed_extension, rows_match, run_step


def test_dump_restore_round_trip(backend, profile_server, target, database, install, sql_findings):
    profile = target.profile
    server = profile_server
    source = database(server)
    with server.connect(source) as conn:
        install(conn)
        if profile and profile.data_setup.strip():
            try:
                conn.execute(profile.data_setup)
            except psycopg.Error as exc:
                pytest.fail(f"the profile's data.setup failed: {exc}", pytrace=False)
        before = run_step(conn, profile.data_check) if profile and profile.data_check else None
    if before is not None and not before.ok:
        sql_findings.fail("sql.dump-restore", "data.check", f"before the dump: {before.describe()}")

    dump = server.run_tool(["pg_dump", "--format=custom", "--dbname", source], timeout=300)
    if dump.returncode != 0:
        sql_findings.fail(
            "sql.dump-restore", "pg_dump", f"failed: {dump.stderr.decode(errors='replace').strip()[-800:]}"
        )
    restored = database(server)
    restore = server.run_tool(
        ["pg_restore", "--exit-on-error", "--no-owner", "--dbname", restored], input=dump.stdout, timeout=300
    )
    if restore.returncode != 0:
        sql_findings.fail(
            "sql.dump-restore", "pg_restore", f"failed: {restore.stderr.decode(errors='replace').strip()[-800:]}"
        )

    with server.connect(restored) as conn:
        installed = installed_extension(conn, target.name)
        if installed is None:
            sql_findings.fail("sql.dump-restore", target.name, "the restored database has no such extension")
        if installed["version"] != target.default_version:
            sql_findings.fail(
                "sql.dump-restore",
                target.name,
                f"the restored database has version {installed['version']}, the dumped one {target.default_version}",
            )
        if before is not None:
            after = run_step(conn, profile.data_check)
            if not (after.ok and rows_match([list(r) for r in before.rows or []], after.rows or [])):
                sql_findings.fail(
                    "sql.dump-restore",
                    "data.check",
                    f"after pg_restore: {after.describe()} (before the dump it returned {before.rows})",
                )
