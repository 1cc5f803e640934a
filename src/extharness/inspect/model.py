"""The image model every check works on: platforms, config, and a merged file tree.

It does not care where the image came from (release folder, archive, engine, registry).
"""

from __future__ import annotations

import enum
import posixpath
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field


class FileType(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char-device"
    BLOCK = "block-device"
    FIFO = "fifo"

    @property
    def is_device_like(self) -> bool:
        return self in (FileType.CHAR, FileType.BLOCK, FileType.FIFO)


def normalize_path(path: str) -> str:
    """Normalize a tar member name to an absolute image path (``./lib/x`` -> ``/lib/x``)."""
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    norm = posixpath.normpath("/" + path.lstrip("/"))
    return "/" if norm in ("/", "//") else norm


@dataclass(frozen=True)
class ImageFile:
    """One entry of an image's file tree."""

    path: str
    type: FileType
    mode: int = 0o644  # permission bits including setuid/setgid/sticky (07777)
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: str | None = None
    content: bytes | None = field(default=None, repr=False, compare=True)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def parent(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def is_executable(self) -> bool:
        return bool(self.mode & 0o111)

    def mode_string(self) -> str:
        return stat.filemode(self.mode | {FileType.DIR: stat.S_IFDIR}.get(self.type, stat.S_IFREG))


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"not a platform: {text!r} (expected os/arch[/variant], e.g. linux/amd64)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @property
    def is_attestation(self) -> bool:
        return self.os == "unknown" and self.architecture == "unknown"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config the checks look at."""

    labels: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    created: str | None = None


@dataclass
class FileTree:
    """A merged file tree (all layers applied), keyed by absolute path."""

    entries: dict[str, ImageFile] = field(default_factory=dict)

    def __iter__(self) -> Iterator[ImageFile]:
        return iter(sorted(self.entries.values(), key=lambda f: f.path))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and normalize_path(path) in self.entries

    def get(self, path: str) -> ImageFile | None:
        return self.entries.get(normalize_path(path))

    def add(self, entry: ImageFile) -> None:
        self.entries[entry.path] = entry

    def listdir(self, directory: str) -> list[ImageFile]:
        directory = normalize_path(directory)
        return sorted(
            (f for f in self.entries.values() if f.parent == directory and f.path != "/"),
            key=lambda f: f.path,
        )

    def walk_files(self, under: str = "/") -> list[ImageFile]:
        under = normalize_path(under).rstrip("/") + "/"
        return [f for f in self if f.path.startswith(under) or under == "//"]

    def resolve(self, path: str, max_hops: int = 40) -> ImageFile | None:
        """Follow symlinks and hard links inside the image; None when dangling or looping."""
        current = self.get(path)
        hops = 0
        while current is not None and current.type in (FileType.SYMLINK, FileType.HARDLINK):
            hops += 1
            if hops > max_hops or current.linkname is None:
                return None
            if current.type == FileType.HARDLINK:
                target = normalize_path(current.linkname)
            else:
                target = normalize_path(posixpath.join(current.parent, current.linkname))
            current = self.get(target)
        return current

    def content_of(self, path: str) -> bytes | None:
        entry = self.resolve(path)
        return entry.content if entry is not None and entry.type == FileType.FILE else None

    def total_size(self) -> int:
        return sum(f.size for f in self.entries.values() if f.type == FileType.FILE)


@dataclass
class PlatformImage:
    """One runnable image of a (possibly multi-arch) extension image."""

    platform: Platform
    config: ImageConfig
    files: FileTree
    manifest_digest: str = ""
    compressed_size: int = 0  # sum of layer blob sizes, as a registry would store them
    anomalies: list[str] = field(default_factory=list)  # odd archive entries seen while reading
    #: Set when ``compressed_size`` is only an upper bound (a docker archive's layers are stored
    #: uncompressed): works out the gzip size a registry would store, when that is needed.
    estimate_compressed: Callable[[], int] | None = field(default=None, compare=False, repr=False)

    def stored_size(self, limit: float | None = None) -> tuple[int, bool]:
        """(bytes a registry stores of this image, exact?). An upper bound (exact False) is given
        as is when it is at most ``limit``: the exact figure cannot be over it either. Otherwise
        the estimate is worked out once and kept."""
        if self.estimate_compressed is None:
            return self.compressed_size, True
        if limit is not None and self.compressed_size <= limit:
            return self.compressed_size, False
        self.compressed_size, self.estimate_compressed = self.estimate_compressed(), None
        return self.compressed_size, True


@dataclass
class ExtensionImage:
    """What the harness knows about an image: one entry per runnable platform."""

    reference: str
    images: list[PlatformImage]
    index_digest: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # e.g. attestation manifests, with why

    @property
    def platforms(self) -> list[Platform]:
        return [i.platform for i in self.images]

    def for_platform(self, platform: Platform | str) -> PlatformImage | None:
        key = str(platform)
        return next((i for i in self.images if str(i.platform) == key), None)
