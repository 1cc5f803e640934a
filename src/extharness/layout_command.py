"""``extharness layout``: the layout tier without pytest, for a quick answer on one image.

It reads the image once, runs every layout rule and prints one line per finding plus a
summary line; exit 0 when no finding is an error, 1 when one is, 2 on bad input (one line).
Its options are the pytest plugin's own (``config.OPTIONS``: the same flags, checks,
``EXTHARNESS_<NAME>`` variables and defaults), limited to those that decide which image is read
and what the layout rules expect of it.

Imports are made where they are needed: ``--help`` and a usage error come back without loading
the readers and rules, and nothing of pytest is loaded at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

#: The plugin's options that matter to the layout tier: how the image is obtained and read,
#: what the rules expect of it, where findings go. (The sql and cnpg tiers' options are not taken.)
LAYOUT_OPTIONS = (
    "ext_image",
    "ext_artifacts",
    "ext_source",
    "ext_dockerfile",
    "ext_build_arg",
    "ext_name",
    "ext_version",
    "ext_profile",
    "builder",
    "pg_config",
    "platform",
    "operand_image",
    "target_glibc",
    "expect_version",
    "max_image_mb",
    "platforms",
    "expect_tags",
    "findings_json",
    "cache_dir",
)


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``extharness layout: ...``), exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from extharness.config import OPTIONS

    parser = _OneLineParser(
        prog="extharness layout",
        description="Run every layout rule on one image without pytest: one line per finding, then a "
        "summary; exit 0 (no error finding), 1 (an error finding) or 2 (bad input). Each option is also "
        "EXTHARNESS_<NAME> in the environment, as for pytest. Without an image option: the built-in sample.",
    )
    for option in OPTIONS:
        if option.dest not in LAYOUT_OPTIONS:
            continue
        extra: dict[str, Any] = {"action": "append"} if option.kind == "list" else {}
        default = f" (default {option.default})" if option.default not in (None, (), False) else ""
        # values stay text here: config.resolve checks them, with the same messages as under pytest
        parser.add_argument(option.flag, dest=option.dest, default=None, help=option.help + default, **extra)
    return parser


def command_findings(harness: Any) -> tuple[str, str, list[Any]]:
    """(what was read, the extension's name, every finding) for ``harness`` (a ``HarnessConfig``)."""
    from extharness.checks.run import run_all
    from extharness.checks.target import LayoutTarget
    from extharness.inspect.operand import baseline_profile, probe_operand
    from extharness.source.acquire import READER_SCHEMES, looks_like_registry_reference, open_image
    from extharness.source.engine_cli import installed_clis

    request = harness.request
    opened = open_image(request, harness.cache_dir, request.ext_name or _profile_extension(harness.profile))
    acquired, image, name = opened.acquired, opened.image, opened.name
    engine = None  # only asked whether it holds the operand image: no `podman info` first
    if found := next(installed_clis(), None):  # with none, its driver is not even loaded (~5 ms)
        from extharness.source.engine import Engine

        engine = Engine(*found)
    operand = probe_operand(harness.operand_image, engine, harness.cache_dir, harness.target_glibc)
    operand = operand or baseline_profile(harness.operand_image, harness.target_glibc)
    tag_digests = None
    if harness.expect_tags:
        ref = request.image or ""
        if ref.startswith(READER_SCHEMES) or not looks_like_registry_reference(ref):
            reason = f"--expect-tags needs --ext-image as a registry reference (registry/name:tag), not {ref or 'none'}"
            tag_digests = {tag: reason for tag in harness.expect_tags}
        else:
            from extharness.source.registry import resolve_tags

            tag_digests = resolve_tags(ref, harness.expect_tags)
    target = LayoutTarget(
        operand=operand,
        expect_version=harness.expect_version,
        max_image_mb=harness.max_image_mb,
        platforms=harness.platforms,
        tag_digests=tag_digests,
    )
    return acquired.description, name, run_all(image, name, target)


def _profile_extension(profile: str | None) -> str | None:
    if not profile:
        return None
    from extharness.postgres.profiles import load_profile

    return load_profile(profile).extension


def write_findings_json(path: Path, findings: list[dict]) -> None:
    """``{"findings": [...]}``, the file ``pytest --findings-json`` writes, replaced atomically."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"findings": findings}, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """``extharness layout ARGS``: 0, 1 or 2 (a ``HarnessError`` is raised for the caller to print)."""
    ns = build_parser().parse_args(list(argv))
    from extharness.checks.findings import RULES, finding_line, grouped_findings
    from extharness.config import HarnessConfig, env_name

    env = os.environ if env is None else env
    wanted = {env_name(dest) for dest in LAYOUT_OPTIONS}  # a stray EXTHARNESS_PG_BACKEND is not this command's
    harness = HarnessConfig.from_sources(vars(ns), {k: v for k, v in env.items() if k in wanted}, {})
    harness.request.validate()
    described, name, findings = command_findings(harness)
    grouped = grouped_findings(f.as_dict() for f in findings)
    out = sys.stdout
    for finding in grouped:
        out.write(finding_line(finding) + "\n")
    counts = {s: sum(1 for f in grouped if f["severity"] == s) for s in ("error", "warning", "info")}
    if harness.findings_json:
        write_findings_json(harness.findings_json, grouped)
    verdict = "FAILED" if counts["error"] else "passed"
    out.write(
        f"extharness layout: {verdict}: {described}, extension {name}: {len(RULES)} rules, "
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)\n"
    )
    return 1 if counts["error"] else 0
