"""SQL tier: DROP and CREATE again, a non-public schema, and who may create the extension."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import sql

from extharness.postgres.sqlchecks import (
    compare_members,
    create_extension,
    drop_extension,
    installed_extension,
    member_objects,
)


def test_drop_and_create_again(backend, server, target, database, install, sql_findings):
    with server.connect(database(server)) as conn:
        install(conn)
        first = member_objects(conn, target.name)
        drop_extension(conn, target.name)
        left = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid "
            "WHERE e.extname = %s",
            (target.name,),
        ).fetchone()[0]
        if left:
            sql_findings.fail(
                "sql.drop-create", target.name, f"DROP EXTENSION leaves {left} pg_depend row(s) on the extension"
            )
        install(conn)
        again = member_objects(conn, target.name)
    differences = compare_members(again, first)
    if differences:
        sql_findings.fail(
            "sql.drop-create",
            target.name,
            "DROP EXTENSION + CREATE EXTENSION gives other objects: " + "; ".join(differences),
        )


def test_schema_rules(backend, server, target, database, install, sql_findings):
    """Relocatable: CREATE ... SCHEMA puts every object there. Fixed schema or not relocatable:
    PostgreSQL must refuse to move it, as the control file promises."""
    control = target.layout.control
    assert control is not None
    with server.connect(database(server)) as conn:
        conn.execute("CREATE SCHEMA extharness_other")
        if control.schema and not control.relocatable:
            install.require()
            # CREATE EXTENSION itself, not install(): here its failure is what the control file promises
            with pytest.raises(psycopg.errors.DatabaseError, match="must be installed in schema"):
                create_extension(conn, target.name, schema="extharness_other")
            return
        if not control.relocatable:
            install(conn)
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="does not support SET SCHEMA"):
                conn.execute(
                    sql.SQL("ALTER EXTENSION {} SET SCHEMA extharness_other").format(sql.Identifier(target.name))
                )
            return
        install(conn, schema="extharness_other")
        installed = installed_extension(conn, target.name)
        members = member_objects(conn, target.name)
    if not (installed and installed["schema"] == "extharness_other"):
        sql_findings.fail(
            "sql.schema",
            target.name,
            f"CREATE EXTENSION ... SCHEMA extharness_other put it in {installed and installed['schema']}",
        )
    in_public = [m for m in members if " public." in f" {m}"]
    if in_public:
        sql_findings.fail(
            "sql.schema", target.name, f"created in schema extharness_other, yet objects landed in public: {in_public}"
        )


def test_who_may_create(backend, server, target, database, install, sql_findings):
    """Trusted extensions install as a non-superuser with CREATE on the database; others are refused."""
    control = target.layout.control
    assert control is not None
    allowed = control.trusted or not control.superuser
    if allowed:
        install.require()  # a non-superuser's CREATE EXTENSION would fail for the reason already reported
    db = database(server)
    role = f"extharness_user_{secrets.token_hex(3)}"
    with server.connect(db) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        try:
            conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db), sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            try:
                conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(target.name)))
                error = None
            except psycopg.errors.InsufficientPrivilege as exc:
                error = exc
            conn.execute("RESET ROLE")
            if error is None:
                drop_extension(conn, target.name, cascade=True)
        finally:
            conn.execute("RESET ROLE")
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    if allowed and error is not None:
        sql_findings.fail(
            "sql.privilege",
            f"{target.name}.control",
            f"trusted = {control.trusted}, superuser = {control.superuser}, yet a non-superuser was refused: {error}",
        )
    if not allowed and error is None:
        sql_findings.fail(
            "sql.privilege",
            f"{target.name}.control",
            "not trusted (superuser = true, trusted = false), yet a non-superuser could create it",
        )
