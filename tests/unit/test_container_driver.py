"""Both container backends start PostgreSQL through one driver, the engine CLI.

The ``run`` command line each backend gives the engine (a fake that records it), and what is
removed afterwards — after a pass, a failure, an interrupt, and with a kept data directory.
No engine is needed: the container never starts, the login wait is stubbed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from extharness.errors import HarnessError
from extharness.postgres import containers
from extharness.postgres.containers import PG_BINDIR, PGDATA_IN, CompositeBackend, ImageVolumeBackend
from extharness.postgres.server import container_labels

PORT = 54321


@dataclass
class FakeEngine:
    """Records every CLI call; ``run`` can be made to fail."""

    cli: str = "/usr/bin/docker"
    kind: str = "docker"  # not podman: the rootless-podman check in available() stays out of the way
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    run_fails: BaseException | None = None

    def run(self, *args: str, env: dict[str, str] | None = None, **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(args), dict(env or {})))
        if args[0] == "run" and self.run_fails is not None:
            raise self.run_fails
        return subprocess.CompletedProcess([self.cli, *args], 0, "", "")

    def commands(self, verb: str) -> list[list[str]]:
        return [args for args, _ in self.calls if args[0] == verb]


@dataclass
class FakeMount:
    name: str
    path: Path


@pytest.fixture
def removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """Stubs for the data directory copy, the ulimits probe and the login wait; the trees removed."""
    gone: list[Path] = []
    monkeypatch.setattr(containers, "fresh_data_dir", lambda template, engine, image: tmp_path / "work")
    monkeypatch.setattr(containers, "remove_tree", lambda path, engine=None, image=None: gone.append(path))
    monkeypatch.setattr(containers, "ulimit_args", lambda engine, image: ["--ulimit", "nofile=1024:1024"])
    monkeypatch.setattr(containers, "_wait_accepting", lambda container, password: PORT)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/not/this/one")
    return gone


def composite(engine: FakeEngine, tmp_path: Path) -> CompositeBackend:
    backend = CompositeBackend("postgres:18.1", FakeMount("ext", tmp_path / "mount"), tmp_path)  # type: ignore[arg-type]
    backend.engine = engine  # type: ignore[assignment]
    backend.image = "localhost/extharness/postgres:18"
    backend.composite = "localhost/extharness/composite-ext:0123"
    backend.template = (tmp_path / "template" / "data", "template-pw")
    return backend


def imagevolume(engine: FakeEngine, tmp_path: Path, how: str) -> ImageVolumeBackend:
    mount = FakeMount("ext", tmp_path / "mount" / "extensions" / "ext")
    backend = ImageVolumeBackend("operand", mount, tmp_path, "localhost/ext:1", ["lib", "/system/"])  # type: ignore[arg-type]
    backend.engine = engine  # type: ignore[assignment]
    backend.image = "localhost/extharness/cnpg-operand:18-minimal"
    backend.template = (tmp_path / "template" / "data", "template-pw")
    backend.engine_id = "sha256-id-of-localhost-ext-1"
    backend.how = how
    return backend


def split_run(args: list[str], image: str) -> tuple[list[str], list[str]]:
    """(options, command) of a ``run`` command line."""
    at = args.index(image)
    return args[:at], args[at + 1 :]


def option_values(options: list[str], flag: str) -> list[str]:
    return [options[i + 1] for i, arg in enumerate(options) if arg == flag]


def common_options(options: list[str], tmp_path: Path) -> None:
    """What every server container gets: detached, named, loopback port, labels, ulimits, data."""
    assert options[:2] == ["run", "-d"]
    assert option_values(options, "--name")[0].startswith("extharness-")
    assert option_values(options, "-p") == ["127.0.0.1::5432"]
    assert set(option_values(options, "--label")) == {f"{k}={v}" for k, v in container_labels().items()}
    assert option_values(options, "--ulimit") == ["nofile=1024:1024"]
    assert f"{tmp_path / 'work' / 'data'}:{PGDATA_IN}" in option_values(options, "-v")


def test_composite_runs_the_images_own_entrypoint_with_pgdata(removed: list[Path], tmp_path: Path) -> None:
    engine = FakeEngine()
    backend = composite(engine, tmp_path)
    with backend.start(settings={"work_mem": "8MB"}) as server:
        assert (server.backend, server.host, server.port, server.password) == ("composite", "127.0.0.1", PORT,
                                                                               server.password)  # fmt: skip
        assert server.password != "template-pw"
        assert "testcontainers" not in server.description
        assert server.description == f"{backend.composite} (from {backend.image}), port {PORT}"
        [args] = engine.commands("run")
        assert engine.commands("rm") == []
    options, command = split_run(args, backend.composite)
    common_options(options, tmp_path)
    assert "--user" not in options and "--entrypoint" not in options  # the image's default user and entrypoint
    assert option_values(options, "-e") == ["PGDATA"]
    [env] = [env for args, env in engine.calls if args[0] == "run"]
    assert env == {"PGDATA": PGDATA_IN}  # handed over by name, the value only in the CLI's environment
    assert command[0] == "postgres" and "work_mem=8MB" in command and "extension_control_path=$system" in command
    assert "-D" not in command
    name = option_values(options, "--name")[0]
    assert f"cluster_name={name}" in command
    assert engine.commands("rm") == [["rm", "-f", "-t", "0", name]]
    assert removed == [tmp_path / "work"]


@pytest.mark.parametrize("how", ["bind mount", "image mount"])
def test_imagevolume_runs_postgres_as_uid_26_with_the_extension_mounted(
    removed: list[Path], tmp_path: Path, how: str
) -> None:
    engine = FakeEngine()
    backend = imagevolume(engine, tmp_path, how)
    with backend.start() as server:
        assert server.mount_path == "/extensions/ext"
        assert server.description == (f"{backend.image} as UID 26, extension by {how} at /extensions/ext, port {PORT}")
    [(args, env)] = [(args, env) for args, env in engine.calls if args[0] == "run"]
    assert backend.image is not None
    options, command = split_run(args, backend.image)
    common_options(options, tmp_path)
    assert option_values(options, "--user") == ["26:26"]
    assert option_values(options, "--entrypoint") == [f"{PG_BINDIR}/postgres"]
    if how == "bind mount":
        assert f"{backend.mount.path}:/extensions/ext:ro" in option_values(options, "-v")
        assert "--mount" not in options
    else:
        assert option_values(options, "--mount") == [
            "type=image,source=sha256-id-of-localhost-ext-1,destination=/extensions/ext"
        ]
    assert option_values(options, "-e") == ["LD_LIBRARY_PATH"]
    assert env == {"LD_LIBRARY_PATH": "/extensions/ext/lib:/extensions/ext/system"}
    assert not any(env["LD_LIBRARY_PATH"] in arg for arg in args)  # the value never on the command line
    assert command[:2] == ["-D", PGDATA_IN]
    assert "extension_control_path=$system:/extensions/ext/share" in command
    assert engine.commands("rm") and removed == [tmp_path / "work"]


@pytest.mark.parametrize("kind", ["composite", "imagevolume"])
@pytest.mark.parametrize(
    "failure", [HarnessError("docker run failed"), KeyboardInterrupt()], ids=["run fails", "interrupt"]
)
def test_a_failed_or_interrupted_start_removes_container_and_data(
    removed: list[Path], tmp_path: Path, kind: str, failure: BaseException
) -> None:
    engine = FakeEngine(run_fails=failure)
    backend = composite(engine, tmp_path) if kind == "composite" else imagevolume(engine, tmp_path, "bind mount")
    with pytest.raises(type(failure)):
        with backend.start():
            pass
    [args] = engine.commands("run")
    name = option_values(args, "--name")[0]
    assert engine.commands("rm") == [["rm", "-f", "-t", "0", name]]  # also one the CLI may have created
    assert removed == [tmp_path / "work"]


@pytest.mark.parametrize("kind", ["composite", "imagevolume"])
def test_an_interrupt_while_serving_removes_container_and_data(removed: list[Path], tmp_path: Path, kind: str) -> None:
    engine = FakeEngine()
    backend = composite(engine, tmp_path) if kind == "composite" else imagevolume(engine, tmp_path, "image mount")
    with pytest.raises(KeyboardInterrupt):
        with backend.start():
            raise KeyboardInterrupt
    assert len(engine.commands("rm")) == 1 and removed == [tmp_path / "work"]


@pytest.mark.parametrize("kind", ["composite", "imagevolume"])
def test_a_kept_data_directory_is_stopped_cleanly_and_kept(removed: list[Path], tmp_path: Path, kind: str) -> None:
    engine = FakeEngine()
    backend = composite(engine, tmp_path) if kind == "composite" else imagevolume(engine, tmp_path, "bind mount")
    kept = tmp_path / "kept" / "data"
    with backend.start(data_dir=kept) as server:
        assert server.password == "template-pw"  # a kept data directory keeps its password
    [args] = engine.commands("run")
    assert f"{kept}:{PGDATA_IN}" in option_values(args, "-v")
    name = option_values(args, "--name")[0]
    verbs = [args[0] for args, _ in engine.calls]
    assert verbs == ["run", "rm"], verbs  # one `rm -f -t N`: a clean shutdown, then the container goes
    rm = engine.commands("rm")[0]
    assert rm[-1] == name and "-t" in rm and int(rm[rm.index("-t") + 1]) > 0, rm  # waits, not rm -t 0
    assert removed == []  # the data directory stays for the next server
