"""The pg_ticker sample as a linux/amd64 + linux/arm64 image index, like a real release.

The arm64 library is cross-compiled with Debian's ``gcc-aarch64-linux-gnu`` through the same
PGXS build (``make CC=aarch64-linux-gnu-gcc``) against the same PostgreSQL 18 server headers
as the amd64 one. Those headers' ``pg_config.h`` was generated on x86-64; aarch64 Linux is
LP64 with the same type sizes and alignments, which is what a module like pg_ticker depends
on, so the result is a real arm64 extension library (a release should still build natively
or with an arm64 ``pg_config``). The embedded builder then writes one deterministic OCI index
holding both platforms, with identical SQL and control files and identical labels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from elftools.elf.elffile import ELFFile

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.model import Platform
from extharness.runtime.locks import held_lock
from extharness.runtime.processes import run
from extharness.runtime.progress import progress
from extharness.source import sample
from extharness.source.acquire import build_sample_release
from extharness.source.oci_writer import OCIImageBlobs, PlatformContent, build_blobs, write_oci_layout
from extharness.source.release_folder import ImageLabels, ReleaseFolder

#: The arm64 cross compiler (Debian: apt-get install gcc-aarch64-linux-gnu).
ARM64_CC_ENV = "EXTHARNESS_ARM64_CC"
AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
#: Bump when the way the index is assembled changes, so cached layouts are rebuilt.
LAYOUT_SCHEME = "multiarch-1"


def arm64_compiler() -> str:
    """The cross compiler's command; EnvironmentMissing (tests skip) when it is not installed."""
    cc = os.environ.get(ARM64_CC_ENV, "aarch64-linux-gnu-gcc")
    if shutil.which(cc) is None:
        raise EnvironmentMissing(f"{cc} not found: apt-get install gcc-aarch64-linux-gnu to build the arm64 sample")
    return cc


def _compiler_version(cc: str) -> str:
    out = run([cc, "--version"], what=f"asking {cc} its version", timeout=60).stdout
    return out.splitlines()[0].strip() if out else cc


def _arm64_make_args(cc: str) -> list[str]:
    return [f"CC={cc}"]


def _check_machine(folder: Path, machine: str) -> None:
    for lib in sorted((folder / "artifact" / "lib").glob("*.so")):
        with lib.open("rb") as fh:
            found = ELFFile(fh)["e_machine"]
        if found != machine:
            raise HarnessError(f"{lib}: built for {found}, not {machine}; check {ARM64_CC_ENV}")


def build_arm64_sample_release(cache_dir: Path, pg_config: Path | None = None) -> Path:
    """The sample's release folder with an aarch64 library, built once per fingerprint."""
    cc = arm64_compiler()
    args = _arm64_make_args(cc)
    fingerprint = hashlib.sha256(
        (sample.source_fingerprint(pg_config=pg_config, variant_make_args=args) + _compiler_version(cc)).encode()
    ).hexdigest()
    out = cache_dir / "sample-arm64" / fingerprint[:20]
    out.mkdir(parents=True, exist_ok=True)
    with held_lock(out / ".lock", f"cross-compiling the sample extension for arm64 with {cc}"):
        if not (out / "artifact" / "lib").is_dir():
            progress(f"cross-compiling the sample extension {sample.SAMPLE_NAME} for arm64 with {cc}")
            sample.build_release_folder(out, pg_config=pg_config, variant_make_args=args)
            _check_machine(out, "EM_AARCH64")
    return out


def sample_labels(folder: ReleaseFolder, version: str | None = None) -> ImageLabels:
    """The labels ``acquire()`` gives the built-in sample (one image, every platform)."""
    labels = folder.default_labels(sample.SAMPLE_NAME, version)
    return ImageLabels(
        labels.title,
        f"{sample.SAMPLE_NAME} sample extension for CloudNativePG Image Volume Extensions",
        labels.version,
        "PostgreSQL",
        "urn:extharness:sample:pg_ticker",
    )


def multiarch_image(
    amd64: ReleaseFolder, arm64: ReleaseFolder, labels: ImageLabels | None = None, tag: str | None = None
) -> OCIImageBlobs:
    """An amd64 + arm64 index of two release folders (tests pass odd pairs to make broken ones)."""
    labels = labels or sample_labels(amd64)
    oci = labels.as_oci()
    return build_blobs(
        [PlatformContent(AMD64, amd64.entries(), oci), PlatformContent(ARM64, arm64.entries(), oci)],
        tag=tag or labels.version,
    )


def build_multiarch_sample(cache_dir: Path, pg_config: Path | None = None) -> Path:
    """An OCI layout folder holding the sample as an amd64 + arm64 index (tag: its version).

    Cached under ``cache_dir/multiarch/<fingerprint>`` and made once across processes.
    """
    amd64 = ReleaseFolder.open(build_sample_release(cache_dir, pg_config))
    arm64 = ReleaseFolder.open(build_arm64_sample_release(cache_dir, pg_config))
    labels = sample_labels(amd64)
    key = hashlib.sha256(
        "\0".join(
            [
                LAYOUT_SCHEME,
                amd64.fingerprint(),
                arm64.fingerprint(),
                repr(sorted(labels.as_oci().items())),
                os.environ.get("SOURCE_DATE_EPOCH", "0"),
            ]
        ).encode()
    ).hexdigest()
    out = cache_dir / "multiarch" / key[:20]
    out.mkdir(parents=True, exist_ok=True)
    layout = out / "layout"
    with held_lock(out / ".lock", "writing the amd64 + arm64 sample layout"):
        if not (layout / "index.json").is_file():
            progress(f"writing {labels.title}:{labels.version} for linux/amd64 and linux/arm64 (embedded builder)")
            staging = out / "layout.tmp"
            shutil.rmtree(staging, ignore_errors=True)
            write_oci_layout(multiarch_image(amd64, arm64, labels), staging)
            shutil.rmtree(layout, ignore_errors=True)
            os.replace(staging, layout)
    return layout
