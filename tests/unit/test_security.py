"""What the harness runs is safe to run: postgres is never root, passwords are random and never
printed, and checking an image's layout executes nothing from it.

* The server process, natively and in both container backends, has a non-zero uid: asked of
  the kernel (``/proc/self/status`` read by the backend serving our connection) and, for
  containers, of the engine (``podman top <container> huser user``).
* Every server gets its own random password (not the template's), a TCP login without it is
  refused, and none of the passwords a ``pytest -m sql -s -v`` run generated (recorded by a
  test-only plugin wrapping ``new_password``) appears in its output, its JUnit XML, findings
  JSON or Markdown summary, or on a command line while it runs; a failing run with ``-l``
  (locals in tracebacks) prints none either.
* Nothing from the image runs on the host: ``read_image`` and every layout rule run under a
  guard that refuses process starts, exec and ``dlopen`` in the fuzz tests
  (``test_fuzz_inputs.py::test_reading_and_checking_start_no_process`` and
  ``test_the_guards_catch_what_they_claim``). Here the whole ``pytest -m layout`` session is
  watched with a Python audit hook, for an image holding a shell script and an ELF program.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import pytest
from crafted import FAILING_PROFILE

from extharness.postgres.server import PID_LABEL, RUN_LABEL, RunningServer, run_id
from extharness.source.engine import detect_engine

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(600)


# -- servers started in this process ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_target(sample_release: Path, tmp_path_factory: pytest.TempPathFactory):
    """(layout, name, engine image) of the sample, built with the engine when there is one."""
    from extharness.inspect.extension import choose_extension, describe
    from extharness.inspect.oci_reader import read_image
    from extharness.source.acquire import ImageRequest, acquire, default_cache_dir

    acquired = acquire(ImageRequest(artifacts=sample_release), default_cache_dir())
    image = read_image(acquired.reader_ref)
    name = choose_extension(image, None)
    return describe(image.images[0], name), name, acquired.engine_ref


@contextmanager
def started(kind: str, sample_target) -> Iterator[RunningServer]:
    """A server of backend ``kind`` with the sample mounted, stopped and removed afterwards."""
    from extharness.postgres.mount import ImageVolumeMount
    from extharness.source.acquire import default_cache_dir

    layout, name, engine_ref = sample_target
    cache = default_cache_dir()
    with ExitStack() as stack:
        mount = stack.enter_context(ImageVolumeMount(layout.image, name.replace("_", "-")))
        if kind == "native":
            from extharness.postgres.native import NativeBackend

            backend = NativeBackend(mount.path, cache, layout)
        elif kind == "composite":
            from extharness.postgres.containers import CompositeBackend

            backend = CompositeBackend("postgres:18.1", mount, cache)
        else:
            from extharness.postgres.containers import ImageVolumeBackend

            backend = ImageVolumeBackend("ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie", mount, cache,
                                         engine_ref)  # fmt: skip
        reason = backend.available()
        if reason:
            pytest.skip(f"{kind} backend: {reason}")
        stack.callback(getattr(backend, "close", lambda: None))
        backend.prepare()
        yield stack.enter_context(backend.start())


def container_of(server: RunningServer) -> str:
    """The container of ``server``: ours (run id and pid labels) and publishing its port."""
    engine = detect_engine()
    assert engine is not None
    names = engine.run("ps", "--filter", f"label={RUN_LABEL}={run_id()}", "--filter", f"label={PID_LABEL}={os.getpid()}",
                       "--format", "{{.Names}}").stdout.split()  # fmt: skip
    found = [name for name in names
             if f":{server.port}" in engine.run("port", name, "5432/tcp", check=False).stdout]  # fmt: skip
    assert len(found) == 1, f"expected the one container publishing port {server.port}, found {found} of {names}"
    return found[0]


def backend_uid(server: RunningServer) -> int:
    """The real uid of the server process that serves our connection, as its kernel says."""
    with server.connect() as conn:
        status = conn.execute("SELECT pg_read_file('/proc/self/status')").fetchone()[0]
    found = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    assert found, status
    return int(found.group(1))


@pytest.mark.parametrize("kind", ["native", "composite", "imagevolume"])
def test_postgres_never_runs_as_root(kind: str, sample_target) -> None:
    with started(kind, sample_target) as server:
        uid = backend_uid(server)
        assert uid != 0, f"{kind}: the PostgreSQL backend process runs as root ({server.description})"
        seen = f"backend uid {uid}"
        if kind != "native":
            engine = detect_engine()
            assert engine is not None
            name = container_of(server)
            rows = engine.run("top", name, "huser", "user", "comm").stdout.strip().splitlines()[1:]
            processes = [row.split() for row in rows if row.strip()]
            assert processes, f"podman top {name} listed no process"
            root = [row for row in processes if "root" in row[:2] or "0" in row[:2]]
            assert not root, f"{kind}: processes of {name} run as root: {root}"
            seen += f"; {len(processes)} container processes as " + ", ".join(
                sorted({"/".join(r[:2]) for r in processes})
            )
        print(f"\n[security] {kind}: {seen}")


def test_each_server_gets_its_own_random_password(sample_target) -> None:
    kind = "native"
    with started(kind, sample_target) as first, started(kind, sample_target) as second:
        assert first.password != second.password
        for server in (first, second):
            assert len(server.password) >= 24 and re.fullmatch(r"[A-Za-z0-9_-]+", server.password)
            for wrong in ("", "postgres", "password"):
                with pytest.raises(psycopg.OperationalError, match="password"):
                    psycopg.connect(host=server.host, port=server.port, user=server.user, password=wrong,
                                    dbname="postgres", connect_timeout=10).close()  # fmt: skip
    print(f"\n[security] {kind}: two servers, two passwords; TCP logins without them refused")


def test_container_servers_do_not_keep_the_template_password(sample_target) -> None:
    with started("imagevolume", sample_target) as server:
        backend_template = [p for p in Path(os.environ.get("EXTHARNESS_CACHE_DIR") or Path.home() / ".cache" /
                                            "extharness").glob("container-pgdata/*/password")]  # fmt: skip
        templates = {p.read_text().strip() for p in backend_template}
        assert server.password not in templates, "the server still accepts the cached template's password"
        for template in templates:
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(host=server.host, port=server.port, user=server.user, password=template,
                                dbname="postgres", connect_timeout=10).close()  # fmt: skip


# -- passwords are never printed ----------------------------------------------------------------------
RECORDER = '''
"""Test-only plugin: every password the harness generates is appended to $XH_PASSWORD_LOG."""
import os

from extharness.postgres import containers, native, server

_generate = server.new_password


def _recorded() -> str:
    value = _generate()
    with open(os.environ["XH_PASSWORD_LOG"], "a") as log:
        log.write(value + "\\n")
    return value


for _module in (server, native, containers):
    _module.new_password = _recorded
'''


class CommandLineWatch:
    """Samples every process' command line while a run goes on (what ``ps`` shows other users)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    self.seen.add(entry.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
            time.sleep(0.2)

    def __enter__(self) -> CommandLineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def printed_sql_run(tmp_path: Path, *extra: str) -> tuple[int, list[str], dict[str, str], set[str]]:
    """``pytest -m sql -s -v`` with the recorder: (exit code, passwords, outputs by name, command lines)."""
    (tmp_path / "xh_password_recorder.py").write_text(RECORDER)
    log = tmp_path / "passwords"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update(XH_PASSWORD_LOG=str(log), PYTHONPATH=f"{tmp_path}:{env.get('PYTHONPATH', '')}".rstrip(":"),
               EXTHARNESS_RUN_ID=f"pw{secrets.token_hex(3)}")  # fmt: skip
    files = {"junit xml": tmp_path / "junit.xml", "findings json": tmp_path / "findings.json",
             "summary md": tmp_path / "summary.md"}  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", "-p", "xh_password_recorder", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-m", "sql", "-s", "-v", "-rA", "--pg-backend", "auto", f"--junitxml={files['junit xml']}",
           f"--findings-json={files['findings json']}", f"--summary-md={files['summary md']}",
           "tests/sql/test_create.py", "tests/sql/test_smoke.py", "tests/sql/test_dump_restore.py", *extra]  # fmt: skip
    with CommandLineWatch() as watch:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    outputs = {"stdout": proc.stdout, "stderr": proc.stderr}
    outputs.update({name: path.read_text(errors="replace") for name, path in files.items() if path.exists()})
    passwords = log.read_text().split() if log.exists() else []
    return proc.returncode, passwords, outputs, watch.seen


def leaks(passwords: list[str], outputs: dict[str, str], command_lines: set[str]) -> list[str]:
    found = [f"{where}" for where, text in outputs.items() for pw in passwords if pw in text]
    found += [f"command line: {line[:120]}" for line in command_lines for pw in passwords if pw in line]
    return found


def test_passwords_are_never_printed(tmp_path: Path) -> None:
    code, passwords, outputs, command_lines = printed_sql_run(tmp_path)
    assert code == 0, outputs["stdout"][-4000:] + outputs["stderr"][-2000:]
    assert passwords, "the run generated no password: the recorder did not see the servers start"
    found = leaks(passwords, outputs, command_lines)
    print(f"\n[security] {len(passwords)} passwords generated, printed in {len(found)} places "
          f"(searched: {', '.join(outputs)}, {len(command_lines)} command lines)")  # fmt: skip
    assert not found, f"passwords printed in: {found}"


def test_a_failing_run_prints_no_password_either(tmp_path: Path) -> None:
    profile = tmp_path / "wrong.toml"
    profile.write_text(FAILING_PROFILE)
    code, passwords, outputs, command_lines = printed_sql_run(tmp_path, f"--ext-profile={profile}", "-l",
                                                              "--tb=long")  # fmt: skip
    assert code == 1 and "test_profile_smoke_sql" in outputs["stdout"], outputs["stdout"][-4000:]
    assert passwords
    found = leaks(passwords, outputs, command_lines)
    print(f"\n[security] failing run with -l: {len(passwords)} passwords, printed in {len(found)} places")
    assert not found, f"passwords printed in: {found}"


# -- layout checks execute nothing from the image -------------------------------------------------------
AUDIT = '''
"""Test-only plugin: records process starts and library loads of the whole session."""
import json
import os
import sys
from collections.abc import Mapping

_LOG = os.environ["XH_AUDIT_LOG"]
_WATCHED = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.fork", "os.forkpty",
            "pty.spawn", "ctypes.dlopen")


def _hook(event, args):
    if event in _WATCHED:
        with open(_LOG, "a") as log:
            shown = [repr(a)[:300] for a in args if not isinstance(a, Mapping)]  # not the environment
            log.write(json.dumps([event, shown]) + "\\n")


sys.addaudithook(_hook)
'''


def programs_image(path: Path, marker: Path) -> str:
    """An OCI archive of the sample extension plus a shell script and an ELF program."""
    sys.path.insert(0, str(Path(__file__).parent))
    from fuzzing import OciDocuments, extension_entries, tar_archive

    from extharness.inspect.model import FileType
    from extharness.source.oci_writer import LayerEntry

    entries = extension_entries(Path("/bin/true").read_bytes(), [
        LayerEntry("/lib/postinstall.sh", mode=0o755, content=f"#!/bin/sh\ntouch {marker}\n".encode()),
        LayerEntry("/lib/tool", mode=0o755, content=Path("/bin/true").read_bytes()),
        LayerEntry("/share/extension/run", FileType.SYMLINK, 0o777, linkname="../../lib/postinstall.sh"),
    ])  # fmt: skip
    path.write_bytes(tar_archive(OciDocuments.single(entries).members()))
    return f"oci-archive:{path}"


@pytest.mark.parametrize("engine", ["no engine", "engine"])
def test_layout_checks_execute_nothing_from_the_image(engine: str, tmp_path: Path) -> None:
    found_engine = detect_engine()
    if engine == "engine" and found_engine is None:
        pytest.skip("no container engine: install podman or docker")
    marker = tmp_path / "the-image-ran"
    image = programs_image(tmp_path / "programs.oci.tar", marker)
    (tmp_path / "xh_audit.py").write_text(AUDIT)
    log = tmp_path / "audit.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EXTHARNESS_"))}
    env.update(XH_AUDIT_LOG=str(log), PYTHONPATH=f"{tmp_path}:{env.get('PYTHONPATH', '')}".rstrip(":"))
    if engine == "no engine":
        env["EXTHARNESS_ENGINE"] = "none"
    cmd = [sys.executable, "-m", "pytest", "-p", "xh_audit", "-p", "no:cacheprovider", "-p", "no:xdist", "-m",
           "layout", "-q", f"--ext-image={image}", "--ext-name=fuzzext", "tests/layout"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # The image is meant to fail (executables in /lib): the run must get to the rules and flag them.
    assert "layout.tree.no-executables" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    started = [e for e in events if e[0] != "ctypes.dlopen"]
    loaded = [e for e in events if e[0] == "ctypes.dlopen" and e[1] and e[1][0] not in ("None", "'libc.so.6'")]
    from_image = [e for e in events if any(str(tmp_path) in a or "postinstall" in a or "/lib/tool" in a for a in e[1])]
    if engine == "no engine":
        unexpected = started
    else:
        assert found_engine is not None
        unexpected = [e for e in started if e[0] != "subprocess.Popen" or found_engine.cli not in e[1][0]]
    print(f"\n[security] pytest -m layout ({engine}): {len(started)} process starts "
          f"({len(started) - len(unexpected)} of the engine CLI), {len(loaded)} library loads, "
          f"{len(from_image)} touching the image")  # fmt: skip
    assert not marker.exists(), "the image's script ran"
    assert not from_image, f"something from the image was executed or loaded: {from_image}"
    assert not loaded, f"libraries loaded: {loaded}"
    assert not unexpected, f"processes other than the engine CLI started: {unexpected}"
