"""Release tags: every published tag names the tested index, and the index says its version.

The tag digests are resolved at the edge (the registry, once per session) and handed in
through ``LayoutTarget.tag_digests``; these rules only compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from extharness.checks.findings import Finding, error, info, rule
from extharness.checks.target import LayoutTarget
from extharness.inspect.extension import ExtensionLayout
from extharness.inspect.model import ExtensionImage

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
VERSION = "org.opencontainers.image.version"


def _repository(reference: str) -> str:
    """``host/name:tag@digest`` -> ``host/name`` (for the fix hint)."""
    name = reference.removeprefix("docker://").split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


@rule("layout.tags.same-digest", "Every --expect-tags tag resolves to the tested index digest", scope="image")
def same_digest(image: ExtensionImage, layouts: list[ExtensionLayout], target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.tags.same-digest"
    if not target.tag_digests:
        return
    wanted = image.index_digest
    repo = _repository(image.reference)
    for tag, resolved in target.tag_digests.items():
        where = f"tag {tag}"
        if not DIGEST_RE.match(resolved):
            yield error(rid, where, f"cannot be resolved: {resolved}")
        elif wanted is None:
            yield error(
                rid,
                where,
                f"resolves to {resolved}, but the tested image has no index digest to "
                "compare with; test the image by its registry reference",
            )
        elif resolved != wanted:
            yield error(
                rid,
                where,
                f"points at {resolved}, not at the tested index {wanted}: users pulling "
                f":{tag} get another image; re-tag it, e.g. skopeo copy --all docker://{repo}@{wanted} "
                f"docker://{repo}:{tag}",
            )
        else:
            yield info(rid, where, f"resolves to {resolved}")


@rule(
    "layout.tags.version-annotation",
    "Version labels and the index's version annotation carry the expected version (--expect-version)",
    scope="image",
)
def version_annotation(
    image: ExtensionImage, layouts: list[ExtensionLayout], target: LayoutTarget
) -> Iterable[Finding]:
    rid = "layout.tags.version-annotation"
    expected = target.expect_version
    if expected is None:
        return
    annotation = image.annotations.get(VERSION)
    if annotation is not None and annotation != expected:
        yield error(
            rid,
            "index.annotations",
            f"{VERSION} is {annotation!r}, expected {expected!r} "
            "(--expect-version): the index was assembled with another version's annotations",
        )
    labels = {str(i.platform): i.config.labels.get(VERSION) for i in image.images}
    wrong = {p: v for p, v in labels.items() if v != expected}
    if wrong:
        listed = ", ".join(f"{p} has {v!r}" for p, v in sorted(wrong.items()))
        yield error(
            rid,
            "config.Labels",
            f"{VERSION} must be {expected!r} on every platform, but {listed}; "
            "build every architecture with --build-arg VERSION=<version>",
        )
