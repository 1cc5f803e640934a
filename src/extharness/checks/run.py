"""Run every registered rule over an image and collect findings."""

from __future__ import annotations

from dataclasses import replace

from extharness.checks import control, elf, files, metadata, platforms, tags, tree  # noqa: F401  (register rules)
from extharness.checks.findings import RULES, Finding
from extharness.checks.target import LayoutTarget
from extharness.inspect.extension import ExtensionLayout, describe
from extharness.inspect.model import ExtensionImage


def layouts_of(image: ExtensionImage, name: str) -> list[ExtensionLayout]:
    return [describe(platform_image, name) for platform_image in image.images]


def run_rule(
    rule_id: str, image: ExtensionImage, layouts: list[ExtensionLayout], target: LayoutTarget
) -> list[Finding]:
    rule = RULES[rule_id]
    if rule.scope == "image":
        return list(rule.check(image, layouts, target))
    found: list[Finding] = []
    for layout in layouts:
        found += [replace(f, platform=layout.platform) for f in rule.check(layout, target)]
    return found


def run_all(image: ExtensionImage, name: str, target: LayoutTarget) -> list[Finding]:
    layouts = layouts_of(image, name)
    return [f for rule_id in sorted(RULES) for f in run_rule(rule_id, image, layouts, target)]
