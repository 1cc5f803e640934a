"""Offline stand-ins for the PostgreSQL 18 images the harness runs, built from Debian packages.

Where ``postgres:18.x`` and ``ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie`` cannot
be pulled (no registry access), the harness runs local images with the same PostgreSQL
layout instead, made from Debian forky's ``postgresql-18``:

    localhost/extharness/pg18-rootfs:forky          debootstrap'd base (shared, internal)
    localhost/extharness/postgres:18                 + postgres as 999, official-style entrypoint
    localhost/extharness/cnpg-operand:18-minimal     + postgres as 26, USER 26
    localhost/extharness/pg18-builder:18             postgres stand-in + server-dev, gcc, make

The base is debootstrapped and imported once; the others are small ``Containerfile`` builds
on top of it (``images/``), so they share its layer. Each image carries the hash of its
recipe in the label ``io.extharness.base.recipe``: a changed recipe rebuilds, an unchanged
one costs one ``image inspect``. Building needs root, ``debootstrap`` and Debian's archive.

CLI (CI pre-builds with it): ``python -m extharness.postgres.base_images [--all|KIND...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.inspect.operand import CNPG_POSTGRES_UID
from extharness.runtime.cache import default_cache_dir
from extharness.runtime.locks import held_lock
from extharness.runtime.processes import stop_groups
from extharness.runtime.resources import data_path
from extharness.runtime.settings import limit_of
from extharness.source.engine import Engine, require_engine

RECIPE_LABEL = "io.extharness.base.recipe"
KIND_LABEL = "io.extharness.base.kind"

#: Bump to force every machine to rebuild when something outside ``images/`` changes.
RECIPE_VERSION = "1"
SUITE = "forky"  # the Debian suite that has postgresql-18
DEBOOTSTRAP_SCRIPT = Path("/usr/share/debootstrap/scripts/sid")
RUNTIME_PACKAGES = ("postgresql-18", "libnss-wrapper")  # nss_wrapper: initdb under --user <unknown uid>

#: Where the Containerfiles, entrypoint and scripts live (repository root ``images/``, or the
#: copy shipped in the package: ``extharness.runtime.resources``).
IMAGES_DIR = Path(os.environ.get("EXTHARNESS_IMAGES_DIR") or data_path("images"))


@dataclass(frozen=True)
class BaseImage:
    """A local PostgreSQL 18 image and where PostgreSQL lives inside it."""

    name: str
    tag: str
    postgres_uid: int
    libdir: str = "/usr/lib/postgresql/18/lib"
    sharedir: str = "/usr/share/postgresql/18"
    bindir: str = "/usr/lib/postgresql/18/bin"

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


POSTGRES_STANDIN = BaseImage("localhost/extharness/postgres", "18", postgres_uid=999)
OPERAND_STANDIN = BaseImage("localhost/extharness/cnpg-operand", "18-minimal", postgres_uid=CNPG_POSTGRES_UID)
BUILDER_STANDIN = BaseImage("localhost/extharness/pg18-builder", "18", postgres_uid=999)
ROOTFS_IMAGE = "localhost/extharness/pg18-rootfs:forky"

STANDINS: dict[str, BaseImage] = {
    "postgres": POSTGRES_STANDIN,
    "operand": OPERAND_STANDIN,
    "builder": BUILDER_STANDIN,
}


@dataclass(frozen=True)
class _Recipe:
    """How one image is made: from which other step, with which files of ``images/``."""

    ref: str
    parent: str | None  # the step it is built FROM ("rootfs", "postgres") or None (debootstrap)
    containerfile: str | None
    files: tuple[str, ...]
    seconds: tuple[int, int]  # how long it usually takes, to tell the waiting user


_RECIPES: dict[str, _Recipe] = {
    "rootfs": _Recipe(ROOTFS_IMAGE, None, None, ("prepare-rootfs.sh",), (50, 100)),
    "postgres": _Recipe(
        POSTGRES_STANDIN.ref,
        "rootfs",
        "postgres.Containerfile",
        ("postgres.Containerfile", "set-postgres-user.sh", "docker-entrypoint.sh"),
        (5, 20),
    ),
    "operand": _Recipe(
        OPERAND_STANDIN.ref,
        "rootfs",
        "cnpg-operand.Containerfile",
        ("cnpg-operand.Containerfile", "set-postgres-user.sh", "docker-entrypoint.sh"),
        (5, 20),
    ),
    "builder": _Recipe(
        BUILDER_STANDIN.ref, "postgres", "pg18-builder.Containerfile", ("pg18-builder.Containerfile",), (60, 150)
    ),
}

#: Seconds spent in each build step of the last build in this process (for reports).
last_build_timings: dict[str, float] = {}


# -- recipe -----------------------------------------------------------------------------
def recipe_hash(kind: str, images_dir: Path | None = None) -> str:
    """sha256 over everything that decides the image's content, including its parents'."""
    recipe = _recipe(kind)
    images_dir = images_dir or IMAGES_DIR
    digest = hashlib.sha256()
    digest.update(f"extharness-base/{RECIPE_VERSION}/{kind}\n".encode())
    if recipe.parent:
        digest.update(f"parent {recipe_hash(recipe.parent, images_dir)}\n".encode())
    else:
        digest.update(f"debootstrap {SUITE} {DEBOOTSTRAP_SCRIPT.name} minbase {','.join(RUNTIME_PACKAGES)}\n".encode())
    for name in recipe.files:
        path = images_dir / name
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise HarnessError(
                f"recipe file {path} for the {kind} stand-in is missing ({exc.strerror}); "
                "set EXTHARNESS_IMAGES_DIR to the repository's images/ folder"
            ) from None
        digest.update(f"file {name} {len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def _recipe(kind: str) -> _Recipe:
    try:
        return _RECIPES[kind]
    except KeyError:
        raise HarnessError(f"unknown base image kind {kind!r}: use one of {', '.join(STANDINS)}") from None


# -- the Debian mirror of this machine ----------------------------------------------------
def mirror_from_deb822(text: str) -> str | None:
    """The first URI of the first ``URIs:`` field of a deb822 ``.sources`` file."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "uris" and not line.lstrip().startswith("#") and value.split():
            return value.split()[0]
    return None


def mirror_from_sources_list(text: str) -> str | None:
    """The URI of the first ``deb`` line of a one-line-style ``sources.list``."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if words:
            return words[0]
    return None


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (``EXTHARNESS_DEBIAN_MIRROR`` overrides)."""
    override = os.environ.get("EXTHARNESS_DEBIAN_MIRROR", "").strip()
    if override:
        return override
    for path, parse in (
        (apt_dir / "sources.list.d" / "debian.sources", mirror_from_deb822),
        (apt_dir / "sources.list", mirror_from_sources_list),
    ):
        try:
            mirror = parse(path.read_text(errors="replace"))
        except OSError:
            continue
        if mirror:
            return mirror.rstrip("/")
    raise EnvironmentMissing(
        f"no Debian mirror in {apt_dir}/sources.list.d/debian.sources or {apt_dir}/sources.list "
        "(set EXTHARNESS_DEBIAN_MIRROR to build the offline PostgreSQL 18 stand-ins)"
    )


# -- public API ---------------------------------------------------------------------------
def ensure_base_image(kind: str, engine: Engine, cache_dir: Path, *, rebuild: bool = False) -> BaseImage:
    """The stand-in of ``kind`` ("postgres", "operand", "builder"), built first if needed.

    Returns at once when the image exists with the current recipe. Otherwise builds it (and
    the images it is made from) under a file lock in ``cache_dir``, so parallel workers and
    concurrent sessions build it once. ``rebuild`` builds it again from debootstrap.
    """
    if kind not in STANDINS:
        raise HarnessError(f"unknown base image kind {kind!r}: use one of {', '.join(STANDINS)}")
    return _ensure(kind, engine, cache_dir, set(_chain(kind)) if rebuild else set())


def _chain(kind: str) -> list[str]:
    """The build steps of ``kind``, first to last: ``["rootfs", "postgres", "builder"]``."""
    chain = [kind]
    while _recipe(chain[-1]).parent:
        chain.append(_recipe(chain[-1]).parent)  # type: ignore[arg-type]
    return chain[::-1]


def _ensure(kind: str, engine: Engine, cache_dir: Path, force: set[str]) -> BaseImage:
    """``ensure_base_image``, rebuilding the steps in ``force`` (each is removed once built)."""
    image = STANDINS[kind]
    if not force.intersection(_chain(kind)) and _is_current(engine, kind):
        return image
    cache_dir.mkdir(parents=True, exist_ok=True)
    with held_lock(
        cache_dir / "base-images.lock",
        f"building the offline PostgreSQL 18 stand-in {image.ref}",
        limit_of("EXTHARNESS_BASE_IMAGE_LOCK_TIMEOUT"),
        setting="EXTHARNESS_BASE_IMAGE_LOCK_TIMEOUT",
    ):
        _build_chain(kind, engine, cache_dir, force)  # checks again: another process may have built it
    return image


_POSTGRES_REF = re.compile(
    r"^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?(?:library/)?"
    r"postgres:18(?:[.-][\w.-]*)?(?:@sha256:[0-9a-f]{64})?$"
)
_OPERAND_REF = re.compile(r"^ghcr\.io/cloudnative-pg/postgresql:18(?:[.-][\w.-]*)?(?:@sha256:[0-9a-f]{64})?$")

_pull_errors: dict[str, str | None] = {}  # one pull attempt per reference and process
_announced: set[str] = set()


def resolve_pg_image(requested: str, engine: Engine, cache_dir: Path | None = None) -> str:
    """``requested`` if it is local or can be pulled; else, for ``postgres:18*``, the stand-in."""
    return _resolve(requested, engine, "postgres", _POSTGRES_REF, "postgres:18*", cache_dir)


def resolve_operand_image(requested: str, engine: Engine, cache_dir: Path | None = None) -> str:
    """``requested`` if it is local or can be pulled; else, for CNPG's PostgreSQL 18 operand
    images (``ghcr.io/cloudnative-pg/postgresql:18*``), the minimal operand stand-in."""
    return _resolve(requested, engine, "operand", _OPERAND_REF, "ghcr.io/cloudnative-pg/postgresql:18*", cache_dir)


def resolve_builder_image(engine: Engine, cache_dir: Path | None = None, requested: str | None = None) -> str:
    """The ``BUILDER_IMAGE`` for building an extension from sources.

    The builder stand-in if it is already built (no network needed); else ``requested`` (say
    the Dockerfile's own default) if it is local or can be pulled; else the stand-in, built now.
    """
    if _is_current(engine, "builder"):
        return BUILDER_STANDIN.ref
    if requested and (engine.image_exists(requested) or _pull_once(engine, requested) is None):
        return requested
    try:
        return ensure_base_image("builder", engine, cache_dir or default_cache_dir()).ref
    except EnvironmentMissing as exc:
        raise EnvironmentMissing(
            f"{exc}; or pass --build-arg BUILDER_IMAGE=<an image with postgresql-server-dev-18, gcc and make>"
        ) from None


def is_standin_for(requested: str, kind: str) -> bool:
    """Whether ``requested`` is a reference the ``kind`` stand-in may replace."""
    pattern = {"postgres": _POSTGRES_REF, "operand": _OPERAND_REF}.get(kind)
    return bool(pattern and pattern.match(requested))


def _resolve(
    requested: str, engine: Engine, kind: str, pattern: re.Pattern[str], family: str, cache_dir: Path | None
) -> str:
    if engine.image_exists(requested):
        return requested
    error = _pull_once(engine, requested)
    if error is None:
        return requested
    if not pattern.match(requested):
        raise HarnessError(
            f"{requested} is not in the local image store and cannot be pulled ({error}); "
            f"offline stand-ins exist only for {family}"
        )
    image = STANDINS[kind]
    if requested not in _announced:
        _announced.add(requested)
        flavour = " (minimal flavour)" if kind == "operand" and "standard" in requested else ""
        _say(
            f"{requested} cannot be pulled here; using offline stand-in {image.ref}{flavour} "
            f"(Debian {SUITE}'s postgresql-18, postgres UID {image.postgres_uid})"
        )
    return ensure_base_image(kind, engine, cache_dir or default_cache_dir()).ref


def _pull_once(engine: Engine, ref: str) -> str | None:
    """Pull ``ref`` once per process with a short timeout; None on success, else why not."""
    if ref not in _pull_errors:
        if limit_of("EXTHARNESS_PULL_TIMEOUT") <= 0:
            _pull_errors[ref] = "pulling disabled by EXTHARNESS_PULL_TIMEOUT=0"
        else:
            try:
                result = engine.run(
                    "pull",
                    _qualified(ref, engine),
                    timeout=limit_of("EXTHARNESS_PULL_TIMEOUT"),
                    check=False,
                    setting="EXTHARNESS_PULL_TIMEOUT",
                )
            except HarnessError as exc:  # the engine's timeout
                _pull_errors[ref] = str(exc)
            else:
                lines = (result.stderr or result.stdout or "").strip().splitlines()
                _pull_errors[ref] = None if result.returncode == 0 else (lines[-1] if lines else "pull failed")
    return _pull_errors[ref]


def _qualified(ref: str, engine: Engine) -> str:
    """Docker Hub's full name for a short reference, for podman (which may have no search registries)."""
    first, slash, _ = ref.partition("/")
    if engine.kind != "podman" or (slash and ("." in first or ":" in first or first == "localhost")):
        return ref
    return f"docker.io/{ref}" if slash else f"docker.io/library/{ref}"


# -- building -----------------------------------------------------------------------------
def _image_facts(engine: Engine, ref: str) -> tuple[str, dict[str, str]] | None:
    """(image id, labels) of a local image, or None if there is none."""
    result = engine.run("image", "inspect", "--format", "{{.Id}} {{json .Config.Labels}}", ref, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    image_id, _, labels = result.stdout.strip().splitlines()[0].partition(" ")
    try:
        parsed = json.loads(labels) or {}
    except json.JSONDecodeError:
        parsed = {}
    return image_id, parsed


def _is_current(engine: Engine, step: str) -> bool:
    facts = _image_facts(engine, _recipe(step).ref)
    return facts is not None and facts[1].get(RECIPE_LABEL) == recipe_hash(step)


def _build_chain(kind: str, engine: Engine, cache_dir: Path, force: set[str]) -> None:
    """Build ``kind`` and whatever it is made from that is missing, stale or forced (lock held)."""
    chain = _chain(kind)
    todo = [step for step in chain if step in force or not _is_current(engine, step)]
    if not todo:
        return
    todo = chain[chain.index(todo[0]) :]  # a rebuilt parent means rebuilt children
    target = STANDINS[kind].ref
    low = sum(_RECIPES[step].seconds[0] for step in todo)
    high = sum(_RECIPES[step].seconds[1] for step in todo)
    estimate = f"{low}-{high} s" if high < 60 else f"{max(1, round(low / 60))}-{max(2, round(high / 60))} min"
    parent = _RECIPES[todo[0]].parent
    origin = _RECIPES[parent].ref if parent else f"Debian {SUITE}"
    _say(f"building offline stand-in {target} from {origin} (about {estimate}, once)...")
    last_build_timings.clear()
    started = time.monotonic()
    replaced: list[str] = []
    for step in todo:
        old = _image_facts(engine, _RECIPES[step].ref)
        if step == "rootfs":
            _build_rootfs(engine, cache_dir)
        else:
            _build_derived(step, engine, cache_dir)
        force.discard(step)
        new = _image_facts(engine, _RECIPES[step].ref)
        if old and new and old[0] != new[0]:
            replaced.append(old[0])
    # Drop the superseded images, children first; ones still in use (or still the parent of
    # another stand-in) stay, and the engine keeps refusing to remove them, which is fine.
    for image_id in reversed(replaced):
        engine.run("rmi", image_id, check=False)
    _say(f"built {target} in {time.monotonic() - started:.0f}s")


def _build_rootfs(engine: Engine, cache_dir: Path) -> None:
    """debootstrap Debian forky with postgresql-18, tidy it, import it as ``ROOTFS_IMAGE``."""
    debootstrap = shutil.which("debootstrap")
    if os.geteuid() != 0 or not debootstrap or not DEBOOTSTRAP_SCRIPT.exists():
        raise EnvironmentMissing(
            "building the offline PostgreSQL 18 stand-ins needs root and debootstrap "
            f"({DEBOOTSTRAP_SCRIPT}); install debootstrap or pull the real images"
        )
    mirror = debian_mirror()
    _remove_stale_workdirs(cache_dir)
    work = cache_dir / f"tmp-{os.getpid()}"
    rootfs = work / "rootfs"
    logs = cache_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        work.mkdir(parents=True, exist_ok=True)
        _step(
            "debootstrap",
            f"debootstrap {SUITE} with {', '.join(RUNTIME_PACKAGES)} from {mirror}",
            [[debootstrap, "--variant=minbase", f"--include={','.join(RUNTIME_PACKAGES)}",
              SUITE, str(rootfs), mirror, str(DEBOOTSTRAP_SCRIPT)]],
            logs / "debootstrap.log",
        )  # fmt: skip
        shutil.copy2(IMAGES_DIR / "prepare-rootfs.sh", rootfs / "prepare-rootfs.sh")
        _step(
            "prepare",
            "tidying the root filesystem (no cluster, no apt caches)",
            [["chroot", str(rootfs), "/bin/sh", "/prepare-rootfs.sh"]],
            logs / "prepare-rootfs.log",
        )
        (rootfs / "prepare-rootfs.sh").unlink()
        changes = [
            f"LABEL {RECIPE_LABEL}={recipe_hash('rootfs')}",
            f"LABEL {KIND_LABEL}=rootfs",
            f"LABEL io.extharness.base.source=debian-{SUITE}",
            "ENV PATH=/usr/lib/postgresql/18/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["/bin/bash"]',
        ]
        import_cmd = [engine.cli, "import"]
        for change in changes:
            import_cmd += ["--change", change]
        _step(
            "import",
            f"importing it as {ROOTFS_IMAGE}",
            [["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], [*import_cmd, "-", ROOTFS_IMAGE]],
            logs / "import.log",
        )
    finally:
        _remove_tree(work)


def _build_derived(step: str, engine: Engine, cache_dir: Path) -> None:
    recipe = _RECIPES[step]
    parent = _RECIPES[recipe.parent].ref  # type: ignore[index]
    assert recipe.containerfile
    cmd = [
        engine.cli, "build",
        "-f", str(IMAGES_DIR / recipe.containerfile),
        "--build-arg", f"BASE={parent}",
        "--label", f"{RECIPE_LABEL}={recipe_hash(step)}",
        "--label", f"{KIND_LABEL}={step}",
        # apt-get in the builder needs the Debian archive; the host's network is the simplest way.
        "--network", "host",
        "-t", recipe.ref,
    ]  # fmt: skip
    if engine.kind == "podman":
        cmd.append("--layers=false")  # one image, no intermediate ones left behind per rebuild
    cmd.append(str(IMAGES_DIR))
    what = f"building {recipe.ref} on {parent}"
    if step == "builder":
        what += " (apt-get install postgresql-server-dev-18 gcc make libc6-dev)"
    _step(step, what, [cmd], cache_dir / "logs" / f"build-{step}.log")


def _step(name: str, what: str, pipeline: list[list[str]], log: Path) -> None:
    """Run ``pipeline`` (commands joined by pipes) with its output in ``log``.

    Each command gets its own process group so a timeout or Ctrl-C stops all of it
    (debootstrap's dpkg, the engine's helpers), not only the first process.
    """
    _say(f"  {what}...")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", DOCKER_BUILDKIT="0", LC_ALL="C.UTF-8")
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    with log.open("wb") as out:
        out.write(f"$ {' | '.join(' '.join(cmd) for cmd in pipeline)}\n".encode())
        out.flush()
        try:
            previous = None
            for index, cmd in enumerate(pipeline):
                last = index == len(pipeline) - 1
                proc = subprocess.Popen(
                    cmd,
                    stdin=previous.stdout if previous else subprocess.DEVNULL,
                    stdout=out if last else subprocess.PIPE,
                    stderr=out,
                    env=env,
                    start_new_session=True,
                )
                if previous and previous.stdout:
                    previous.stdout.close()  # the next process owns the pipe now
                procs.append(proc)
                previous = proc
            deadline = started + limit_of("EXTHARNESS_BASE_IMAGE_TIMEOUT")
            for proc in procs:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except OSError as exc:  # a program of the pipeline cannot start
            _stop(procs)
            raise EnvironmentMissing(
                f"{name} of the offline PostgreSQL 18 stand-in: cannot run {cmd[0]}: {exc.strerror}"
            ) from None
        except subprocess.TimeoutExpired:
            _stop(procs)
            raise HarnessError(
                f"{name} of the offline PostgreSQL 18 stand-in did not finish within {limit_of('EXTHARNESS_BASE_IMAGE_TIMEOUT'):.0f}s "
                f"(raise EXTHARNESS_BASE_IMAGE_TIMEOUT); log: {log}"
            ) from None
        except BaseException:
            _stop(procs)
            raise
    elapsed = time.monotonic() - started
    last_build_timings[name] = elapsed
    failed = [(cmd, proc.returncode) for cmd, proc in zip(pipeline, procs) if proc.returncode != 0]
    if failed:
        cmd, code = failed[-1]
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        raise HarnessError(
            f"{name} of the offline PostgreSQL 18 stand-in failed ({Path(cmd[0]).name} exit {code}): "
            f"{' | '.join(line.strip() for line in tail)}; full log: {log}"
        )
    _say(f"  {name}: {elapsed:.1f}s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    stop_groups(procs, signal.SIGTERM, 10.0, reap=5.0)


# -- temporary root filesystems -------------------------------------------------------------
def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first (debootstrap mounts /proc, /sys, /dev)."""
    root = os.path.realpath(path)
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == root or point.startswith(root + "/"):
            found.append(point)
    return sorted(set(found), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Remove a temporary root filesystem, unmounting what an interrupted debootstrap left.

    Never deletes through a mount: if something stays mounted, the tree is left in place.
    """
    if not path.exists():
        return
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    remaining = _mounts_under(path)
    if remaining:
        _say(f"warning: {remaining[0]} is still mounted; left {path} in place (remove it by hand)")
        return
    shutil.rmtree(path, ignore_errors=True)


def _remove_stale_workdirs(cache_dir: Path) -> None:
    """Remove ``tmp-<pid>`` trees of builds whose process is gone (killed with SIGKILL)."""
    for work in cache_dir.glob("tmp-*"):
        pid = work.name.removeprefix("tmp-")
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            _remove_tree(work)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- CLI --------------------------------------------------------------------------------
def image_size(engine: Engine, ref: str) -> int | None:
    result = engine.run("image", "inspect", "--format", "{{.Size}}", ref, check=False)
    text = result.stdout.strip()
    return int(text) if result.returncode == 0 and text.isdigit() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m extharness.postgres.base_images",
        description="Build (once) the offline PostgreSQL 18 stand-in images from Debian forky.",
    )
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"{', '.join(STANDINS)} (default: --all)")
    parser.add_argument("--all", action="store_true", help="all of them")
    parser.add_argument("--cache-dir", type=Path, default=None, help="lock, logs and temporary root filesystems")
    parser.add_argument("--rebuild", action="store_true", help="build again from debootstrap, recipe unchanged or not")
    args = parser.parse_args(argv)
    for kind in args.kinds:
        if kind not in STANDINS:
            parser.error(f"unknown kind {kind!r}: use {', '.join(STANDINS)} or --all")
    kinds = list(STANDINS) if args.all or not args.kinds else list(dict.fromkeys(args.kinds))
    cache_dir = args.cache_dir or default_cache_dir()
    # --rebuild rebuilds each step once, however many of the images share it.
    force = {step for kind in kinds for step in _chain(kind)} if args.rebuild else set()
    try:
        engine = require_engine("to build the offline PostgreSQL 18 stand-in images")
        for kind in kinds:
            _ensure(kind, engine, cache_dir, force)
        for kind in kinds:
            ref = STANDINS[kind].ref
            size = image_size(engine, ref)
            print(f"{kind:9} {ref:45} {f'{size / 1e6:.0f} MB' if size else 'size unknown'}")
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, EnvironmentMissing) else 1
    except KeyboardInterrupt:
        print("interrupted; temporary root filesystems removed, existing images left as they were", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
