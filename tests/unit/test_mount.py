"""ImageVolumeMount: the image's files in a read-only folder, never executed, never escaping."""

from __future__ import annotations

import os
import stat

import pytest

from extharness.errors import HarnessError
from extharness.inspect.model import FileTree, FileType, ImageConfig, ImageFile, Platform, PlatformImage
from extharness.postgres.mount import ImageVolumeMount, link_escapes


def image(*entries: ImageFile) -> PlatformImage:
    tree = FileTree()
    for entry in entries:
        tree.add(entry)
    return PlatformImage(Platform("linux", "amd64"), ImageConfig(), tree)


SAMPLE = (
    ImageFile("/lib", FileType.DIR, 0o755),
    ImageFile("/lib/x.so", FileType.FILE, 0o755, size=3, content=b"elf"),
    ImageFile("/share/extension/x.control", FileType.FILE, 0o644, size=4, content=b"ctrl"),
    ImageFile("/lib/y.so", FileType.SYMLINK, 0o777, linkname="x.so"),
)


def test_extracts_read_only_and_removes_itself(tmp_path):
    with ImageVolumeMount(image(*SAMPLE), "x", parent=tmp_path) as mount:
        assert mount.path.name == "x" and mount.path.parent.name == "extensions"
        assert (mount.lib / "x.so").read_bytes() == b"elf"
        assert stat.S_IMODE((mount.lib / "x.so").stat().st_mode) == 0o555
        assert stat.S_IMODE((mount.share / "extension" / "x.control").stat().st_mode) == 0o444
        assert stat.S_IMODE(mount.lib.stat().st_mode) == 0o555
        assert os.readlink(mount.lib / "y.so") == "x.so"
        assert mount.changes() == []
        root = mount.root
    assert not root.exists()


def test_changes_are_reported(tmp_path):
    with ImageVolumeMount(image(*SAMPLE), "x", parent=tmp_path) as mount:
        os.chmod(mount.lib, 0o755)
        (mount.lib / "new.so").write_bytes(b"")
        assert any(c.startswith("lib/new.so: created") for c in mount.changes())


def test_content_fingerprint_is_stable_across_extractions(tmp_path):
    with (
        ImageVolumeMount(image(*SAMPLE), "x", parent=tmp_path) as a,
        ImageVolumeMount(image(*SAMPLE), "x", parent=tmp_path) as b,
    ):
        assert a.content_fingerprint() == b.content_fingerprint()


@pytest.mark.parametrize(
    ("where", "link", "escapes"),
    [
        ("/lib/a.so", "b.so", False),
        ("/lib/a.so", "../share/x", False),
        ("/lib/a.so", "../../etc/passwd", True),
        ("/a", "..", True),
    ],
)
def test_link_escapes(where, link, escapes):
    assert link_escapes(where, link) is escapes


def test_refuses_absolute_and_escaping_links(tmp_path):
    for link in ("/usr/lib/libc.so.6", "../../../etc/passwd"):
        bad = image(ImageFile("/lib/evil.so", FileType.SYMLINK, linkname=link))
        with pytest.raises(HarnessError, match="symlink"), ImageVolumeMount(bad, "x", parent=tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []  # cleaned up after the failure


def test_refuses_devices(tmp_path):
    with (
        pytest.raises(HarnessError, match="no place in an extension image"),
        ImageVolumeMount(image(ImageFile("/dev/null", FileType.CHAR)), "x", parent=tmp_path),
    ):
        pass
