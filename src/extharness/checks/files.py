"""The files CNPG needs: control file, library, and a way to install the default version."""

from __future__ import annotations

from collections.abc import Iterable

from extharness.checks.findings import Finding, error, info, rule
from extharness.checks.target import LayoutTarget
from extharness.inspect.elf import is_elf
from extharness.inspect.extension import EXTENSION_DIR, LIB, ExtensionLayout
from extharness.inspect.model import FileType


@rule("layout.files.control", "The extension's control file is in /share/extension")
def control_present(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    entry = layout.image.files.get(layout.control_path)
    resolved = layout.image.files.resolve(layout.control_path)
    if entry is None:
        others = sorted(e.name for e in layout.image.files.listdir(EXTENSION_DIR) if e.name.endswith(".control"))
        yield error(
            "layout.files.control",
            layout.control_path,
            f"missing: CNPG's extension_control_path looks for share/extension/{layout.name}.control in the image; "
            f"copy the control file to /share/extension/ (control files present: {', '.join(others) or 'none'})",
        )
    elif resolved is None or resolved.type != FileType.FILE:
        yield error("layout.files.control", layout.control_path, "is not a regular file (or a link to one)")


@rule("layout.files.library", "Every library in /lib is a regular ELF shared object")
def library_elf(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.files.library"
    module_path, _problem = layout.module_library()
    expected = module_path or f"{LIB}/{layout.name}.so"
    libs = [e for e in layout.image.files.listdir(LIB) if e.type != FileType.DIR]
    entry = layout.image.files.get(expected)
    if entry is None:
        if module_path or libs or (layout.control and layout.control.module_pathname):
            yield error(
                rid,
                expected,
                f"missing: the library of extension {layout.name} must be at {expected} "
                "(copy the built .so to /lib/ in the image)",
            )
        else:
            yield info(rid, LIB, "no library: a SQL-only extension")
    for lib in libs:
        if not lib.name.endswith(".so") and ".so." not in lib.name:
            continue
        resolved = layout.image.files.resolve(lib.path)
        if resolved is None or resolved.type != FileType.FILE:
            yield error(rid, lib.path, "is not a regular file (a dangling link or a special file)")
            continue
        if not is_elf(resolved.content):
            yield error(rid, lib.path, "is not an ELF file: copy the compiled shared object, not a script or archive")
            continue
        summary = layout.elf.get(resolved.path)
        if summary is None:
            why = layout.elf_errors.get(resolved.path, "unreadable")
            yield error(rid, lib.path, f"is not a readable ELF shared object ({why}); rebuild it")
        elif summary.elf_type != "ET_DYN" or summary.has_interpreter:
            kind = "an executable" if summary.has_interpreter or summary.elf_type == "ET_EXEC" else summary.elf_type
            yield error(rid, lib.path, f"is {kind}, not a shared object: link it with -shared (PGXS does)")


@rule("layout.files.install-script", "An install script (or update chain) reaches default_version")
def install_script(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.files.install-script"
    control = layout.control
    if control is None:
        return
    version = control.default_version
    if not version:
        yield error(
            rid,
            layout.control_path,
            "has no default_version: CREATE EXTENSION without VERSION fails "
            "('version to install must be specified'); set default_version in the control file",
        )
        return
    path = layout.scripts.install_path(version)
    wanted = f"{layout.script_dir}/{layout.name}--{version}.sql"
    if path is None:
        have = ", ".join(sorted(layout.scripts.install)) or "none"
        yield error(
            rid,
            wanted,
            f"missing: no install script for default_version {version} and no update chain "
            f"from an installable version reaches it (install scripts for: {have}); "
            f"ship {layout.name}--{version}.sql or the missing update scripts",
        )
    elif len(path) > 1:
        yield info(rid, wanted, f"default_version {version} is installed through {' -> '.join(path)}")
