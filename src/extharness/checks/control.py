"""Control files and SQL scripts, judged as PostgreSQL 18 under CNPG will read them."""

from __future__ import annotations

from collections.abc import Iterable

from extharness.checks.findings import Finding, error, info, rule, warning
from extharness.checks.target import LayoutTarget
from extharness.inspect.control import check_valid_name
from extharness.inspect.extension import EXTENSION_DIR, LIB, ExtensionLayout
from extharness.inspect.scripts import find_libdir_loads

LIBDIR_PITFALL = (
    "CREATE EXTENSION works (function calls strip '$libdir/' and search dynamic_library_path), but "
    "LOAD '$libdir/...' and shared_preload_libraries entries with '$libdir/' do not strip it and fail for "
    "a library mounted at /extensions/<name>/lib; use the bare name, e.g. module_pathname = '{bare}'"
)


@rule("layout.control.parse", "The control file parses by PostgreSQL's rules")
def control_parses(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    if layout.control_error and layout.control_error != "missing":
        yield error("layout.control.parse", layout.control_path, f"PostgreSQL would reject it: {layout.control_error}")
    for path, problem in sorted(layout.secondary_errors.items()):
        yield error("layout.control.parse", path, f"PostgreSQL would reject it: {problem}")


@rule("layout.control.name", "Extension and version names are valid and match the files")
def control_name(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.control.name"
    problem = check_valid_name("extension", layout.name)
    if problem:
        yield error(rid, layout.control_path, f"PostgreSQL would reject it: {problem}; rename the control file")
    if layout.control is None:
        return
    for version in sorted(layout.scripts.versions):
        problem = check_valid_name("version", version)
        if problem:
            yield error(
                rid, f"{layout.script_dir}/{layout.name}--{version}.sql", f"PostgreSQL would reject it: {problem}"
            )
    for name in layout.scripts.ignored:
        yield warning(
            rid,
            f"{layout.script_dir}/{name}",
            "PostgreSQL ignores this script name "
            f"(expected {layout.name}--<version>.sql or {layout.name}--<from>--<to>.sql)",
        )
    stray = [
        e.name
        for e in layout.image.files.listdir(layout.script_dir)
        if e.name.endswith(".sql")
        and not e.name.startswith(f"{layout.name}--")
        and not any(e.name.startswith(f"{other}--") for other in _other_extensions(layout))
    ]
    for name in stray:
        yield warning(
            rid,
            f"{layout.script_dir}/{name}",
            f"belongs to no control file; a script of {layout.name} must be named {layout.name}--...sql",
        )


def _other_extensions(layout: ExtensionLayout) -> list[str]:
    return [
        e.name[: -len(".control")]
        for e in layout.image.files.listdir(EXTENSION_DIR)
        if e.name.endswith(".control") and "--" not in e.name
    ]


@rule("layout.control.module-pathname", "module_pathname names a library shipped in /lib")
def module_pathname(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.control.module-pathname"
    control = layout.control
    if control is None:
        return
    uses_placeholder = any(b"MODULE_PATHNAME" in sql for sql in layout.sql_scripts().values())
    if not control.module_pathname:
        if uses_placeholder:
            yield error(
                rid,
                layout.control_path,
                "scripts use MODULE_PATHNAME but the control file sets no "
                f"module_pathname; add module_pathname = '{layout.name}'",
            )
        return
    value = control.module_pathname
    path, problem = layout.module_library()
    if problem == "absolute":
        yield error(
            rid,
            layout.control_path,
            f"module_pathname = '{value}' is absolute: it points into the "
            f"operand image, not at /extensions/<name>/lib; use the bare library name",
        )
        return
    if problem == "subdirectory":
        yield error(
            rid,
            layout.control_path,
            f"module_pathname = '{value}' has a folder part; dynamic_library_path "
            "is only searched for bare names; ship the library in /lib and use its bare name",
        )
        return
    assert path is not None
    bare = path.rsplit("/", 1)[-1].removesuffix(".so")
    if value.startswith("$libdir/"):
        yield warning(rid, layout.control_path, f"module_pathname = '{value}': " + LIBDIR_PITFALL.format(bare=bare))
    if layout.image.files.get(path) is None:
        present = ", ".join(e.name for e in layout.image.files.listdir(LIB) if ".so" in e.name) or "none"
        yield error(
            rid,
            path,
            f"module_pathname = '{value}' needs {path}, which is not in the image (libraries present: {present})",
        )


@rule("layout.control.directory", "No absolute 'directory' in the control file")
def control_directory(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    control = layout.control
    if control is not None and control.directory and control.directory.startswith("/"):
        yield error(
            "layout.control.directory",
            layout.control_path,
            f"directory = '{control.directory}' is absolute: PostgreSQL would look for the scripts there in "
            "the operand image, not in the mounted extension; use a relative directory or none",
        )


@rule("layout.control.requires", "Required extensions are reported")
def control_requires(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    if layout.control is None or not layout.control.requires:
        return
    shipped = set(_other_extensions(layout))
    for name in layout.control.requires:
        where = (
            "shipped in this image"
            if name in shipped
            else "not in this image: the operand image or another "
            "extension image must provide it, and the Database resource must list it first (CNPG uses no CASCADE)"
        )
        yield info("layout.control.requires", layout.control_path, f"requires {name} ({where})")


@rule("layout.scripts.no-libdir-load", "No LOAD '$libdir/...' in scripts")
def no_libdir_load(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for path, sql in sorted(layout.sql_scripts().items()):
        text = sql.decode("utf-8", errors="replace")
        for line, statement in find_libdir_loads(text):
            yield error(
                "layout.scripts.no-libdir-load",
                f"{path}:{line}",
                f"{statement} fails when the library is mounted at /extensions/<name>/lib: LOAD does not "
                "strip '$libdir/'; use LOAD with the bare library name",
            )
