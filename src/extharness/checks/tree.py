"""Nothing else in the image: allowed folders only, no executables, safe modes and links."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from extharness.checks.findings import Finding, error, rule, warning
from extharness.checks.target import POSTGRES_GID, POSTGRES_UID, LayoutTarget
from extharness.inspect.elf import ElfSummary, NotElf, is_elf, summarize
from extharness.inspect.extension import ExtensionLayout
from extharness.inspect.model import FileType, ImageFile, normalize_path

ALLOWED_ROOTS = ("/lib", "/share", "/licenses", "/system")
SHELL_NAMES = {"sh", "bash", "dash", "ash", "zsh", "busybox", "ksh", "csh", "tcsh"}


@rule("layout.tree.allowed-roots", "Only /lib, /share (plus /licenses, /system) at the top")
def allowed_roots(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for entry in layout.image.files.listdir("/"):
        if entry.path not in ALLOWED_ROOTS:
            yield error(
                "layout.tree.allowed-roots",
                entry.path,
                "not expected in an extension image (only /lib, /share, /licenses, /system): build the "
                "final stage FROM scratch and COPY only the extension's files",
            )


def _is_program(entry: ImageFile, summary: ElfSummary | None) -> str | None:
    content = entry.content or b""
    if entry.name in SHELL_NAMES:
        return "a shell"
    if content.startswith(b"#!"):
        return "a script with a #! line"
    if is_elf(content):
        if summary is None:
            try:
                summary = summarize(content)
            except NotElf:
                return None
        if summary.elf_type == "ET_EXEC" or summary.has_interpreter:
            return "an ELF executable"
    return None


@rule("layout.tree.no-executables", "No shell, programs or scripts")
def no_executables(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.tree.no-executables"
    for entry in layout.image.files:
        if entry.type != FileType.FILE:
            continue
        what = _is_program(entry, layout.elf.get(entry.path))
        if what:
            yield error(rid, entry.path, f"is {what}: an extension image must hold no programs; remove it")
        elif entry.is_executable and not (is_elf(entry.content) or ".so" in entry.name):
            yield warning(rid, entry.path, f"has execute bits ({oct(entry.mode)}) but is data; use mode 0644")


@rule("layout.tree.no-setuid", "No setuid or setgid bits")
def no_setuid(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for entry in layout.image.files:
        if entry.type in (FileType.FILE, FileType.DIR) and entry.mode & 0o6000:
            bits = " and ".join(b for b, m in (("setuid", 0o4000), ("setgid", 0o2000)) if entry.mode & m)
            yield error("layout.tree.no-setuid", entry.path, f"has the {bits} bit ({oct(entry.mode)}); chmod u-s,g-s")


@rule("layout.tree.no-world-writable", "No world-writable files or folders")
def no_world_writable(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for entry in layout.image.files:
        if entry.type in (FileType.FILE, FileType.DIR) and entry.mode & 0o002:
            yield error(
                "layout.tree.no-world-writable",
                entry.path,
                f"is world-writable ({oct(entry.mode)}); chmod o-w before building the image",
            )


@rule("layout.tree.no-special-files", "No devices, fifos or sockets")
def no_special_files(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for entry in layout.image.files:
        if entry.type.is_device_like:
            yield error(
                "layout.tree.no-special-files",
                entry.path,
                f"is a {entry.type.value}; an extension image holds only files, folders and links",
            )


@rule("layout.tree.symlinks", "Links stay inside the image and resolve")
def symlinks_inside(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.tree.symlinks"
    for entry in layout.image.files:
        if entry.type not in (FileType.SYMLINK, FileType.HARDLINK) or entry.linkname is None:
            continue
        link = entry.linkname
        if entry.type == FileType.SYMLINK and link.startswith("/"):
            yield error(
                rid,
                entry.path,
                f"is an absolute link to {link}: mounted at /extensions/<name> it points "
                "into the operand image instead; use a relative link",
            )
            continue
        joined = posixpath.join(entry.parent, link) if entry.type == FileType.SYMLINK else "/" + link
        depth = 0
        for part in joined.split("/"):
            if part == "..":
                depth -= 1
                if depth < 0:
                    break
            elif part not in ("", "."):
                depth += 1
        if depth < 0:
            yield error(rid, entry.path, f"links to {link}, which leaves the image; remove it or link inside")
            continue
        if layout.image.files.resolve(entry.path) is None:
            yield error(rid, entry.path, f"links to {normalize_path(joined)}, which does not exist (or loops)")


def _can(entry: ImageFile, need: int) -> bool:
    """Whether UID/GID 26 has all ``need`` bits (r=4, w=2, x=1) on ``entry``."""
    if entry.uid == POSTGRES_UID:
        bits = (entry.mode >> 6) & 7
    elif entry.gid == POSTGRES_GID:
        bits = (entry.mode >> 3) & 7
    else:
        bits = entry.mode & 7
    return bits & need == need


@rule("layout.tree.readable-by-postgres", "Readable (folders traversable) by UID 26")
def readable_by_postgres(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.tree.readable-by-postgres"
    for entry in layout.image.files:
        if entry.path == "/":
            continue
        if entry.type == FileType.DIR and not _can(entry, 5):
            yield error(
                rid,
                entry.path,
                f"folder {oct(entry.mode)} owned by {entry.uid}:{entry.gid} cannot be "
                f"listed and entered by postgres (UID {POSTGRES_UID}); chmod 0755",
            )
        elif entry.type == FileType.FILE and not _can(entry, 4):
            yield error(
                rid,
                entry.path,
                f"file {oct(entry.mode)} owned by {entry.uid}:{entry.gid} cannot be read "
                f"by postgres (UID {POSTGRES_UID}); chmod 0644 (0755 for .so)",
            )


@rule("layout.tree.archive-entries", "Layer entries are well-formed")
def archive_entries(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    for anomaly in layout.image.anomalies:
        yield error("layout.tree.archive-entries", "/", f"{anomaly}; rebuild the image with a normal builder")
