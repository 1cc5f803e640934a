"""Time the sql tier: release folder -> first verified CREATE EXTENSION per backend, and the
whole ``pytest -m sql`` wall time with one and two xdist workers.

Not a test: it prints a Markdown section, and with ``--write docs/benchmarks.md`` replaces
the "SQL tier" section of that file (date, machine, command, figures).

Per backend, two figures from the pg_ticker sample's release folder:

* cold: empty harness cache (image built from the release folder, native template initdb'd,
  composite image and container data templates made); the offline stand-in base images are
  engine images and already built;
* warm: the same again with that cache, which is what every run after the first pays.

Each covers: build/read the image, extract it to the /extensions/<name> folder, prepare the
backend, start PostgreSQL with CNPG's settings, CREATE EXTENSION, check extversion equals
default_version, stop and clean up.

    python benchmarks/sql_bench.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from benchmark_doc import cpu_model, load_average, write_section  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## SQL tier"

from extharness.inspect.extension import choose_extension, describe  # noqa: E402
from extharness.inspect.oci_reader import read_image  # noqa: E402
from extharness.postgres.mount import ImageVolumeMount  # noqa: E402
from extharness.postgres.sqlchecks import install_extension, installed_extension  # noqa: E402
from extharness.source.acquire import ImageRequest, acquire, build_sample_release, default_cache_dir  # noqa: E402
from extharness.source.engine import detect_engine  # noqa: E402

BACKENDS = ("native", "composite", "imagevolume")


def _drop_composite_image(backend) -> None:
    """Cold means cold: the composite image is content-addressed in the engine; remove it first."""
    from extharness.postgres.base_images import resolve_pg_image
    from extharness.postgres.containers import composite_tag, postgres_uid_of

    engine = backend.engine
    base = resolve_pg_image(backend.requested_image, engine, backend.cache_dir)
    engine.run("rmi", composite_tag(engine, base, backend.mount, postgres_uid_of(engine, base)), check=False)


def first_create(backend_name: str, release: Path, cache: Path, cold: bool = False) -> float:
    """Seconds from the release folder to a verified CREATE EXTENSION on ``backend_name``."""
    started = time.monotonic()
    acquired = acquire(ImageRequest(artifacts=release), cache)
    image = read_image(acquired.reader_ref)
    name = choose_extension(image, None)
    layout = describe(image.images[0], name)
    with ExitStack() as stack:
        mount = stack.enter_context(ImageVolumeMount(layout.image, name.replace("_", "-")))
        if backend_name == "native":
            from extharness.postgres.native import NativeBackend

            backend = NativeBackend(mount.path, cache, layout)
        elif backend_name == "composite":
            from extharness.postgres.containers import CompositeBackend

            backend = CompositeBackend("postgres:18.1", mount, cache)
        else:
            from extharness.postgres.containers import ImageVolumeBackend

            backend = ImageVolumeBackend(
                "ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie", mount, cache, acquired.engine_ref
            )
        reason = backend.available()
        if reason:
            raise RuntimeError(reason)
        stack.callback(getattr(backend, "close", lambda: None))
        if cold and backend_name == "composite":
            paused = time.monotonic()
            _drop_composite_image(backend)
            started += time.monotonic() - paused  # removing it is not part of the figure
        backend.prepare()
        server = stack.enter_context(backend.start())
        with server.connect() as conn:
            install_extension(conn, name, layout)
            version = installed_extension(conn, name)["version"]
        if version != layout.control.default_version:
            raise RuntimeError(f"installed {version}, expected {layout.control.default_version}")
    return time.monotonic() - started


def pytest_wall(workers: int, engine: bool) -> tuple[float, str]:
    env = {**os.environ}
    env.pop("EXTHARNESS_RUN_ID", None)
    if not engine:
        env["EXTHARNESS_ENGINE"] = "none"
    cmd = [sys.executable, "-m", "pytest", "-m", "sql", "-p", "no:cacheprovider", "-q", "-n", str(workers)]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    summary = next(
        (line for line in reversed(proc.stdout.splitlines()) if " in " in line and "passed" in line),
        proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "",
    )
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed (exit {proc.returncode}):\n" + proc.stdout[-3000:])
    return elapsed, re.sub(r"=+", "", summary).strip()


def machine() -> str:
    model = cpu_model()
    load = load_average()
    engine = detect_engine()
    engine_text = "no container engine"
    if engine:
        version = engine.run("version", "--format", "{{.Client.Version}}", check=False).stdout.strip()
        engine_text = f"{engine.kind} {version}"
    return (
        f"{os.cpu_count()} CPUs, {model}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {engine_text}, load average at start {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, help="release folder (default: the pg_ticker sample's)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated backends to time")
    parser.add_argument("--no-pytest", action="store_true", help="skip the pytest -m sql wall times")
    parser.add_argument("--write", type=Path, help="update the 'SQL tier' section of this Markdown file")
    args = parser.parse_args(argv)

    host = machine()
    release = args.release or build_sample_release(default_cache_dir(), None)
    engine = detect_engine()
    rows = []
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if name != "native" and engine is None:
            rows.append(f"| {name} | skipped: no container engine | |")
            continue
        with tempfile.TemporaryDirectory(prefix="extharness-bench-") as tmp:
            cache = Path(tmp) / "cache"
            os.environ["EXTHARNESS_NATIVE_ROOT"] = str(Path(tmp) / "native")  # cold: initdb included
            Path(tmp).chmod(0o755)
            try:
                cold = first_create(name, release, cache, cold=True)
                warm = first_create(name, release, cache)
            finally:
                os.environ.pop("EXTHARNESS_NATIVE_ROOT", None)
                shutil.rmtree(Path(tmp) / "native", ignore_errors=True)
        rows.append(f"| {name} | {cold:.1f} | {warm:.1f} |")
        print(rows[-1], flush=True)

    pytest_rows = []
    if not args.no_pytest:
        for label, with_engine in (
            ("all backends" if engine else "native (no engine)", True),
            ("native only (`EXTHARNESS_ENGINE=none`)", False),
        ):
            if not with_engine and engine is None:
                continue
            figures = []
            for workers in (1, 2):
                elapsed, summary = pytest_wall(workers, with_engine)
                figures.append(f"{elapsed:.0f} s ({summary})")
                print(f"pytest -m sql -n {workers} [{label}]: {figures[-1]}", flush=True)
            pytest_rows.append(f"| {label} | {figures[0]} | {figures[1]} |")

    command = "python benchmarks/sql_bench.py" + (f" --write {args.write}" if args.write else "")
    body = "\n".join(
        [
            SECTION,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {host}.",
            f"Command: `{command}` (release folder: the pg_ticker sample's).",
            "",
            "Release folder to the first verified `CREATE EXTENSION` (image built and read, extracted to the "
            "`/extensions/<name>` folder, backend prepared, server started with CNPG's settings, extension "
            "created and its version checked, server stopped), in seconds. Cold: empty harness cache "
            "(includes the native template's initdb, the composite image build and the container data "
            "templates; the offline stand-in base images already existed). Warm: the next run.",
            "",
            "| backend | cold (s) | warm (s) |",
            "|---|---:|---:|",
            *rows,
            "",
            *(
                [
                    "Whole `pytest -m sql` wall time (warm caches; includes pytest start-up and collection):",
                    "",
                    "| backends | `-n 1` | `-n 2` |",
                    "|---|---|---|",
                    *pytest_rows,
                    "",
                ]
                if pytest_rows
                else []
            ),
        ]
    )
    print("\n" + body)
    if args.write:
        write_section(args.write if args.write.is_absolute() else REPO / args.write, SECTION, body)
        print(f"\nwrote the '{SECTION[3:]}' section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
