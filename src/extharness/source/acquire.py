"""Get the image under test, whatever form it comes in, as something the reader can open.

Sources (one of them): a release folder, extension sources plus a Dockerfile, an image
reference (engine image name, ``oci:``, ``oci-archive:``, ``docker-archive:``, or a registry
reference), or nothing, which means the built-in sample. Builds are cached by the hash of
their inputs and made once across pytest-xdist workers and concurrent sessions (file lock).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.model import ExtensionImage, Platform
from extharness.runtime.cache import cache_key, default_cache_dir
from extharness.runtime.progress import progress
from extharness.runtime.resources import data_path

if TYPE_CHECKING:
    from extharness.source.engine import Engine
    from extharness.source.release_folder import ImageLabels, ReleaseFolder

# The builders (sample, engine, OCI writer, release folder, locks) are imported by the functions
# that build: an archive reference (``extharness layout --ext-image oci-archive:...``) is read
# without loading any of them, which is about a tenth of that command's time.

DOCKERFILE_EXT = data_path("cnpg/Dockerfile.ext")
DOCKERFILE_EXT_BUILD = data_path("cnpg/Dockerfile.ext-build")
READER_SCHEMES = ("oci:", "oci-archive:", "docker-archive:")


@dataclass(frozen=True)
class ImageRequest:
    """What the user asked for (from pytest options); exactly one source or none."""

    artifacts: Path | None = None
    source: Path | None = None
    dockerfile: Path | None = None
    image: str | None = None
    ext_name: str | None = None
    version: str | None = None
    licenses: str | None = None
    source_url: str | None = None
    builder: str = "auto"  # auto | engine | embedded
    pg_config: Path | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    platform: str = "linux/amd64"

    def validate(self) -> None:
        given = [
            n
            for n, v in (
                ("--ext-artifacts", self.artifacts),
                ("--ext-source", self.source),
                ("--ext-image", self.image),
            )
            if v
        ]
        if len(given) > 1:
            raise HarnessError(f"give one image source, not {' and '.join(given)}")
        if self.builder not in ("auto", "engine", "embedded"):
            raise HarnessError(f"--builder must be auto, engine or embedded, not {self.builder!r}")
        if self.artifacts:
            from extharness.source.release_folder import ReleaseFolder

            ReleaseFolder.open(self.artifacts)
        if self.source:
            if not self.source.is_dir():
                raise HarnessError(f"{self.source}: no such folder (--ext-source wants the extension's source tree)")
            recipe = self.dockerfile or DOCKERFILE_EXT_BUILD
            if not recipe.is_file():
                raise HarnessError(f"{recipe}: no such Dockerfile (--ext-dockerfile)")
        if self.image and self.image.startswith(READER_SCHEMES):
            _scheme, _, rest = self.image.partition(":")
            path = Path(rest)
            if not path.exists() and ":" in rest:
                path = Path(rest.rpartition(":")[0])
            if not path.exists():
                raise HarnessError(f"{path}: no such file or folder (--ext-image {self.image})")


def request_for_reference(ref: str, like: ImageRequest) -> ImageRequest:
    """``ref`` as ``--ext-image`` or ``--ext-artifacts`` takes it (a folder is a release folder),
    built and read like the image under test (``like``: its builder, platform, pg_config)."""
    common = {
        "ext_name": like.ext_name,
        "builder": like.builder,
        "pg_config": like.pg_config,
        "platform": like.platform,
    }
    path = Path(ref).expanduser()
    if not ref.startswith(READER_SCHEMES) and path.is_dir():
        return ImageRequest(artifacts=path, **common)
    return ImageRequest(image=ref, **common)


def is_builtin_sample(request: ImageRequest) -> bool:
    return not (request.artifacts or request.source or request.image)


@dataclass
class AcquiredImage:
    """The image under test, ready to read, plus where it came from."""

    reader_ref: str  # oci:/oci-archive:/docker-archive: reference, or a registry reference
    description: str
    engine_ref: str | None = None  # the engine's name for it, when an engine has it
    release_folder: Path | None = None
    labels: ImageLabels | None = None
    notes: list[str] = field(default_factory=list)


def _safe_tag(name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]", "-", name.lower()) or "extension"


def _resolve_builder(request: ImageRequest, engine: Engine | None) -> str:
    if request.builder == "embedded":
        return "embedded"
    if request.builder == "engine":
        if engine is None:
            raise EnvironmentMissing("no container engine for --builder engine: install podman or docker")
        return "engine"
    return "engine" if engine is not None else "embedded"


def build_from_release_folder(
    folder: ReleaseFolder,
    labels: ImageLabels,
    cache_dir: Path,
    engine: Engine | None,
    builder: str,
    platform: str = "linux/amd64",
) -> AcquiredImage:
    """The image ``cnpg/Dockerfile.ext`` makes of ``folder``: by the engine, or embedded."""
    from extharness.runtime.locks import held_lock

    key = cache_key(
        "release",
        folder.fingerprint(),
        repr(sorted(labels.as_oci().items())),
        builder,
        platform,
        DOCKERFILE_EXT.read_text() + "\0--no-cache" if builder == "engine" else "",
    )
    out = cache_dir / "images" / key
    out.mkdir(parents=True, exist_ok=True)
    with held_lock(out / ".lock", f"building the image of {folder.root}"):
        if builder == "embedded":
            archive = out / "image.oci.tar"
            if not archive.exists():
                from extharness.source.oci_writer import PlatformContent, build_blobs, write_oci_archive

                progress(f"writing {labels.title}:{labels.version} as an OCI archive (embedded builder)")
                blobs = build_blobs(
                    [PlatformContent(Platform.parse(platform), folder.entries(), labels.as_oci())], tag=labels.version
                )
                write_oci_archive(blobs, archive)
            return AcquiredImage(
                f"oci-archive:{archive}",
                f"release folder {folder.root} (embedded builder)",
                release_folder=folder.root,
                labels=labels,
            )
        assert engine is not None
        tag = f"localhost/extharness/{_safe_tag(labels.title)}:{key[:12]}"
        archive = out / ("image.oci.tar" if engine.kind == "podman" else "image.docker.tar")
        # The tag is named by the key, so an image under it is this build: another cache folder's
        # (a test's, another checkout's) is saved, not rebuilt. A rebuild would move the tag away
        # from the image a running container may still have mounted.
        if not engine.image_exists(tag):
            progress(f"building {tag} from cnpg/{DOCKERFILE_EXT.name} with {engine.kind}")
            # No layer cache: it is cheap here (two COPYs) and the cache can hold stale labels.
            engine.build(folder.root, DOCKERFILE_EXT, tag, labels.as_build_args(), platform=platform, no_cache=True)
            archive.unlink(missing_ok=True)
        if not archive.exists():
            engine.save(tag, archive)
        scheme = "oci-archive" if engine.kind == "podman" else "docker-archive"
        return AcquiredImage(
            f"{scheme}:{archive}",
            f"release folder {folder.root} (cnpg/Dockerfile.ext, {engine.kind})",
            engine_ref=tag,
            release_folder=folder.root,
            labels=labels,
        )


def build_sample_release(cache_dir: Path, pg_config: Path | None, version: str | None = None) -> Path:
    """The built-in sample's release folder of ``version`` (default: the current release), built
    once per source/compiler fingerprint."""
    from extharness.runtime.locks import held_lock
    from extharness.source import sample

    version = version or sample.CURRENT_RELEASE
    fingerprint = sample.source_fingerprint(pg_config=pg_config, variant_make_args=sample.release_make_args(version))
    out = (
        cache_dir
        / "sample"
        / (fingerprint[:20] if version == sample.CURRENT_RELEASE else f"{version}-{fingerprint[:20]}")
    )
    out.mkdir(parents=True, exist_ok=True)
    what = sample.SAMPLE_NAME + ("" if version == sample.CURRENT_RELEASE else f" {version}")
    with held_lock(out / ".lock", f"building the sample extension {what}"):
        if not (out / ".complete").is_file():
            progress(f"building the sample extension {what} with PGXS")
            sample.build_sample_release_folder(out, version, pg_config=pg_config)
            (out / ".complete").write_text(version + "\n")
    return out


def build_from_source(request: ImageRequest, cache_dir: Path, engine: Engine | None) -> AcquiredImage:
    from extharness.runtime.locks import held_lock

    if engine is None:
        raise EnvironmentMissing(
            "no container engine: --ext-source builds with a Dockerfile; install podman or docker, "
            "or give a release folder with --ext-artifacts"
        )
    assert request.source is not None
    recipe = request.dockerfile or DOCKERFILE_EXT_BUILD
    args = dict(request.build_args)
    if request.version:
        args.setdefault("VERSION", request.version)
    if re.search(r"^\s*ARG\s+BUILDER_IMAGE\b", recipe.read_text(), re.MULTILINE) and "BUILDER_IMAGE" not in args:
        from extharness.postgres.base_images import resolve_builder_image

        args["BUILDER_IMAGE"] = resolve_builder_image(engine, cache_dir)
    files = sorted(p for p in request.source.rglob("*") if p.is_file() and ".git" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(request.source)).encode() + b"\0" + path.read_bytes())
    key = cache_key("source", digest.hexdigest(), recipe.read_text(), repr(sorted(args.items())), request.platform)
    out = cache_dir / "images" / key
    out.mkdir(parents=True, exist_ok=True)
    tag = f"localhost/extharness/{_safe_tag(request.source.resolve().name)}-ext:{key[:12]}"
    archive = out / ("image.oci.tar" if engine.kind == "podman" else "image.docker.tar")
    with held_lock(out / ".lock", f"building {tag} from {request.source}"):
        if not engine.image_exists(tag):  # named by the key: an image under it is this build
            progress(f"building {tag} from {request.source} with {recipe} ({engine.kind}); this may take minutes")
            engine.build(request.source, recipe, tag, args, platform=request.platform)
            archive.unlink(missing_ok=True)
        if not archive.exists():
            engine.save(tag, archive)
    scheme = "oci-archive" if engine.kind == "podman" else "docker-archive"
    return AcquiredImage(
        f"{scheme}:{archive}", f"sources {request.source} built with {recipe.name} ({engine.kind})", engine_ref=tag
    )


def from_reference(request: ImageRequest, cache_dir: Path, engine: Engine | None) -> AcquiredImage:
    from extharness.runtime.locks import held_lock

    ref = request.image or ""
    if ref.startswith(READER_SCHEMES):
        return AcquiredImage(ref, ref)
    image_id = engine.image_id(ref) if engine is not None else None
    if engine is not None and image_id:
        key = cache_key("engine", image_id)
        out = cache_dir / "images" / key
        out.mkdir(parents=True, exist_ok=True)
        archive = out / ("image.oci.tar" if engine.kind == "podman" else "image.docker.tar")
        with held_lock(out / ".lock", f"saving {ref} from {engine.kind}"):
            if not archive.exists():
                progress(f"saving {ref} from {engine.kind}")
                engine.save(ref, archive)
        scheme = "oci-archive" if engine.kind == "podman" else "docker-archive"
        return AcquiredImage(f"{scheme}:{archive}", f"{engine.kind} image {ref}", engine_ref=ref)
    if looks_like_registry_reference(ref):
        from extharness.source.registry import RegistryReference

        # no local copy: the reader fetches it over the registry API by reference
        return AcquiredImage(ref, f"registry image {RegistryReference.parse(ref)} (read over the registry API)")
    where = f"{engine.kind} has no image {ref!r}" if engine else "no container engine to look it up"
    raise HarnessError(
        f"--ext-image {ref}: {where}; give oci:DIR, oci-archive:FILE, docker-archive:FILE "
        "or a registry reference like ghcr.io/owner/name:tag"
    )


def looks_like_registry_reference(ref: str) -> bool:
    first = ref.split("/", 1)[0]
    return "/" in ref and ("." in first or ":" in first or first == "localhost")


def acquire(
    request: ImageRequest, cache_dir: Path | None = None, engine: Engine | None | str = "detect"
) -> AcquiredImage:
    """Resolve ``request`` into an image the reader can open."""
    request.validate()
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if request.image and request.image.startswith(READER_SCHEMES):
        return AcquiredImage(request.image, request.image)  # read as it is: no engine to ask
    from extharness.source import sample
    from extharness.source.engine import detect_engine
    from extharness.source.release_folder import ImageLabels, ReleaseFolder

    eng: Engine | None = detect_engine() if engine == "detect" else engine  # type: ignore[assignment]
    if request.image:
        return from_reference(request, cache_dir, eng)
    if request.source:
        return build_from_source(request, cache_dir, eng)
    builder = _resolve_builder(request, eng)
    if request.artifacts:
        folder = ReleaseFolder.open(request.artifacts)
    else:
        folder = ReleaseFolder.open(build_sample_release(cache_dir, request.pg_config))
    labels = folder.default_labels(request.ext_name, request.version, request.licenses, request.source_url)
    if not request.artifacts:
        labels = ImageLabels(
            labels.title,
            f"{sample.SAMPLE_NAME} sample extension for CloudNativePG Image Volume Extensions",
            labels.version,
            request.licenses or "PostgreSQL",
            request.source_url or "urn:extharness:sample:pg_ticker",
        )
    acquired = build_from_release_folder(
        folder, labels, cache_dir, eng if builder == "engine" else None, builder, request.platform
    )
    if not request.artifacts:
        acquired.description = f"built-in sample {sample.SAMPLE_NAME} ({acquired.description})"
    return acquired


# -- the acquired image, opened as the model ---------------------------------------------------------------
@dataclass
class OpenedImage:
    """An image acquired, read into the model, and its extension chosen."""

    acquired: AcquiredImage
    image: ExtensionImage
    name: str


def read_acquired(acquired: AcquiredImage, cache_dir: Path) -> ExtensionImage:
    """The one way an acquired image becomes the model: the archive and layout readers for
    ``oci:``, ``oci-archive:`` and ``docker-archive:``, the registry reader for the rest."""
    if acquired.reader_ref.startswith(READER_SCHEMES):
        from extharness.inspect.oci_reader import read_image

        return read_image(acquired.reader_ref)
    from extharness.source.registry import read_registry_image  # loads oras and requests (~0.1 s)

    return read_registry_image(acquired.reader_ref, cache_dir)


def open_image(request: ImageRequest, cache_dir: Path, wanted: str | None = None) -> OpenedImage:
    """Any image request acquired (built, saved, pulled), read, and its extension chosen (``wanted``,
    else the only one the image holds)."""
    from extharness.inspect.extension import choose_extension

    acquired = acquire(request, cache_dir)
    image = read_acquired(acquired, cache_dir)
    return OpenedImage(acquired, image, choose_extension(image, wanted))
