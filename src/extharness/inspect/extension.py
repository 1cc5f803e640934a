"""One extension inside one platform image: its control file, scripts and libraries."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from extharness.errors import HarnessError
from extharness.inspect.control import ControlFile, ControlFileError, parse_control
from extharness.inspect.elf import ElfSummary, NotElf, is_elf, summarize
from extharness.inspect.model import ExtensionImage, FileType, PlatformImage
from extharness.inspect.scripts import ScriptSet

SHARE = "/share"
EXTENSION_DIR = "/share/extension"
LIB = "/lib"
SYSTEM = "/system"


def control_names(image: PlatformImage) -> list[str]:
    """Extension names with a primary control file in /share/extension."""
    names = []
    for entry in image.files.listdir(EXTENSION_DIR):
        if entry.name.endswith(".control") and "--" not in entry.name:
            names.append(entry.name[: -len(".control")])
    return sorted(names)


def choose_extension(image: ExtensionImage, wanted: str | None) -> str:
    """The extension to check: ``wanted`` if given, else the only one the image holds."""
    names = sorted({n for i in image.images for n in control_names(i)})
    if wanted:
        return wanted
    if len(names) == 1:
        return names[0]
    libraries = sorted(
        {e.name[: -len(".so")] for i in image.images for e in i.files.listdir(LIB) if e.name.endswith(".so")}
    )
    if not names and len(libraries) == 1:
        # The one library names the extension, so layout.files.control reports the missing file.
        return libraries[0]
    if not names:
        raise HarnessError(
            f"{image.reference}: no control file under {EXTENSION_DIR}/ — not an extension image "
            "(expected /share/extension/<ext>.control)"
        )
    raise HarnessError(f"{image.reference}: holds several extensions ({', '.join(names)}); pick one with --ext-name")


@dataclass
class ExtensionLayout:
    """What the checks need to know about ``name`` in one platform image."""

    name: str
    image: PlatformImage
    control: ControlFile | None
    control_error: str | None
    script_dir: str
    scripts: ScriptSet
    secondary_controls: dict[str, ControlFile] = field(default_factory=dict)
    secondary_errors: dict[str, str] = field(default_factory=dict)
    elf: dict[str, ElfSummary] = field(default_factory=dict)  # path -> summary
    elf_errors: dict[str, str] = field(default_factory=dict)  # path -> why it is not a readable ELF

    @property
    def platform(self) -> str:
        return str(self.image.platform)

    @property
    def control_path(self) -> str:
        return f"{EXTENSION_DIR}/{self.name}.control"

    def module_library(self) -> tuple[str | None, str | None]:
        """(image path of the library ``module_pathname`` names, problem) for this image."""
        if self.control is None or not self.control.module_pathname:
            return None, None
        value = self.control.module_pathname
        if value.startswith("$libdir/"):
            value = value[len("$libdir/") :]
        elif value.startswith("/"):
            return None, "absolute"
        if "/" in value:
            return None, "subdirectory"
        filename = value if value.endswith(".so") else f"{value}.so"
        return f"{LIB}/{filename}", None

    def sql_scripts(self) -> dict[str, bytes]:
        result = {}
        for entry in self.image.files.listdir(self.script_dir):
            if entry.name.endswith(".sql") and entry.name.startswith(f"{self.name}--"):
                content = self.image.files.content_of(entry.path)
                if content is not None:
                    result[entry.path] = content
        return result


def describe(image: PlatformImage, name: str) -> ExtensionLayout:
    """Parse what ``name`` ships in ``image``; problems are recorded, never raised."""
    control: ControlFile | None = None
    control_error: str | None = None
    control_path = f"{EXTENSION_DIR}/{name}.control"
    raw = image.files.content_of(control_path)
    if raw is None:
        control_error = "missing"
    else:
        try:
            control = parse_control(raw, name, filename=f"{name}.control")
        except ControlFileError as exc:
            control_error = str(exc)
    script_dir = EXTENSION_DIR
    if control is not None and control.directory:
        if control.directory.startswith("/"):
            script_dir = control.directory  # reported as an error by the checks
        else:
            script_dir = posixpath.normpath(posixpath.join(SHARE, control.directory))
    names = [e.name for e in image.files.listdir(script_dir)]
    layout = ExtensionLayout(
        name=name,
        image=image,
        control=control,
        control_error=control_error,
        script_dir=script_dir,
        scripts=ScriptSet.from_names(name, names),
    )
    if control is not None:
        for entry in image.files.listdir(script_dir):
            prefix = f"{name}--"
            if entry.name.startswith(prefix) and entry.name.endswith(".control"):
                version = entry.name[len(prefix) : -len(".control")]
                try:
                    layout.secondary_controls[version] = parse_control(
                        image.files.content_of(entry.path) or b"",
                        name,
                        filename=entry.name,
                        version=version,
                        base=control,
                    )
                except ControlFileError as exc:
                    layout.secondary_errors[entry.path] = str(exc)
    for entry in image.files:
        if entry.type != FileType.FILE:
            continue
        if not (entry.path.startswith(LIB + "/") or entry.path.startswith(SYSTEM + "/")):
            continue
        if entry.path.startswith(LIB + "/bitcode/"):
            continue
        looks_like_library = ".so" in entry.name or is_elf(entry.content)
        if not looks_like_library:
            continue
        try:
            layout.elf[entry.path] = summarize(entry.content or b"")
        except NotElf as exc:
            layout.elf_errors[entry.path] = str(exc)
    return layout
