"""SQL tier: DROP and CREATE again, a non-public schema, and who may create the extension."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import sql

from extharness.postgres.sqlchecks import (
    compare_members,
    drop_extension,
    installed_extension,
    member_objects,
)


def test_drop_and_create_again(backend, server, target, database, install):
    with server.connect(database(server)) as conn:
        install(conn)
        first = member_objects(conn, target.name)
        drop_extension(conn, target.name)
        left = conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid "
            "WHERE e.extname = %s",
            (target.name,),
        ).fetchone()[0]
        assert left == 0
        install(conn)
        again = member_objects(conn, target.name)
    differences = compare_members(again, first)
    assert not differences, "DROP EXTENSION + CREATE EXTENSION gives other objects:\n  " + "\n  ".join(differences)


def test_schema_rules(backend, server, target, database, install):
    """Relocatable: CREATE ... SCHEMA puts every object there. Fixed schema or not relocatable:
    PostgreSQL must refuse to move it, as the control file promises."""
    control = target.layout.control
    assert control is not None
    with server.connect(database(server)) as conn:
        conn.execute("CREATE SCHEMA extharness_other")
        if control.schema and not control.relocatable:
            with pytest.raises(psycopg.errors.DatabaseError, match="must be installed in schema"):
                install(conn, schema="extharness_other")
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
    assert installed and installed["schema"] == "extharness_other"
    in_public = [m for m in members if " public." in f" {m}"]
    assert not in_public, f"created in schema extharness_other, yet objects landed in public: {in_public}"


def test_who_may_create(backend, server, target, database):
    """Trusted extensions install as a non-superuser with CREATE on the database; others are refused."""
    control = target.layout.control
    assert control is not None
    allowed = control.trusted or not control.superuser
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
    if allowed:
        assert error is None, (
            f"{target.name} is trusted = {control.trusted}, superuser = {control.superuser}, "
            f"yet a non-superuser was refused: {error}"
        )
    else:
        assert error is not None, (
            f"{target.name} is not trusted (superuser = true, trusted = false), yet a non-superuser could create it"
        )
