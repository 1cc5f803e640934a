"""The sql tier's checks: small functions over a psycopg connection that return plain data,
and pure functions that compare that data or explain a failure.

Nothing here starts servers or knows which backend it runs on. A failing check of the tier is a
:class:`Finding` with one of the stable ids of :data:`RULES` (:func:`sql_finding`); the upgrade
from another image has its own, ``sql.upgrade.*`` (``checks/upgrade.py``).
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from extharness.checks.findings import Finding, Severity
from extharness.checks.upgrade import RULES as UPGRADE_RULES
from extharness.errors import HarnessError
from extharness.inspect.extension import ExtensionLayout
from extharness.inspect.scripts import find_libdir_loads
from extharness.postgres.profiles import SmokeStep

#: The sql tier's rule ids (the harness's interface: CI and reports match on them) and what each checks.
RULES = {
    "sql.control-visible": "the server sees the image's control file where CNPG mounts it",
    "sql.shadowed": "no copy of the extension in the base's $system hides the mounted image",
    "sql.available": "pg_available_extensions lists the extension at the image's default_version",
    "sql.create": "CREATE EXTENSION succeeds (as CNPG's Database resource runs it)",
    "sql.create-version": "CREATE EXTENSION installs the image's default_version",
    "sql.drop-create": "DROP EXTENSION leaves nothing behind; CREATE again gives the same objects",
    "sql.schema": "the extension keeps its control file's promises about schema and relocation",
    "sql.privilege": "trusted and superuser in the control file decide who may create the extension",
    "sql.dump-restore": "pg_dump and pg_restore keep the extension and the profile's data",
    "sql.mount-untouched": "PostgreSQL writes nothing under the mounted image (read-only in CNPG)",
    "sql.preload": "the server starts with shared_preload_libraries set to the bare library name",
    "sql.loaded-module": "pg_get_loaded_modules() lists the preloaded library, with the profile's module name and version",
    "sql.workers": "the profile's background workers run with the library preloaded",
    "sql.smoke": "the profile's smoke SQL gives exactly the expected results",
    "sql.update.paths": "pg_extension_update_paths() gives the update paths of the image's scripts",
    "sql.update.to-default": "every installable version can be updated to the default version",
    "sql.update.failed": "ALTER EXTENSION ... UPDATE along each update script of the image succeeds",
}


def sql_finding(rule: str, subject: str, message: str, backend: str | None = None) -> Finding:
    """An error of the sql tier's check ``rule`` about ``subject``; ``backend``: where it was seen."""
    if rule not in RULES and rule not in UPGRADE_RULES:
        raise ValueError(f"unknown sql rule id {rule!r} (add it to sqlchecks.RULES)")
    return Finding(rule, Severity.ERROR, subject, message, cases=(f"{backend} backend",) if backend else ())


class CreateFailed(HarnessError):
    """CREATE EXTENSION failed: the statement, and PostgreSQL's error with what it means for the image."""

    def __init__(self, statement: str, reason: str) -> None:
        super().__init__(f"{statement} failed: {reason}")
        self.statement = statement
        self.reason = reason


# -- errors as text ------------------------------------------------------------------------------------
def error_text(exc: BaseException) -> str:
    """PostgreSQL's message, detail and hint on one line."""
    diag = getattr(exc, "diag", None)
    if diag is not None and diag.message_primary:
        parts = [diag.message_primary]
        if diag.message_detail:
            parts.append(f"DETAIL: {diag.message_detail}")
        if diag.message_hint:
            parts.append(f"HINT: {diag.message_hint}")
        return " ".join(parts)
    return " ".join(str(exc).split())


# -- reading the server -------------------------------------------------------------------------------
def file_exists(conn: psycopg.Connection, path: str) -> bool:
    """Whether the server process can see ``path`` (superuser only)."""
    # pg_stat_file(...) IS NOT NULL would be false: "creation" is always NULL on Linux.
    row = conn.execute("SELECT (pg_catalog.pg_stat_file(%s, true)).size IS NOT NULL", (path,)).fetchone()
    return bool(row and row[0])


def available_extension(conn: psycopg.Connection, ext: str) -> dict | None:
    row = conn.execute(
        "SELECT name, default_version, installed_version, comment FROM pg_catalog.pg_available_extensions "
        "WHERE name = %s",
        (ext,),
    ).fetchone()
    return dict(zip(("name", "default_version", "installed_version", "comment"), row)) if row else None


def create_extension(conn: psycopg.Connection, ext: str, version: str | None = None, schema: str | None = None) -> None:
    """``CREATE EXTENSION`` like CNPG's Database resource does (no CASCADE)."""
    query = sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(ext))
    if version:
        query += sql.SQL(" VERSION {}").format(sql.Literal(version))
    if schema:
        query += sql.SQL(" SCHEMA {}").format(sql.Identifier(schema))
    conn.execute(query)


def install_extension(
    conn: psycopg.Connection,
    ext: str,
    layout: ExtensionLayout | None = None,
    version: str | None = None,
    schema: str | None = None,
) -> None:
    """``create_extension``; a failure becomes :class:`CreateFailed` saying what it means for the image."""
    try:
        create_extension(conn, ext, version, schema)
    except psycopg.Error as exc:
        what = (
            f"CREATE EXTENSION {ext}"
            + (f" VERSION '{version}'" if version else "")
            + (f" SCHEMA {schema}" if schema else "")
        )
        raise CreateFailed(what, explain_create_failure(error_text(exc), ext, layout)) from None


def update_extension(conn: psycopg.Connection, ext: str, version: str) -> None:
    conn.execute(sql.SQL("ALTER EXTENSION {} UPDATE TO {}").format(sql.Identifier(ext), sql.Literal(version)))


def drop_extension(conn: psycopg.Connection, ext: str, cascade: bool = False) -> None:
    conn.execute(sql.SQL("DROP EXTENSION {}{}").format(sql.Identifier(ext), sql.SQL(" CASCADE" if cascade else "")))


def installed_extension(conn: psycopg.Connection, ext: str) -> dict | None:
    row = conn.execute(
        "SELECT e.extname, e.extversion, n.nspname, e.extrelocatable FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = %s",
        (ext,),
    ).fetchone()
    return dict(zip(("name", "version", "schema", "relocatable"), row)) if row else None


def update_paths(conn: psycopg.Connection, ext: str) -> list[tuple[str, str, str]]:
    """(source, target, path) rows of ``pg_extension_update_paths()`` that have a path."""
    rows = conn.execute(
        "SELECT source, target, path FROM pg_catalog.pg_extension_update_paths(%s) WHERE path IS NOT NULL "
        "ORDER BY source, target",
        (ext,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def loaded_modules(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute("SELECT module_name, version, file_name FROM pg_catalog.pg_get_loaded_modules()").fetchall()
    return [dict(zip(("module_name", "version", "file_name"), r)) for r in rows]


def backend_types(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT backend_type FROM pg_catalog.pg_stat_activity").fetchall() if r[0]]


def wait_for_backend_types(conn: psycopg.Connection, expected: Iterable[str], timeout: float = 15.0) -> list[str]:
    """The expected backend types still missing after ``timeout`` seconds (empty: all there)."""
    wanted = list(expected)
    deadline = time.monotonic() + timeout
    while True:
        seen = set(backend_types(conn))
        missing = [w for w in wanted if w not in seen]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.1)


# -- member objects -----------------------------------------------------------------------------------
_MEMBERS = """
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), d.classid::regclass::text, d.objid
FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e' AND e.extname = %s
"""

_DEFINITIONS = {
    "pg_class": [
        "SELECT relkind::text, relacl::text FROM pg_catalog.pg_class WHERE oid = %(oid)s",
        "SELECT string_agg(format('%%s %%s%%s%%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
        "CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, "
        "COALESCE(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')), ', ' ORDER BY a.attname) "
        "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef ad "
        "ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum "
        "WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped",
        "SELECT string_agg(conname || ' ' || pg_catalog.pg_get_constraintdef(oid), '; ' ORDER BY conname) "
        "FROM pg_catalog.pg_constraint WHERE conrelid = %(oid)s",
        "SELECT string_agg(pg_catalog.pg_get_indexdef(indexrelid), '; ' ORDER BY 1) FROM pg_catalog.pg_index "
        "WHERE indrelid = %(oid)s",
        "SELECT string_agg(pg_catalog.pg_get_triggerdef(oid), '; ' ORDER BY tgname) FROM pg_catalog.pg_trigger "
        "WHERE tgrelid = %(oid)s AND NOT tgisinternal",
        "SELECT CASE WHEN relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(oid) END FROM pg_catalog.pg_class "
        "WHERE oid = %(oid)s",
        "SELECT format('start %%s increment %%s min %%s max %%s cycle %%s', seqstart, seqincrement, seqmin, seqmax, "
        "seqcycle) FROM pg_catalog.pg_sequence WHERE seqrelid = %(oid)s",
        "SELECT 'column comments ' || string_agg(format('%%s %%L', a.attname, d.description), ', ' ORDER BY a.attname) "
        "FROM pg_catalog.pg_description d JOIN pg_catalog.pg_attribute a "
        "ON a.attrelid = d.objoid AND a.attnum = d.objsubid "
        "WHERE d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = %(oid)s AND d.objsubid > 0",
    ],
    "pg_proc": [
        "SELECT format('%%s returns %%s language %%s kind %%s volatile %%s strict %%s parallel %%s secdef %%s '"
        "'config %%s acl %%s bin %%s', pg_catalog.pg_get_function_arguments(p.oid), "
        "pg_catalog.pg_get_function_result(p.oid), l.lanname, p.prokind, p.provolatile, p.proisstrict, "
        "p.proparallel, p.prosecdef, p.proconfig, p.proacl, p.probin) "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang WHERE p.oid = %(oid)s",
        "SELECT regexp_replace(prosrc, '\\s+', ' ', 'g') FROM pg_catalog.pg_proc WHERE oid = %(oid)s",
    ],
    "pg_type": [
        "SELECT format('%%s type %%s', pg_catalog.format_type(oid, NULL), typtype) FROM pg_catalog.pg_type "
        "WHERE oid = %(oid)s",
        "SELECT string_agg(enumlabel, ', ' ORDER BY enumsortorder) FROM pg_catalog.pg_enum WHERE enumtypid = %(oid)s",
        "SELECT string_agg(conname || ' ' || pg_catalog.pg_get_constraintdef(oid), '; ' ORDER BY conname) "
        "FROM pg_catalog.pg_constraint WHERE contypid = %(oid)s",
    ],
    "pg_namespace": ["SELECT nspacl::text FROM pg_catalog.pg_namespace WHERE oid = %(oid)s"],
    "pg_event_trigger": [
        "SELECT format('%%s %%s %%s %%s', evtevent, evtfoid::regproc, evttags, evtenabled) "
        "FROM pg_catalog.pg_event_trigger WHERE oid = %(oid)s",
    ],
}
_COMMENT = (
    "SELECT description FROM pg_catalog.pg_description WHERE classoid = %(cls)s::regclass "
    "AND objoid = %(oid)s AND objsubid = 0"
)


def member_objects(conn: psycopg.Connection, ext: str) -> dict[str, str]:
    """The extension's member objects (pg_depend deptype 'e'): identity -> definition summary.

    The definition covers what an update script can get wrong while keeping the object's
    identity: table columns, constraints, indexes and triggers, view and function bodies,
    function attributes, privileges, comments (a table's column comments too), and the extension's
    dumped configuration.
    """
    members: dict[str, str] = {}
    for identity, catalog, oid in conn.execute(_MEMBERS, (ext,)).fetchall():
        parts = []
        for query in _DEFINITIONS.get(catalog, []):
            row = conn.execute(query, {"oid": oid}).fetchone()
            if row and any(v is not None for v in row):
                parts.append(" ".join("" if v is None else str(v) for v in row))
        comment = conn.execute(_COMMENT, {"cls": catalog, "oid": oid}).fetchone()
        if comment:
            parts.append(f"comment {comment[0]!r}")
        members[identity] = " | ".join(parts)
    row = conn.execute(
        "SELECT extconfig::regclass[]::text, extcondition::text FROM pg_catalog.pg_extension WHERE extname = %s", (ext,)
    ).fetchone()
    if row and row[0]:
        members["(extension configuration tables)"] = f"{row[0]} {row[1]}"
    return members


def compare_members(after_update: dict[str, str], fresh: dict[str, str]) -> list[str]:
    """How the objects after an update differ from a fresh install (empty: identical), every
    difference in full: a cut-off definition hides the attribute that differs."""
    problems: list[str] = []
    for identity in sorted(set(fresh) - set(after_update)):
        problems.append(f"{identity}: missing after the update (a fresh install creates it)")
    for identity in sorted(set(after_update) - set(fresh)):
        problems.append(f"{identity}: present after the update but not in a fresh install")
    for identity in sorted(set(fresh) & set(after_update)):
        if fresh[identity] != after_update[identity]:
            problems.append(
                f"{identity}: differs — after update: {after_update[identity]}; fresh install: {fresh[identity]}"
            )
    return problems


# -- smoke SQL ---------------------------------------------------------------------------------------
def normalize(value: object) -> object:
    """A database value as the plain TOML-like value profiles write expectations in."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def values_equal(expected: object, actual: object) -> bool:
    actual = normalize(actual)
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected == actual and isinstance(expected, bool) == isinstance(actual, bool)
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    return str(expected) == str(actual)


def rows_match(expected: list[list], actual: list[tuple]) -> bool:
    return len(expected) == len(actual) and all(
        len(e) == len(a) and all(values_equal(x, y) for x, y in zip(e, a)) for e, a in zip(expected, actual)
    )


@dataclass
class StepResult:
    step: SmokeStep
    rows: list[tuple] | None
    error: str | None

    @property
    def ok(self) -> bool:
        if self.error:
            return False
        return self.step.expect is None or rows_match(self.step.expect, self.rows or [])

    def describe(self) -> str:
        text = " ".join(self.step.sql.split())
        if self.error:
            return f"{text!r} failed: {self.error}"
        shown = [[normalize(v) for v in row] for row in (self.rows or [])]
        return f"{text!r} returned {shown}, expected {self.step.expect}"


def run_step(conn: psycopg.Connection, step: SmokeStep) -> StepResult:
    try:
        cur = conn.execute(step.sql)
        rows = cur.fetchall() if cur.description else []
        return StepResult(step, rows, None)
    except psycopg.Error as exc:
        return StepResult(step, None, error_text(exc))


def run_smoke(conn: psycopg.Connection, steps: Iterable[SmokeStep]) -> list[StepResult]:
    """Run steps in order, stopping at the first that fails."""
    results = []
    for step in steps:
        result = run_step(conn, step)
        results.append(result)
        if not result.ok:
            break
    return results


# -- explanations (pure) ------------------------------------------------------------------------------
def shadowing_problem(ext: str, base_files: set[str], where: str) -> str | None:
    """Why a copy of ``ext`` in the base's ``$system`` defeats the mounted image, if there is one."""
    own = sorted(f for f in base_files if f == f"{ext}.control" or f.startswith(f"{ext}--"))
    if f"{ext}.control" not in base_files:
        return None
    return (
        f"the base ({where}) already ships {ext} in $system ({', '.join(own[:4])}{', ...' if len(own) > 4 else ''}): "
        "CloudNativePG sets extension_control_path = '$system:/extensions/<name>/share' and "
        "dynamic_library_path = '$libdir:/extensions/<name>/lib', $system and $libdir first, so PostgreSQL "
        "uses the base's copy and never the mounted image; use an operand image without it "
        "(CNPG's -minimal images) or drop the image"
    )


_MISSING_SO = re.compile(r"([^\s:\"]+\.so[^\s:\"]*): cannot open shared object file")
_GLIBC = re.compile(r"version [`']?(GLIBC_[\d.]+)'? not found")


def explain_create_failure(message: str, ext: str, layout: ExtensionLayout | None = None) -> str:
    """PostgreSQL's error for ``CREATE EXTENSION``/loading, plus what it means for an image."""
    hint = ""
    default = layout.control.default_version if layout and layout.control else None
    if "has no installation script nor update path" in message and layout is not None:
        scripts = layout.scripts
        names = sorted(list(scripts.install.values()) + list(scripts.updates.values()))
        hint = (
            f"the image's scripts ({', '.join(names) or 'none'}) give no way to install "
            f"version {default}: ship {ext}--{default}.sql, or an update script chain from an installable "
            "version (missing upgrade script)"
        )
    elif "$libdir/" in message:
        loads = []
        if layout is not None:
            for path, content in layout.sql_scripts().items():
                for line, text in find_libdir_loads(content.decode(errors="replace")):
                    loads.append(f"{path.rsplit('/', 1)[-1]}:{line}: {text}")
        hint = (
            "LOAD '$libdir/...' does not search dynamic_library_path (only function calls strip the "
            "$libdir/ prefix), so a library mounted under /extensions/<name>/lib is not found; "
            f"use LOAD '{ext}' (bare name) instead" + (f" — found: {'; '.join(loads)}" if loads else "")
        )
    elif (match := _MISSING_SO.search(message)) is not None:
        hint = (
            f"the library needs {match.group(1)}, which neither the base image nor the extension image "
            "provides: ship it under /system in the image and declare ld_library_path: [system] in the "
            "Cluster, or link it statically"
        )
    elif (match := re.search(r"undefined symbol: (\S+)", message)) is not None:
        hint = (
            f"the library uses {match.group(1)}, which nothing loaded defines: a shared library it needs is "
            "not linked in (no DT_NEEDED) or it was built for another PostgreSQL build"
        )
    elif (match := _GLIBC.search(message)) is not None:
        hint = (
            f"the library was built against a newer glibc ({match.group(1)}) than the base image has: "
            "build on the operand's distribution (e.g. Debian trixie for -trixie operands)"
        )
    elif "is not available" in message or "could not open extension control file" in message:
        hint = (
            "PostgreSQL did not find the control file in extension_control_path: the image is not "
            "mounted, or its control file is not at /share/extension/<ext>.control"
        )
    elif "incompatible library" in message or "magic block" in message:
        hint = "the library was built for another PostgreSQL major version (or without PG_MODULE_MAGIC)"
    elif "permission denied to create extension" in message:
        hint = "the extension is not trusted: only superusers can create it"
    return message if not hint else f"{message}\n  -> {hint}"
