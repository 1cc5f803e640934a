"""A release folder (``dist/``): ``artifact/lib/*.so`` and ``artifact/extension/*``.

It is the build context of ``cnpg/Dockerfile.ext``. The embedded builder turns it into
exactly the files that Dockerfile's two COPY lines produce.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from extharness.errors import HarnessError
from extharness.inspect.control import ControlFileError, parse_control
from extharness.inspect.model import FileType
from extharness.source.oci_writer import LayerEntry

LIB_SUBDIR = Path("artifact/lib")
EXT_SUBDIR = Path("artifact/extension")


@dataclass(frozen=True)
class ImageLabels:
    """The build arguments of cnpg/Dockerfile.ext, which become OCI labels."""

    title: str
    description: str
    version: str
    licenses: str
    source: str

    def as_oci(self) -> dict[str, str]:
        return {
            "org.opencontainers.image.title": self.title,
            "org.opencontainers.image.description": self.description,
            "org.opencontainers.image.version": self.version,
            "org.opencontainers.image.licenses": self.licenses,
            "org.opencontainers.image.source": self.source,
        }

    def as_build_args(self) -> dict[str, str]:
        return {
            "TITLE": self.title,
            "DESCRIPTION": self.description,
            "VERSION": self.version,
            "LICENSES": self.licenses,
            "REPO_URL": self.source,
        }


@dataclass(frozen=True)
class ReleaseFolder:
    root: Path

    @classmethod
    def open(cls, path: Path | str) -> ReleaseFolder:
        root = Path(path)
        if not root.exists():
            raise HarnessError(
                f"{root}: no such folder (expected a release folder with artifact/lib and artifact/extension)"
            )
        if not root.is_dir():
            raise HarnessError(
                f"{root}: not a folder (expected a release folder with artifact/lib and artifact/extension)"
            )
        missing = [str(sub) for sub in (LIB_SUBDIR, EXT_SUBDIR) if not (root / sub).is_dir()]
        if missing:
            raise HarnessError(
                f"{root}: not a release folder, missing {' and '.join(missing)} "
                "(the Dockerfile.ext build context holds artifact/lib/*.so and artifact/extension/*)"
            )
        if not any((root / EXT_SUBDIR).iterdir()):
            raise HarnessError(f"{root / EXT_SUBDIR}: empty; expected the control file and SQL scripts")
        folder = cls(root)
        for source, _image_path in folder._files():  # refuse fifos, sockets, devices up front (one error)
            kind = source.lstat().st_mode
            if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind) or stat.S_ISLNK(kind)):
                raise HarnessError(f"{source}: not a regular file, folder or link; a release folder holds files only")
        return folder

    def _files(self) -> list[tuple[Path, str]]:
        """(source file, image path) pairs, as the Dockerfile's COPY lines place them."""
        pairs: list[tuple[Path, str]] = []
        for lib in sorted((self.root / LIB_SUBDIR).glob("*.so")):
            pairs.append((lib, f"/lib/{lib.name}"))
        ext_root = self.root / EXT_SUBDIR
        for dirpath, dirnames, filenames in os.walk(ext_root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                rel = full.relative_to(ext_root).as_posix()
                pairs.append((full, f"/share/extension/{rel}"))
        return pairs

    def entries(self) -> list[LayerEntry]:
        entries = []
        for source, image_path in self._files():
            info = source.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries.append(LayerEntry(image_path, FileType.SYMLINK, 0o777, linkname=os.readlink(source)))
            elif stat.S_ISDIR(info.st_mode):
                entries.append(LayerEntry(image_path, FileType.DIR, mode))
            elif stat.S_ISREG(info.st_mode):
                entries.append(LayerEntry(image_path, FileType.FILE, mode, source.read_bytes()))
            else:
                raise HarnessError(f"{source}: not a regular file, folder or link; a release folder holds files only")
        return entries

    def fingerprint(self) -> str:
        """A hash of names, modes and contents: the cache key of images built from it."""
        digest = hashlib.sha256()
        for entry in self.entries():
            digest.update(f"{entry.path}\0{entry.type.value}\0{entry.mode:o}\0{entry.linkname}\0".encode())
            digest.update(hashlib.sha256(entry.content).digest())
        return digest.hexdigest()

    def control_names(self) -> list[str]:
        return sorted(p.stem for p in (self.root / EXT_SUBDIR).glob("*.control") if "--" not in p.stem)

    def default_labels(
        self, name: str | None, version: str | None = None, licenses: str | None = None, source: str | None = None
    ) -> ImageLabels:
        names = self.control_names()
        ext = name or (names[0] if len(names) == 1 else "extension")
        default_version = None
        control_file = self.root / EXT_SUBDIR / f"{ext}.control"
        if control_file.exists():
            try:
                default_version = parse_control(control_file.read_bytes(), ext).default_version
            except ControlFileError:
                default_version = None  # the layout checks will report it
        return ImageLabels(
            title=f"{ext}-ext",
            description=f"{ext} extension for CloudNativePG Image Volume Extensions",
            version=version or default_version or "dev",
            licenses=licenses or "NOASSERTION",
            source=source or "https://example.invalid/unknown-source",
        )
