"""The upgrade CloudNativePG users make, on a real Cluster: a new image reference, then a new version.

A Cluster runs the old release's image; its ``Database`` resources create the extension at the
old default version and the profile's data is written. Then, as a user ships a release: the
extension's image reference in the Cluster changes to the candidate (CNPG rolls every
instance onto it), and the ``Database`` extension ``version`` is bumped to the candidate's
default version (the operator runs ``ALTER EXTENSION ... UPDATE TO`` on the primary). A third
``Database`` installs the candidate fresh, for comparison; last, the version is set back to the
old one, which PostgreSQL must refuse. What the cluster showed is recorded in the same
:class:`~extharness.checks.upgrade.UpgradeRecord` the sql tier fills, so the same pure checks
judge it (reported as ``cnpg.upgrade.*``: ``checks.upgrade.on_cluster``).

SQL runs as ``postgres`` through a port-forward to the primary (``CnpgDeployment.connect``),
with the sql tier's own catalog queries, so both tiers compare member objects the same way.
"""

from __future__ import annotations

import psycopg

from extharness.checks.upgrade import UpgradeRecord
from extharness.inspect.extension import ExtensionLayout
from extharness.kube.deploy import CnpgDeployment
from extharness.postgres.profiles import Profile
from extharness.postgres.sqlchecks import (
    error_text,
    installed_extension,
    member_objects,
    run_smoke,
)
from extharness.postgres.upgrade import new_record, query_rows, record_preload
from extharness.runtime.settings import limit_of

#: Databases besides the Cluster's own (the profile's data goes there): smoke SQL, a fresh install.
SMOKE_DB, FRESH_DB = "xh_upgrade_smoke", "xh_upgrade_fresh"


def replay_cluster_upgrade(
    deployment: CnpgDeployment,
    candidate_ref: str,
    *,
    old: str,
    old_layout: ExtensionLayout,
    new_layout: ExtensionLayout,
    profile: Profile | None,
    preload: list[str],
) -> UpgradeRecord:
    """Run the upgrade on ``deployment`` (applied, on the old image) and record what happened.

    A step the cluster cannot do at all (no rollout, a timeout) raises ``HarnessError``; what
    PostgreSQL refuses (the install, the update) is recorded and ends the run.
    """
    ext = new_layout.name
    record = new_record(old, old_layout, new_layout, profile, preload)
    data_check = profile.data_check if profile else None
    data_db = deployment.database_doc["metadata"]["name"]

    # 1. the old release: the Database resources create the extension at the old default version
    deployment.wait_healthy()
    smoke_db = deployment.add_database(SMOKE_DB)
    for name in (data_db, smoke_db):
        applied, why = deployment.settle_database(name)
        if not applied:
            record.install_error = why
            return record
    with deployment.connect() as conn:
        installed = installed_extension(conn, ext)
        record.installed_version = installed["version"] if installed else None
        if profile and profile.data_setup.strip() and data_check:
            conn.execute(profile.data_setup)
            record.data_before = query_rows(conn, data_check.sql)

    # 2. the image reference changed to the candidate: CNPG's rolling update
    deployment.roll_extension_image(candidate_ref)
    if preload:
        with deployment.connect("postgres") as conn:
            record_preload(record, conn, profile, limit_of("EXTHARNESS_CNPG_WORKER_TIMEOUT"))

    # 3. the Database version bumped: the operator's ALTER EXTENSION ... UPDATE TO
    for name in (data_db, smoke_db):
        deployment.set_extension_version(name, record.new_version or "")
        applied, why = deployment.settle_database(name)
        if not applied:
            record.update_error = why
            record.server_log = deployment.primary_log_errors()
            return record
    with deployment.connect() as conn:
        installed = installed_extension(conn, ext)
        record.version_after = installed["version"] if installed else None
        record.after_update = member_objects(conn, ext)
        if data_check:
            try:
                record.data_after = query_rows(conn, data_check.sql)
            except psycopg.Error as exc:
                record.data_error = error_text(exc)
    with deployment.connect(SMOKE_DB) as conn:
        steps = profile.smoke if profile else []
        record.smoke = [(" ".join(r.step.sql.split()), r.ok, r.describe()) for r in run_smoke(conn, steps)]
    fresh_db = deployment.add_database(FRESH_DB)
    deployment.wait_database(name=fresh_db)
    with deployment.connect(FRESH_DB) as conn:
        record.fresh = member_objects(conn, ext)

    # 4. the version set back: PostgreSQL must refuse it and leave the extension as it was
    if record.old_version and record.old_version != record.new_version:
        deployment.set_extension_version(data_db, record.old_version)
        applied, why = deployment.settle_database(data_db)
        record.downgrade_error = None if applied else why
    with deployment.connect() as conn:
        installed = installed_extension(conn, ext)
        record.version_after_downgrade = installed["version"] if installed else None
        record.members_after_downgrade = member_objects(conn, ext)
    record.server_log = record.server_log or deployment.primary_log_errors()
    return record
