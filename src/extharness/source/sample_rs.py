"""pg_ticker_rs, the Rust/pgrx sample extension, built with ``cnpg/Dockerfile.ext-build``.

``sample/pg_ticker_rs`` has pg_trickle's build shape (pgrx 0.18, a ``[[bench]]`` target
without ``path``, an extra binary, update scripts in ``sql/``, ``@CARGO_VERSION@`` in the
control file, a preload-only background worker). Building it the way a user builds
pg_trickle proves the recipe on every CI run::

    python -m extharness.source.sample_rs          # prints the engine tag of the image

The image is built once per input (the sample's files, the recipe and the build arguments)
and kept in the engine's image store under ``localhost/extharness/pg_ticker_rs-ext:<key>``;
the engine's layer cache keeps the toolchain, cargo-pgrx and the compiled dependencies, so a
changed ``src/`` rebuilds only the sample itself. A file lock in the cache folder makes
pytest-xdist workers and concurrent sessions build it once.

Where ``postgres:18.x`` cannot be pulled, the build runs on the offline builder stand-in
with Debian's rustc/cargo (``RUST_SOURCE=debian``); crates come from crates.io through
the host's network, with the host's CA bundle mounted for cargo (podman only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.runtime.resources import data_path
from extharness.runtime.settings import limit_of
from extharness.source.engine import Engine

SAMPLE_RS_DIR = data_path("sample/pg_ticker_rs")
SAMPLE_RS_NAME = "pg_ticker_rs"
RECIPE = data_path("cnpg/Dockerfile.ext-build")
IMAGE_NAME = "localhost/extharness/pg_ticker_rs-ext"

#: The recipe's own default builder (upstream's): used as is wherever it can be had.
UPSTREAM_BUILDER = "postgres:18.4"
#: Debian forky's rustc and cargo, which the offline builder installs (pinned: apt-cache policy rustc).
DEBIAN_RUST_VERSION = os.environ.get("EXTHARNESS_DEBIAN_RUST_VERSION", "1.97.1+dfsg1-1")
#: The host's CA bundle, for cargo inside the build when TLS goes through an intercepting proxy.
CA_BUNDLE = Path(os.environ.get("EXTHARNESS_CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt")
CA_IN_BUILD = "/run/extharness/ca-bundle.crt"

_SKIP_PARTS = {"target", ".git"}


@dataclass(frozen=True)
class SampleImage:
    """The built image: its engine tag, and how long this call spent building it (0: cached)."""

    tag: str
    build_seconds: float
    build_args: dict[str, str]


def sample_rs_dir(source_dir: Path = SAMPLE_RS_DIR) -> Path:
    """``source_dir`` if it holds a pgrx crate (Cargo.toml, Cargo.lock, a control file), else HarnessError."""
    missing = [name for name in ("Cargo.toml", "Cargo.lock") if not (source_dir / name).is_file()]
    if missing or not any(source_dir.glob("*.control")):
        what = ", ".join(missing + ([] if any(source_dir.glob("*.control")) else ["a .control file"]))
        raise HarnessError(
            f"{source_dir} is not a pgrx extension tree (missing {what}); the sample lives in sample/pg_ticker_rs "
            "of a checkout of this repository"
        )
    return source_dir


def crate_version(source_dir: Path = SAMPLE_RS_DIR) -> str:
    """The ``[package] version`` of the crate (what ``@CARGO_VERSION@`` becomes)."""
    manifest = sample_rs_dir(source_dir) / "Cargo.toml"
    try:
        return str(tomllib.loads(manifest.read_text())["package"]["version"])
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise HarnessError(f"{manifest}: no readable [package] version ({exc})") from None


def _tree_files(source_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in source_dir.rglob("*")
        if p.is_file() and not _SKIP_PARTS.intersection(p.relative_to(source_dir).parts)
    )


def build_key(source_dir: Path, build_args: dict[str, str], recipe: Path = RECIPE) -> str:
    """sha256 over the tree's files (names and contents, without target/), the recipe and the arguments."""
    digest = hashlib.sha256()
    for path in _tree_files(source_dir):
        digest.update(path.relative_to(source_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(recipe.read_bytes() + b"\0")
    digest.update(repr(sorted(build_args.items())).encode())
    return digest.hexdigest()


def build_arguments(builder_image: str, version: str) -> dict[str, str]:
    """The recipe's build arguments for ``builder_image``: upstream's defaults, or the offline ones."""
    args = {
        "VERSION": version,
        "TITLE": f"{SAMPLE_RS_NAME}-ext",
        "DESCRIPTION": f"{SAMPLE_RS_NAME} sample extension for CloudNativePG Image Volume Extensions",
        "LICENSES": "PostgreSQL",
        "REPO_URL": f"urn:extharness:sample:{SAMPLE_RS_NAME}",
    }
    if builder_image != UPSTREAM_BUILDER:
        # The stand-in (Debian forky) cannot run rustup (no static.rust-lang.org here): Debian's Rust.
        args.update(BUILDER_IMAGE=builder_image, RUST_SOURCE="debian", RUST_VERSION=DEBIAN_RUST_VERSION)
    return args


def engine_arguments(engine: Engine, ca_bundle: Path = CA_BUNDLE) -> tuple[tuple[str, ...], dict[str, str]]:
    """(extra ``build`` options, extra build arguments): the host network, and its CA bundle for cargo."""
    extra: list[str] = ["--network", "host"]  # apt and crates.io through the host's own network
    args: dict[str, str] = {}
    if engine.kind == "podman" and ca_bundle.is_file():
        extra += ["--volume", f"{ca_bundle}:{CA_IN_BUILD}:ro"]
        args["CARGO_HTTP_CAINFO"] = CA_IN_BUILD
    return tuple(extra), args


def build_sample_rs_image(
    engine: Engine, cache_dir: Path, source_dir: Path = SAMPLE_RS_DIR, builder_image: str | None = None
) -> SampleImage:
    """Build the sample's extension image with ``cnpg/Dockerfile.ext-build`` once; return its tag."""
    from extharness.postgres.base_images import resolve_builder_image
    from extharness.runtime.locks import held_lock
    from extharness.runtime.progress import progress

    source_dir = sample_rs_dir(source_dir)
    builder = builder_image or resolve_builder_image(engine, cache_dir, requested=UPSTREAM_BUILDER)
    extra, engine_args = engine_arguments(engine)
    args = build_arguments(builder, crate_version(source_dir))
    key = build_key(source_dir, args)  # the CA path is not an input of the image
    args.update(engine_args)
    tag = f"{IMAGE_NAME}:{key[:16]}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # One lock for every pg_ticker_rs build: two Rust builds at once would only halve each one's CPU.
    with held_lock(cache_dir / "sample-rs.lock", f"building {tag} with {RECIPE.name}", limit_of("EXTHARNESS_SAMPLE_RS_LOCK_TIMEOUT"),
                   setting="EXTHARNESS_SAMPLE_RS_LOCK_TIMEOUT"):  # fmt: skip
        if engine.image_exists(tag):
            return SampleImage(tag, 0.0, args)
        progress(
            f"building {tag} from {source_dir} with {RECIPE} on {builder} ({engine.kind}); cold (toolchain, "
            "cargo-pgrx, crates): about 10-20 min on 2 cores, then cached in the engine's layers"
        )
        engine.build(source_dir, RECIPE, tag, args, extra_args=extra)
    seconds = time.monotonic() - started
    progress(f"built {tag} in {seconds:.0f}s")
    return SampleImage(tag, seconds, args)


def main(argv: list[str] | None = None) -> int:
    from extharness.source.acquire import default_cache_dir
    from extharness.source.engine import require_engine

    parser = argparse.ArgumentParser(
        prog="python -m extharness.source.sample_rs",
        description="Build the pg_ticker_rs sample's extension image with cnpg/Dockerfile.ext-build (once).",
    )
    parser.add_argument("--source", type=Path, default=SAMPLE_RS_DIR, help="the pgrx tree (default: the sample)")
    parser.add_argument("--builder-image", default=None, help="BUILDER_IMAGE (default: postgres:18.4 or the stand-in)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    options = parser.parse_args(argv)
    try:
        engine = require_engine("to build the pg_ticker_rs sample image")
        image = build_sample_rs_image(
            engine, options.cache_dir or default_cache_dir(), options.source, options.builder_image
        )
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, EnvironmentMissing) else 1
    print(image.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
