"""Bad input to the harness gives one clear error line and a non-zero exit, never a traceback.

Each case runs ``python -m pytest -m layout`` as a user would, from the repository root,
with one broken input: the output must hold exactly one ``ERROR: extharness: ...`` line
naming the offending path, and nothing from the harness's internals.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from crafted import CraftedImage, run_layout_tier

USAGE_ERROR = 4  # pytest's exit code for a usage error


@dataclass
class BadInput:
    id: str
    make: Callable[[Path, CraftedImage], tuple[list[str], str]]  # -> (pytest args, the path the error must name)


def _missing(tmp: Path, sample: CraftedImage):
    return ["--ext-artifacts", str(tmp / "no-such-release")], str(tmp / "no-such-release")


def _empty_folder(tmp: Path, sample: CraftedImage):
    (tmp / "empty").mkdir()
    return ["--ext-artifacts", str(tmp / "empty")], str(tmp / "empty")


def _no_lib(tmp: Path, sample: CraftedImage):
    folder = sample.write_release_folder(tmp / "dist")
    for lib in (folder / "artifact" / "lib").iterdir():
        lib.unlink()
    (folder / "artifact" / "lib").rmdir()
    return ["--ext-artifacts", str(folder)], str(folder)


def _fifo_in_release(tmp: Path, sample: CraftedImage):
    folder = sample.write_release_folder(tmp / "dist")
    os.mkfifo(folder / "artifact" / "extension" / "pipe")
    return ["--ext-artifacts", str(folder)], str(folder / "artifact" / "extension" / "pipe")


def _text_file(tmp: Path, sample: CraftedImage):
    (tmp / "notes.txt").write_text("this is not an image\n" * 20)
    return ["--ext-image", f"oci-archive:{tmp / 'notes.txt'}"], str(tmp / "notes.txt")


def _etc_passwd(tmp: Path, sample: CraftedImage):
    return ["--ext-image", "oci-archive:/etc/passwd"], "/etc/passwd"


def _gzip_not_tar(tmp: Path, sample: CraftedImage):
    import gzip

    (tmp / "notes.tar.gz").write_bytes(gzip.compress(b"plain text, no tar inside\n" * 40))
    return ["--ext-image", f"docker-archive:{tmp / 'notes.tar.gz'}"], str(tmp / "notes.tar.gz")


def _empty_file(tmp: Path, sample: CraftedImage):
    (tmp / "empty.tar").write_bytes(b"")
    return ["--ext-image", f"oci-archive:{tmp / 'empty.tar'}"], str(tmp / "empty.tar")


def _truncated(tmp: Path, sample: CraftedImage):
    sample.write_archive(tmp / "image.tar")
    data = (tmp / "image.tar").read_bytes()
    (tmp / "image.tar").write_bytes(data[: len(data) // 2])
    return ["--ext-image", f"oci-archive:{tmp / 'image.tar'}"], str(tmp / "image.tar")


def _wrong_digest(tmp: Path, sample: CraftedImage):
    sample.write_archive(tmp / "good.tar")
    with tarfile.open(tmp / "good.tar") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    biggest = max((m for m, d in members if d is not None), key=lambda m: m.size)
    with tarfile.open(tmp / "image.tar", "w") as tar:
        for member, data in members:
            if member is biggest:  # flip one byte of the layer: its digest no longer matches
                data = data[:64] + bytes([data[64] ^ 0x01]) + data[65:]
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return ["--ext-image", f"oci-archive:{tmp / 'image.tar'}"], str(tmp / "image.tar")


def _docker_archive_of_oci(tmp: Path, sample: CraftedImage):
    sample.write_archive(tmp / "image.oci.tar")
    return ["--ext-image", f"docker-archive:{tmp / 'image.oci.tar'}"], str(tmp / "image.oci.tar")


def _layout_without_index(tmp: Path, sample: CraftedImage):
    (tmp / "layout").mkdir()
    return ["--ext-image", f"oci:{tmp / 'layout'}"], str(tmp / "layout")


def _layout_missing_a_blob(tmp: Path, sample: CraftedImage):
    sample.write_layout(tmp / "layout")
    blobs = sorted((tmp / "layout" / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    blobs[-1].unlink()  # the layer
    return ["--ext-image", f"oci:{tmp / 'layout'}"], str(tmp / "layout")


def _not_an_extension(tmp: Path, sample: CraftedImage):
    sample.remove("/share").remove("/lib").put("/licenses/x/copyright", "MIT\n")
    sample.write_archive(tmp / "image.tar")
    return ["--ext-image", f"oci-archive:{tmp / 'image.tar'}"], "/share/extension"


def _unknown_engine_image(tmp: Path, sample: CraftedImage):
    return ["--ext-image", "extharness-no-such-image:0"], "extharness-no-such-image:0"


CASES = [
    BadInput("missing-release-folder", _missing),
    BadInput("empty-folder", _empty_folder),
    BadInput("folder-without-artifact-lib", _no_lib),
    BadInput("fifo-in-release-folder", _fifo_in_release),
    BadInput("text-file-as-oci-archive", _text_file),
    BadInput("etc-passwd-as-oci-archive", _etc_passwd),
    BadInput("gzip-text-as-docker-archive", _gzip_not_tar),
    BadInput("empty-file-as-oci-archive", _empty_file),
    BadInput("truncated-oci-archive", _truncated),
    BadInput("wrong-blob-digest", _wrong_digest),
    BadInput("oci-archive-as-docker-archive", _docker_archive_of_oci),
    BadInput("layout-without-index", _layout_without_index),
    BadInput("layout-missing-a-blob", _layout_missing_a_blob),
    BadInput("image-without-extension", _not_an_extension),
    BadInput("unknown-engine-image-without-engine", _unknown_engine_image),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: BadInput, tmp_path: Path, sample: CraftedImage, layout_cache: Path) -> None:
    args, path = case.make(tmp_path, sample)
    result = run_layout_tier(*args, cache_dir=layout_cache, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == USAGE_ERROR, f"exit {result.returncode}, expected a usage error:\n{output[-3000:]}"
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, output[-3000:]
    assert errors[0].startswith("ERROR: extharness: "), errors[0]
    assert path in errors[0], f"the error should name {path}: {errors[0]}"
    assert "Traceback" not in output
    assert not re.search(r"src/extharness/\S+\.py", output), "internal frames leaked into the output"
    assert not re.search(r"ReadError|method (gz|bz2|xz|tar)\b|tarfile|zlib", errors[0]), (
        f"library internals: {errors[0]}"
    )
    assert "passed" not in output and "failed" not in output  # no test ran on bad input


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"root:x:0:0:root:/root:/bin/bash\n", "a text file, not a tar archive"),
        (b"", "an empty file"),
        (b"\x1f\x8b\x08\x00" + bytes(64), "gzip-compressed data that is not a tar archive or ends early"),
        (bytes(range(256)) * 4, "no tar archive header"),
    ],
    ids=["text", "empty", "gzip", "binary"],
)
def test_a_file_that_is_no_archive_is_described_in_plain_words(tmp_path: Path, content: bytes, what: str) -> None:
    from extharness.errors import HarnessError
    from extharness.inspect.oci_reader import read_image

    (tmp_path / "image.tar").write_bytes(content)
    with pytest.raises(HarnessError) as raised:
        read_image(f"oci-archive:{tmp_path / 'image.tar'}")
    assert str(raised.value).startswith(f"{tmp_path / 'image.tar'}: not an image archive ({what}); "), raised.value
