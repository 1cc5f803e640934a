"""Image metadata: OCI labels, the version users will see, and size."""

from __future__ import annotations

from collections.abc import Iterable

from extharness.checks.findings import Finding, error, info, rule, warning
from extharness.checks.target import LayoutTarget
from extharness.inspect.extension import ExtensionLayout

REQUIRED_LABELS = ("title", "description", "version", "licenses", "source")
PREFIX = "org.opencontainers.image."


@rule("layout.metadata.labels", "OCI labels title, description, version, licenses, source")
def labels(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    present = layout.image.config.labels
    missing = [f"{PREFIX}{key}" for key in REQUIRED_LABELS if not str(present.get(f"{PREFIX}{key}", "")).strip()]
    if missing:
        yield error(
            "layout.metadata.labels",
            "config.Labels",
            f"missing or empty: {', '.join(missing)}; set them with LABEL in the Dockerfile "
            "(cnpg/Dockerfile.ext fills them from build arguments)",
        )


@rule("layout.metadata.version", "Version label, expected version and default_version agree")
def version(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    rid = "layout.metadata.version"
    label = layout.image.config.labels.get(f"{PREFIX}version")
    default = layout.control.default_version if layout.control else None
    if target.expect_version is not None:
        if label != target.expect_version:
            yield error(
                rid,
                "config.Labels",
                f"{PREFIX}version is {label!r}, expected {target.expect_version!r} "
                "(--expect-version); build with --build-arg VERSION=<version>",
            )
        if default is not None and default != target.expect_version:
            yield error(
                rid,
                layout.control_path,
                f"default_version is {default!r}, expected "
                f"{target.expect_version!r} (--expect-version): CNPG would install another version",
            )
    elif label is not None and default is not None and label != default:
        yield warning(rid, "config.Labels", f"{PREFIX}version {label!r} differs from default_version {default!r}")


@rule("layout.metadata.size", "The image is small (--max-image-mb)")
def size(layout: ExtensionLayout, target: LayoutTarget) -> Iterable[Finding]:
    stored, exact = layout.image.stored_size(target.max_image_mb * 1e6)
    compressed = stored / 1e6
    unpacked = layout.image.files.total_size() / 1e6
    if not exact:
        yield info(
            "layout.metadata.size",
            "/",
            f"at most {compressed:.2f} MB compressed, {unpacked:.2f} MB unpacked (the layers are stored "
            "uncompressed, as in a docker archive: their gzip size is worked out only when this bound is over "
            f"--max-image-mb {target.max_image_mb:g})",
        )
    elif compressed > target.max_image_mb:
        yield error(
            "layout.metadata.size",
            "/",
            f"{compressed:.1f} MB compressed ({unpacked:.1f} MB unpacked) is "
            f"over --max-image-mb {target.max_image_mb:g}; strip debug symbols (strip --strip-debug) and "
            "ship only the extension's files",
        )
    else:
        yield info("layout.metadata.size", "/", f"{compressed:.2f} MB compressed, {unpacked:.2f} MB unpacked")
