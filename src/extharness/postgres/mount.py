"""A host folder that plays ``/extensions/<name>``: the image's files, read-only.

CloudNativePG mounts each extension image read-only at ``/extensions/<name>``. Where the
engine cannot mount the image itself (no engine, or the native backend), the harness
extracts the image's file tree from the model (bytes already read; nothing from the image
is executed) into a temporary folder with the same layout, makes it read-only, and
fingerprints it so a test can tell that PostgreSQL wrote nothing under it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from extharness.errors import HarnessError
from extharness.inspect.model import FileType, PlatformImage, normalize_path
from extharness.postgres.server import make_temp_dir

FILE_MODE = 0o444
EXEC_MODE = 0o555
DIR_MODE = 0o555

Snapshot = dict[str, tuple]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root``: (type, mode, size, mtime_ns, sha256 of content or link)."""
    result: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                digest = hashlib.sha256(os.readlink(path).encode()).hexdigest()
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = ""
            result[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    st = root.lstat()
    result["."] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), 0, st.st_mtime_ns, "")
    return result


def fingerprint(snap: Snapshot) -> str:
    digest = hashlib.sha256()
    for path in sorted(snap):
        digest.update(repr((path, snap[path])).encode())
    return digest.hexdigest()


def compare_snapshots(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed between two snapshots, one line per path (empty: untouched)."""
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            changes.append(f"{path}: created")
        elif path not in after:
            changes.append(f"{path}: removed")
        elif before[path] != after[path]:
            what = [
                name
                for name, a, b in zip(("type", "mode", "size", "mtime", "content"), before[path], after[path])
                if a != b
            ]
            changes.append(f"{path}: {', '.join(what)} changed")
    return changes


def _inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing anything that would land outside ``root``."""
    norm = normalize_path(relative)
    if norm == "/":
        return root
    target = (root / norm.lstrip("/")).resolve(strict=False)
    if target != root and root not in target.parents:
        raise HarnessError(f"image path {relative!r} escapes the extension folder")
    return root / norm.lstrip("/")


def link_escapes(where: str, link: str) -> bool:
    """Whether a relative symlink at image path ``where`` climbs above the image root."""
    parts = [p for p in normalize_path(where).split("/")[:-1] if p]
    for comp in link.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return True
            parts.pop()
        else:
            parts.append(comp)
    return False


@dataclass
class ImageVolumeMount:
    """The extension image's files at ``<tmp>/extensions/<name>``, read-only; a context manager."""

    image: PlatformImage
    name: str
    parent: Path | None = None  # where the temporary folder goes (default: the system temp dir)
    root: Path | None = field(default=None, init=False)  # the temporary folder
    _before: Snapshot | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> Path:
        """The folder that plays ``/extensions/<name>``."""
        if self.root is None:
            raise HarnessError("ImageVolumeMount used outside its with-block")
        return self.root / "extensions" / self.name

    @property
    def mount_root(self) -> Path:
        """The folder that plays ``/extensions``."""
        return self.path.parent

    def __enter__(self) -> ImageVolumeMount:
        self.root = make_temp_dir("mount", self.parent)
        try:
            self.root.chmod(0o755)  # an unprivileged postgres must reach it
            self._extract()
            self._before = snapshot(self.path)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _extract(self) -> None:
        target = self.path
        target.mkdir(parents=True)
        files = self.image.files
        deferred_links: list[tuple[Path, str, str]] = []
        for entry in files:
            if entry.path == "/":
                continue
            dest = _inside(target, entry.path)
            if entry.type == FileType.DIR:
                dest.mkdir(parents=True, exist_ok=True)
            elif entry.type == FileType.FILE:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(entry.content or b"")
                dest.chmod(EXEC_MODE if entry.is_executable else FILE_MODE)
            elif entry.type == FileType.HARDLINK:
                resolved = files.resolve(entry.path)
                if resolved is None or resolved.type != FileType.FILE:
                    raise HarnessError(
                        f"{entry.path}: hard link to {entry.linkname!r}, which is not a file in the image"
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(resolved.content or b"")
                dest.chmod(EXEC_MODE if resolved.is_executable else FILE_MODE)
            elif entry.type == FileType.SYMLINK:
                deferred_links.append((dest, entry.linkname or "", entry.path))
            else:
                raise HarnessError(f"{entry.path}: a {entry.type.value} has no place in an extension image")
        for dest, link, where in deferred_links:
            if link.startswith("/"):
                raise HarnessError(
                    f"{where}: absolute symlink to {link}: mounted at /extensions/{self.name} it would point into "
                    "the operand image, not the extension image; use a relative link"
                )
            if link_escapes(where, link):
                raise HarnessError(f"{where}: symlink to {link!r} points outside the extension image")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, dest)
        for dirpath, _dirnames, _filenames in os.walk(target, topdown=False):
            os.chmod(dirpath, DIR_MODE)
        self.mount_root.chmod(DIR_MODE)

    def swap(self, image: PlatformImage) -> None:
        """Put ``image``'s files at the same path in place of the current ones, as a rolling
        update mounts a changed extension image reference at the same ``/extensions/<name>``."""
        if self.root is None:
            raise HarnessError("ImageVolumeMount used outside its with-block")
        for dirpath, _dirnames, _filenames in os.walk(self.mount_root):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(self.path)
        self.image = image
        self._extract()
        self._before = snapshot(self.path)

    # -- what tests look at -------------------------------------------------------------------
    @property
    def share(self) -> Path:
        return self.path / "share"

    @property
    def lib(self) -> Path:
        return self.path / "lib"

    def fingerprint(self) -> str:
        """Of everything, modification times included (any write changes it)."""
        return fingerprint(snapshot(self.path))

    def content_fingerprint(self) -> str:
        """Of paths, types, modes and contents only: equal for two extractions of the same image."""
        snap = {
            path: (kind, mode, size, 0, digest)
            for path, (kind, mode, size, _mtime, digest) in snapshot(self.path).items()
        }
        return fingerprint(snap)

    def changes(self) -> list[str]:
        """Paths created, removed or modified under the folder since it was extracted."""
        assert self._before is not None
        return compare_snapshots(self._before, snapshot(self.path))

    def _remove(self) -> None:
        if self.root is None or not self.root.exists():
            return
        # Read-only folders: make them writable again so an unprivileged owner can delete them.
        for dirpath, _dirnames, _filenames in os.walk(self.root):
            try:
                os.chmod(dirpath, 0o755)
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
