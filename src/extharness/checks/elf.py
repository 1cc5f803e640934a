"""Libraries that the operand image's dynamic linker and PostgreSQL will accept."""

from __future__ import annotations

from collections.abc import Iterable

from extharness.checks.findings import Finding, error, rule, warning
from extharness.checks.target import LayoutTarget
from extharness.inspect.extension import LIB, SYSTEM, ExtensionLayout

ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64", "arm64v8": "arm64"}


@rule("layout.elf.architecture", "Libraries match the image platform's architecture")
def architecture(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    wanted = ARCH_ALIASES.get(layout.image.platform.architecture, layout.image.platform.architecture)
    for path, summary in sorted(layout.elf.items()):
        if summary.architecture != wanted:
            yield error(
                "layout.elf.architecture",
                path,
                f"is built for {summary.architecture} ({summary.machine}) but the image says "
                f"{layout.image.platform}; build it for {wanted} or fix the platform",
            )


@rule("layout.elf.glibc", "No library needs a newer glibc than the operand image has")
def glibc(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    limit = target.operand.glibc
    for path, summary in sorted(layout.elf.items()):
        needed = summary.max_glibc_needed
        if needed is not None and needed > limit:
            yield error(
                "layout.elf.glibc",
                path,
                f"needs GLIBC_{needed} but {target.operand.reference} has glibc {limit} "
                f"({target.operand.source}); it fails with \"version 'GLIBC_{needed}' not found\". "
                "Build on the operand's distribution (or older), e.g. a bookworm/trixie builder",
            )


@rule("layout.elf.needed", "Every needed library is shipped or in the operand image")
def needed(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    shipped = {p.rsplit("/", 1)[-1] for p in layout.elf} | {
        e.name for e in layout.image.files if e.path.startswith((LIB + "/", SYSTEM + "/"))
    }
    for path, summary in sorted(layout.elf.items()):
        for soname in summary.needed:
            if soname in shipped or target.operand.provides(soname):
                continue
            yield error(
                "layout.elf.needed",
                path,
                f"needs {soname}, which is neither shipped in the image (/lib, /system) nor in "
                f"{target.operand.reference} ({target.operand.source}); ship it under /system and "
                "declare ld_library_path: [system] in the Cluster's extension entry",
            )


@rule("layout.elf.rpath", "No RPATH/RUNPATH to build-machine paths")
def rpath(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for path, summary in sorted(layout.elf.items()):
        for kind, entries in (("RPATH", summary.rpath), ("RUNPATH", summary.runpath)):
            for entry in entries:
                if entry.startswith("$ORIGIN") or entry.startswith("${ORIGIN}") or entry.startswith("/extensions/"):
                    continue
                yield error(
                    "layout.elf.rpath",
                    path,
                    f"has {kind} {entry}, a path of the build machine; relink without it "
                    "(PGXS: make rpath=, cargo/pgrx: no -rpath)",
                )


@rule("layout.elf.module-magic", "The module library carries PostgreSQL's module magic")
def module_magic(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    path, _problem = layout.module_library()
    if path is None:
        return
    summary = layout.elf.get(path)
    if summary is not None and not summary.has_pg_module_magic:
        yield error(
            "layout.elf.module-magic",
            path,
            "exports no Pg_magic_func: PostgreSQL refuses it ('incompatible library: missing magic block'); "
            "add PG_MODULE_MAGIC_EXT(.name=..., .version=...) (pgrx: pg_module_magic!())",
        )
    for other, summary in sorted(layout.elf.items()):
        if other != path and other.startswith(LIB + "/") and not summary.has_pg_module_magic:
            yield warning(
                "layout.elf.module-magic",
                other,
                "has no module magic: fine for a helper library, but PostgreSQL cannot LOAD it",
            )
