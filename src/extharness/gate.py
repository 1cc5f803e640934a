"""``extharness-gate``: the pre-release check of a published image, by registry reference.

    extharness-gate ghcr.io/<owner>/pg_trickle-ext --version 0.2.0

runs exactly the documented gate (docs/release-gate.md)::

    pytest -m layout tests/layout --ext-image docker://ghcr.io/<owner>/pg_trickle-ext:0.2.0 \\
        --platforms linux/amd64,linux/arm64 --expect-tags 0.2.0,0.2,latest --expect-version 0.2.0 \\
        --junitxml gate.xml --summary-md gate.md

then prints the Markdown summary (and appends it to ``$GITHUB_STEP_SUMMARY`` when set).
``docker://`` makes the harness read the registry even if a local engine has an image of the
same name. Tags: ``<version>``, ``<major>.<minor>`` and, for versions without a pre-release
suffix, ``latest``. The exit code is pytest's: 0 when the image may be released.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from extharness.cli import tier_config_arguments, tier_test_paths
from extharness.runtime.resources import is_checkout, where

LAYOUT_TESTS = tier_test_paths(("layout",))[0]
VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?([-+.]?[0-9A-Za-z.-]*)$")


def release_tags(version: str) -> list[str]:
    """``0.2.0`` -> ``0.2.0, 0.2, latest``; ``0.3.0-rc1`` -> ``0.3.0-rc1, 0.3`` (no latest)."""
    match = VERSION_RE.match(version)
    if match is None:
        return [version]
    major, minor, suffix = match.groups()
    tags = [version, f"{major}.{minor}"]
    prerelease = bool(suffix) and not suffix.startswith("+")
    if not prerelease:
        tags.append("latest")
    return list(dict.fromkeys(tags))


def gate_arguments(
    image: str, version: str, platforms: str, tags: list[str], junitxml: Path, summary_md: Path
) -> list[str]:
    """The pytest arguments of the gate (what docs/release-gate.md shows)."""
    repository = image.removeprefix("docker://")
    last = repository.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        repository = f"{repository}:{version}"
    return [
        "-m",
        "layout",
        str(LAYOUT_TESTS),
        "--ext-image",
        f"docker://{repository}",
        "--platforms",
        platforms,
        "--expect-tags",
        ",".join(tags),
        "--expect-version",
        version,
        "--junitxml",
        str(junitxml),
        "--summary-md",
        str(summary_md),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="extharness-gate",
        description="Check a published multi-arch extension image by registry reference before a release.",
        epilog="Arguments after -- go to pytest. Credentials come from the docker config (docker login).",
    )
    parser.add_argument("image", help="registry/owner/name[:tag|@sha256:...]; without a tag, :<version> is checked")
    parser.add_argument("--version", required=True, help="the version being released, e.g. 0.2.0")
    parser.add_argument("--platforms", default="linux/amd64,linux/arm64", help="exact platforms (default: %(default)s)")
    parser.add_argument(
        "--tags", help="comma-separated tags that must name the same index (default: <version>,<major.minor>[,latest])"
    )
    parser.add_argument("--junitxml", type=Path, default=Path("gate.xml"), help="JUnit XML (default: %(default)s)")
    parser.add_argument(
        "--summary-md", type=Path, default=Path("gate.md"), help="Markdown summary (default: %(default)s)"
    )
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if not LAYOUT_TESTS.is_dir():
        parser.error(f"{LAYOUT_TESTS} not found in {where()}: reinstall extharness")
    tags = [t.strip() for t in args.tags.split(",") if t.strip()] if args.tags else release_tags(args.version)

    pytest_args = gate_arguments(args.image, args.version, args.platforms, tags, args.junitxml, args.summary_md)
    sys.stderr.write(f"[extharness] pytest {' '.join(pytest_args + extra)}\n")
    # A fresh interpreter rather than pytest.main(): this module has already imported extharness,
    # which pytest would then warn it cannot assert-rewrite; the run is exactly the documented one
    # (with the repository's ini and rootdir given, also when they are the installed package's copies).
    env = None if is_checkout() else {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", *pytest_args, *tier_config_arguments(extra), *extra]
    code = subprocess.run(cmd, check=False, env=env).returncode
    if args.summary_md.is_file():
        summary = args.summary_md.read_text()
        sys.stdout.write("\n" + summary)
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as out:
                out.write(summary + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
