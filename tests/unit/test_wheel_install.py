"""The built wheel works outside a checkout: ``pip install extharness``, then the layout tier.

What an extension's own CI does: build nothing of ours, install the wheel into a clean
virtualenv (base dependencies only, from PyPI), and from its own folder run
``extharness check -m layout --ext-artifacts DIR`` (pytest on the tier tests shipped in the
wheel) and ``extharness layout --ext-artifacts DIR`` (no pytest). A good release folder passes;
one without its control file fails naming ``layout.files.control``. Neither writes into the
installed site-packages (no test bytecode, no ``.pytest_cache``) or into this checkout. Asked
for every tier on that base install, ``extharness check`` names the extra each missing tier needs.

The wheel is built from a copy of the files the build reads (the checkout is never built in:
setuptools would leave ``build/`` and ``*.egg-info`` there). The release folder is crafted: the
sample's control file and scripts, and a small module compiled with ``gcc`` (no PostgreSQL
build tools needed).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from crafted import SAMPLE, ElfKit

# one worker builds and installs once for the module (about 30 s warm: build, venv, pip install)
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("wheel-install")]

ROOT = Path(__file__).resolve().parents[2]
#: What the build reads besides setup.py's SHIPPED folders.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src")
UNREACHABLE = re.compile(
    r"NewConnectionError|Network is unreachable|Temporary failure in name resolution|"
    r"No matching distribution found|Could not find a version that satisfies"
)
#: What the outer pytest run (this one, and with -n its other worker: any Python process that
#: imports a checkout module) writes into the checkout while this module runs.
OUTER_RUN_WRITES = re.compile(r"^((.*/)?__pycache__/|\.hypothesis/)")
CHECKOUT_SKIP = (".git", ".venv")


def _shipped() -> tuple[str, ...]:
    """setup.py's SHIPPED, read without running setup.py (which calls setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SHIPPED" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no SHIPPED")


def _copy_build_inputs(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "target", "*.o", "*.so", "*.pyc")
    for relative in (*BUILD_INPUTS, *_shipped()):
        source, target = ROOT / relative, dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return dest


def _env(cache: Path) -> dict[str, str]:
    """This process's environment less anything that would point back at the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "EXTHARNESS_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV", "COV_CORE_SOURCE")
    }
    env.update(EXTHARNESS_CACHE_DIR=str(cache), EXTHARNESS_ENGINE="none")
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (relative path -> size, mtime), less the top-level ``skip``."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = Path(dirpath, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            found[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


def _changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(p for p, stat in after.items() if before.get(p) != stat)


@dataclass
class Installed:
    python: Path
    bin: Path
    site_packages: Path
    env: dict[str, str]
    workdir: Path  # the user's folder: outside the checkout and the virtualenv
    checkout_before: dict[str, tuple[int, int]]  # the checkout's files before the build


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    checkout_before = _files(ROOT, skip=CHECKOUT_SKIP)
    tmp = tmp_path_factory.mktemp("wheel-install")
    env = _env(tmp / "cache")
    source = _copy_build_inputs(tmp / "source")
    wheels = tmp / "wheels"
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)], tmp, env)
    if build.returncode != 0 and UNREACHABLE.search(build.stdout + build.stderr):
        pytest.skip("PyPI unreachable: pip cannot fetch the build requirements (setuptools>=68, wheel)")
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("extharness-*.whl")

    venv = _run([sys.executable, "-m", "venv", str(tmp / "venv")], cwd=tmp, env=env, timeout=120)
    if venv.returncode != 0 and "ensurepip" in venv.stdout + venv.stderr:
        pytest.skip("python -m venv cannot make a virtualenv with pip here (apt-get install python3-venv)")
    assert venv.returncode == 0, venv.stdout + venv.stderr
    python = tmp / "venv" / "bin" / "python"
    install = _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp, env=env)
    if install.returncode != 0 and UNREACHABLE.search(install.stdout + install.stderr):
        pytest.skip("PyPI unreachable: pip cannot install the wheel's base dependencies")
    assert install.returncode == 0, install.stdout + install.stderr
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env)
    workdir = tmp / "extension-repo"
    workdir.mkdir()
    return Installed(python, python.parent, Path(site.stdout.strip()), env, workdir, checkout_before)


def _release_folder(dest: Path, kit: ElfKit, with_control: bool = True) -> Path:
    """A release folder of the sample: its control file and scripts, a compiled module."""
    lib, ext = dest / "artifact" / "lib", dest / "artifact" / "extension"
    lib.mkdir(parents=True)
    ext.mkdir(parents=True)
    (lib / f"{SAMPLE}.so").write_bytes(kit.module())
    (lib / f"{SAMPLE}.so").chmod(0o755)
    for source in sorted((ROOT / "sample" / SAMPLE).glob(f"{SAMPLE}*")):
        if source.suffix == ".sql" or (with_control and source.suffix == ".control"):
            shutil.copy2(source, ext / source.name)
    return dest


COMMANDS = {
    "check": ["extharness", "check", "-m", "layout", "--ext-artifacts"],
    "layout": ["extharness", "layout", "--ext-artifacts"],
}


@dataclass
class Runs:
    results: dict[tuple[str, str], subprocess.CompletedProcess[str]]
    site_packages_changed: list[str]
    checkout_changed: list[str]


@pytest.fixture(scope="module")
def runs(installed: Installed, elf_kit: ElfKit, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    folders = {
        "good": _release_folder(tmp_path_factory.mktemp("good") / "dist", elf_kit),
        "no-control": _release_folder(tmp_path_factory.mktemp("bad") / "dist", elf_kit, with_control=False),
    }
    site_before = _files(installed.site_packages)
    results = {}
    for command, argv in COMMANDS.items():
        for kind, folder in folders.items():
            cmd = [str(installed.bin / argv[0]), *argv[1:], str(folder)]
            results[command, kind] = _run(cmd, cwd=installed.workdir, env=installed.env)
    checkout_after = _files(ROOT, skip=CHECKOUT_SKIP)
    checkout = [p for p in _changed(installed.checkout_before, checkout_after) if not OUTER_RUN_WRITES.match(p)]
    return Runs(results, _changed(site_before, _files(installed.site_packages)), checkout)


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout + result.stderr)[-4000:]


def test_the_installed_package_takes_its_data_from_site_packages(installed: Installed) -> None:
    probe = "from extharness.runtime.resources import data_root, is_checkout; print(is_checkout(), data_root())"
    result = _run([str(installed.python), "-c", probe], installed.workdir, installed.env)
    assert result.returncode == 0, _output(result)
    assert result.stdout.split() == ["False", str(installed.site_packages / "extharness" / "_data")]
    assert (installed.site_packages / "extharness" / "_data" / "tests" / "layout").is_dir()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_good_release_folder_passes(runs: Runs, command: str) -> None:
    result = runs.results[command, "good"]
    assert result.returncode == 0, _output(result)
    assert " error: " not in result.stdout, _output(result)
    if command == "check":
        assert re.search(r"\d+ passed", result.stdout) and "failed" not in result.stdout, _output(result)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_release_folder_without_its_control_file_fails_naming_the_rule(runs: Runs, command: str) -> None:
    result = runs.results[command, "no-control"]
    assert result.returncode == 1, _output(result)
    assert re.search(
        rf"layout\.files\.control error: \[linux/amd64\] /share/extension/{SAMPLE}\.control", result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr, _output(result)


def test_the_runs_write_nothing_into_site_packages(runs: Runs) -> None:
    assert runs.site_packages_changed == [], "written into the installed package: " + ", ".join(
        runs.site_packages_changed[:20]
    )


def test_the_runs_write_nothing_into_the_checkout(runs: Runs) -> None:
    assert runs.checkout_changed == [], "written into the checkout: " + ", ".join(runs.checkout_changed[:20])


def test_without_the_extras_check_names_the_pip_install_of_each_missing_tier(installed: Installed) -> None:
    # every tier selected (no -m) on the base install: the sql and cnpg extras are missing
    result = _run(
        [str(installed.bin / "extharness"), "check", "--ext-image", "oci:x"], installed.workdir, installed.env
    )
    assert result.returncode == 2, _output(result)
    assert "pip install 'extharness[sql]'" in result.stderr and "pip install 'extharness[cnpg]'" in result.stderr
    assert "the layout tier" not in result.stderr, _output(result)  # the base install is the layout tier's
