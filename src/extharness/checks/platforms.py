"""Multi-arch images: the platforms users will pull."""

from __future__ import annotations

from collections.abc import Iterable

from extharness.checks.findings import Finding, error, info, rule
from extharness.checks.target import LayoutTarget
from extharness.inspect.extension import ExtensionLayout
from extharness.inspect.model import ExtensionImage


@rule("layout.platforms.expected", "The image holds exactly the expected platforms (--platforms)", scope="image")
def expected_platforms(
    image: ExtensionImage, layouts: list[ExtensionLayout], target: LayoutTarget
) -> Iterable[Finding]:
    rid = "layout.platforms.expected"
    have = sorted(str(p) for p in image.platforms)
    for skipped in image.skipped:
        yield info(rid, "index", f"skipped {skipped}")
    if len(set(have)) != len(have):
        yield error(rid, "index", f"lists a platform more than once: {', '.join(have)}")
    if target.platforms is None:
        return
    wanted = sorted(str(p) for p in target.platforms)
    missing = sorted(set(wanted) - set(have))
    extra = sorted(set(have) - set(wanted))
    if missing:
        yield error(
            rid,
            "index",
            f"missing platform(s) {', '.join(missing)} (image has {', '.join(have)}); "
            "build and merge every architecture into one index",
        )
    if extra:
        yield error(rid, "index", f"unexpected platform(s) {', '.join(extra)} (--platforms {','.join(wanted)})")


@rule("layout.platforms.extension", "Every platform ships the same extension files", scope="image")
def same_extension(image: ExtensionImage, layouts: list[ExtensionLayout], target: LayoutTarget) -> Iterable[Finding]:
    if len(layouts) < 2:
        return

    def share_files(layout: ExtensionLayout) -> dict[str, bytes | None]:
        return {f.path: f.content for f in layout.image.files if f.path.startswith("/share/")}

    reference = share_files(layouts[0])
    for other in layouts[1:]:
        theirs = share_files(other)
        for path in sorted(set(reference) ^ set(theirs)):
            yield error(
                "layout.platforms.extension",
                path,
                f"present in only one of {layouts[0].platform} and "
                f"{other.platform}: every architecture must ship the same SQL and control files",
            )
        for path in sorted(set(reference) & set(theirs)):
            if reference[path] != theirs[path]:
                yield error(
                    "layout.platforms.extension", path, f"differs between {layouts[0].platform} and {other.platform}"
                )
