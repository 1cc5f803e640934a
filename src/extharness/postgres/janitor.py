"""Finding what the sql tier left behind: processes, temporary folders, containers, image mounts
and volumes.

Every resource carries the run id (``EXTHARNESS_RUN_ID``) and its creator's pid in its
name: postgres processes in their ``cluster_name`` (visible in the process title), temporary
folders in their name (``extharness-<run>-<pid>-<kind>-*``), containers in labels. That
makes leftovers countable per run, and lets :func:`sweep_stale` remove what a killed
(SIGKILL) run left, without touching anything a live process still uses. Image mounts and
volumes carry no run id: :func:`leftovers` counts those that appeared since a baseline and that
no container holds.

CLI: ``python -m extharness.postgres.janitor [RUN_ID]`` prints the counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from extharness.postgres.server import HOST_LABEL, PID_LABEL, RUN_LABEL, own_name_prefix

_TEMP = re.compile(r"^extharness-([0-9a-z]+)-(\d+)-(mount|pg|ctx|engine)-")


def _command_lines() -> Iterator[tuple[int, bytes]]:
    """(pid, command line with spaces between its arguments) of every other process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue


def our_processes(run: str) -> list[str]:
    """``pid cmdline`` of processes whose command line names this run (postgres' cluster_name)."""
    marker = f"extharness-{run}-".encode()
    return [
        f"{pid} {cmdline.decode(errors='replace').strip()[:160]}"
        for pid, cmdline in _command_lines()
        if marker in cmdline
    ]


def _conmons() -> Iterator[tuple[int, bytes]]:
    """(pid, command line) of every process titled conmon (podman's, or a test's stand-in)."""
    for pid, cmdline in _command_lines():
        if cmdline.startswith(b"/usr/bin/conmon ") or b"conmon " in cmdline[:40]:
            yield pid, cmdline


def kill_orphaned_runtime(container: str) -> list[str]:
    """Kill the ``conmon`` (and the ``runc init`` under it) of ``container`` when the engine no
    longer knows it: a ``podman run`` stopped between creating and starting its container leaves
    them waiting forever after ``rm -f`` removed the container (seen in .ci/run: a ``-n 2`` run
    interrupted while its servers started; conmon and ``runc init`` still there 10 minutes on).
    Only processes naming this container (a name unique to one run and process) are touched."""
    import signal

    marker = f" {container} ".encode()
    killed = []
    for pid, cmdline in _conmons():
        if marker not in cmdline + b" ":
            continue
        try:
            children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            children = []
        # conmon first: killed after its child, it could see the child end and exit on its own
        # before the signal lands (a stand-in's shell did, in a .ci/run).
        for victim in (pid, *children):
            try:
                os.kill(victim, signal.SIGKILL)
                killed.append(str(victim))
            except OSError:
                pass
    return killed


#: A harness container name as conmon shows it (``-n NAME``): run, worker and creator's pid.
_CONMON_NAME = re.compile(rb"(?:^|\s)-n (extharness-[0-9a-z]+-[0-9a-z]+-(\d+)-\S+)")


def conmon_names(prefix: str = "extharness-") -> list[tuple[str, int, int]]:
    """(container name, creator's pid, conmon's pid) of every conmon whose container name begins
    with ``prefix``."""
    found = []
    for pid, cmdline in _conmons():
        match = _CONMON_NAME.search(cmdline)
        if match and match.group(1).decode(errors="replace").startswith(prefix):
            found.append((match.group(1).decode(errors="replace"), int(match.group(2)), pid))
    return found


def _waits_in_runc_init(conmon: int) -> bool:
    """Whether a child of ``conmon`` is ``runc init``: a container created and never started. A
    conmon whose container ended has none (it may still be running the engine's cleanup, which
    unmounts the container's image mounts: killed then, that cleanup is cut short)."""
    try:
        children = Path(f"/proc/{conmon}/task/{conmon}/children").read_text().split()
    except OSError:
        return False
    for child in children:
        try:
            if b"runc init" in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")[:40]:
                return True
        except OSError:
            continue
    return False


def kill_orphans_of(engine, prefix: str, creator_gone: bool = False) -> list[str]:
    """Kill the conmon and ``runc init`` of every container named ``prefix...`` that waits in
    ``runc init`` and that the engine no longer knows (a throw-away ``run --rm`` cut short between
    creating and starting it: the engine removes the container, they wait forever).
    ``creator_gone``: only those whose creating process no longer exists (what a killed run left)."""
    killed = []
    for name, creator, conmon in conmon_names(prefix):
        if (creator_gone and _alive(creator)) or not _waits_in_runc_init(conmon):
            continue
        if engine.run("container", "exists", name, check=False).returncode != 0:
            killed += kill_orphaned_runtime(name)
    return killed


def our_temp_dirs(run: str, where: Path | None = None) -> list[str]:
    base = Path(where or tempfile.gettempdir())
    return sorted(str(p) for p in base.glob(f"extharness-{run}-*"))


def our_containers(run: str) -> list[str]:
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    if engine is None:
        return []
    out = engine.run("ps", "-a", "--filter", f"label={RUN_LABEL}={run}", "--format", "{{.Names}}", check=False)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def unheld_image_mounts() -> set[str]:
    """Mount points of images no container holds (``podman image mount``).

    An image stays mounted after its container is gone when the engine did not unmount it (podman
    4 unmounts a container's image volume by the name it was given; see ImageVolumeBackend). Not
    labelled by run, so a test compares them with what was there before. Docker has no image
    mounts to list.
    """
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    if engine is None or engine.kind != "podman":
        return set()
    mounted = {
        line.split()[-1] for line in engine.run("image", "mount", check=False).stdout.splitlines() if line.strip()
    }
    containers = engine.run("ps", "-a", "-q", check=False).stdout.split()
    if not mounted or not containers:
        return mounted
    # one line per container still there (one removed meanwhile is left out, check=False)
    out = engine.run("inspect", "--type", "container", "--format", "{{json .Mounts}}", *containers, check=False)
    sources = set()
    for line in out.stdout.splitlines():
        try:
            sources |= {m.get("Source", "") for m in json.loads(line) or [] if m.get("Type") == "image"}
        except (json.JSONDecodeError, AttributeError):
            continue
    held = set()
    for source in sorted(sources):
        upper = engine.run("image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", source, check=False)
        if upper.returncode == 0 and upper.stdout.strip():
            held.add(str(Path(upper.stdout.strip()).parent / "merged"))
    return mounted - held


def dangling_volumes() -> set[str]:
    """Volumes no container uses (an anonymous volume of an image's VOLUME outlives a ``rm``
    without ``-v``); not labelled by run either."""
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    if engine is None:
        return set()
    return set(engine.run("volume", "ls", "-q", "--filter", "dangling=true", check=False).stdout.split())


def engine_baseline() -> dict[str, set[str]]:
    """What :func:`leftovers` compares a run's unlabelled engine state with: take it before the run."""
    return {"image_mounts": unheld_image_mounts(), "volumes": dangling_volumes()}


def leftovers(run: str, since: dict[str, set[str]] | None = None) -> dict[str, list[str]]:
    """What run ``run`` left: its processes, temporary folders and containers (any state); with
    ``since`` (an :func:`engine_baseline` from before the run) also the image mounts and volumes
    that appeared since then and nothing holds."""
    found = {"processes": our_processes(run), "temp_dirs": our_temp_dirs(run), "containers": our_containers(run)}
    if since is not None:
        now = engine_baseline()
        found |= {kind: sorted(now[kind] - since.get(kind, set())) for kind in now}
    return found


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sweep_stale(where: Path | None = None) -> list[str]:
    """Remove temporary folders and containers of harness processes that no longer exist."""
    removed = []
    base = Path(where or tempfile.gettempdir())
    for path in base.glob("extharness-*"):
        match = _TEMP.match(path.name)
        if not match or _alive(int(match.group(2))):
            continue
        for dirpath, _dirnames, _filenames in os.walk(path):
            try:
                os.chmod(dirpath, 0o755)
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    try:
        from extharness.source.engine import detect_engine

        engine = detect_engine()
    except Exception:
        engine = None
    if engine is not None:
        out = engine.run(
            "ps", "-a", "--filter", f"label={PID_LABEL}", "--format", "{{json .Labels}} {{.Names}}", check=False
        )
        host = socket.gethostname()
        for line in out.stdout.splitlines():
            labels_text, _, name = line.rpartition(" ")
            try:
                labels = json.loads(labels_text) or {}
            except json.JSONDecodeError:
                continue
            pid = str(labels.get(PID_LABEL, ""))
            if labels.get(HOST_LABEL) == host and pid.isdigit() and not _alive(int(pid)):
                engine.run("rm", "-f", "-t", "0", name, check=False)
                removed.append(f"container {name}")
        if engine.kind == "podman":
            removed += [f"process {pid}" for pid in kill_orphans_of(engine, "extharness-", creator_gone=True)]
    return removed


def remove_own_stopped() -> list[str]:
    """Remove this process's containers that are not running: a throw-away ``run --rm`` whose
    CLI was stopped (interrupt, timeout) between creating and removing it stays ``Created``;
    then kill the conmon and ``runc init`` such a run left behind a container already removed."""
    from extharness.source.engine import detect_engine

    engine = detect_engine()
    if engine is None:
        return []
    out = engine.run(
        "ps", "-a", "--filter", f"label={PID_LABEL}={os.getpid()}", "--format", "{{.Names}} {{.State}}", check=False
    )
    removed = []
    for line in out.stdout.splitlines():
        name, _, state = line.strip().partition(" ")
        if name and state.strip().lower() not in ("running", "paused", "stopping"):
            engine.run("rm", "-f", "-t", "0", name, check=False)
            removed.append(name)
    if engine.kind == "podman":
        removed += [f"process {pid}" for pid in kill_orphans_of(engine, own_name_prefix())]
    return removed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    run = args[0] if args else os.environ.get("EXTHARNESS_RUN_ID", "")
    if not run:
        print("usage: python -m extharness.postgres.janitor RUN_ID", file=sys.stderr)
        return 2
    found = leftovers(run)
    for kind, items in found.items():
        print(f"{kind}: {len(items)}")
        for item in items:
            print(f"  {item}")
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
