"""SQL tier: the server finds the extension where CNPG mounts it, and creates it at its default version."""

from __future__ import annotations

from extharness.postgres.sqlchecks import (
    available_extension,
    file_exists,
    installed_extension,
    shadowing_problem,
)


def _control_path(server, target) -> str:
    if server.mount_path:
        return f"{server.mount_path}/share/extension/{target.name}.control"
    return f"{server.sharedir}/extension/{target.name}.control"  # composite: copied into $system


def test_control_file_visible_to_server(backend, server, target, sql_findings):
    path = _control_path(server, target)
    if not file_exists(server.connect(), path):
        sql_findings.fail(
            "sql.control-visible",
            path,
            f"the server ({server.description}) cannot see it: the image is not mounted where "
            "extension_control_path points, or its control file is not at /share/extension/",
        )


def test_not_shadowed_by_base(backend, server, target, sql_findings):
    where = getattr(backend, "image", None) or f"{server.sharedir} of {server.description}"
    problem = shadowing_problem(target.name, backend.base_extension_files(), str(where))
    if problem is not None:
        sql_findings.fail("sql.shadowed", f"{target.name}.control", problem)


def test_listed_in_pg_available_extensions(backend, server, target, database, sql_findings):
    with server.connect(database(server)) as conn:
        row = available_extension(conn, target.name)
    if row is None:
        sql_findings.fail(
            "sql.available",
            target.name,
            f"pg_available_extensions has no {target.name} with extension_control_path="
            f"{server.settings['extension_control_path']!r}",
        )
    if row["default_version"] != target.default_version:
        sql_findings.fail(
            "sql.available",
            target.name,
            f"pg_available_extensions shows default_version {row['default_version']}, the image's control file "
            f"says {target.default_version}: PostgreSQL reads another {target.name}.control (one in $system "
            "comes first)",
        )


def test_create_extension_at_default_version(backend, server, target, database, install, sql_findings):
    with server.connect(database(server)) as conn:
        install(conn)
        installed = installed_extension(conn, target.name)
    if installed is None:
        sql_findings.fail("sql.create", target.name, "CREATE EXTENSION succeeded, yet pg_extension has no such row")
    if installed["version"] != target.default_version:
        problem = shadowing_problem(target.name, backend.base_extension_files(), server.description)
        sql_findings.fail(
            "sql.create-version",
            target.name,
            f"CREATE EXTENSION {target.name} installed {installed['version']}, the image's default_version is "
            f"{target.default_version}" + (f"; {problem}" if problem else ""),
        )
