"""Build step only (the project is described in pyproject.toml): ship the repository's data files.

An installed wheel has no checkout next to it, yet ``extharness check``, ``extharness layout``
and ``extharness-gate`` need the tier tests, the cnpg/ recipes, the samples' sources and the
images/ recipes. They stay where they are in the repository (users and the docs name them
there); the build copies them, in the same layout, into ``extharness/_data`` of the wheel, where
``extharness.runtime.resources`` finds them. An editable install uses the checkout itself.
MANIFEST.in puts the same files in the sdist, so a wheel built from it has them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

#: Repository paths copied into ``extharness/_data`` (folders whole, less build products).
SHIPPED = (
    "conftest.py",  # the root conftest: the tier marks (`-m layout`) and the collection shortcuts
    "cnpg",
    "images",
    "sample/pg_ticker",
    "sample/pg_ticker_rs",
    "tests/layout",
    "tests/sql",
    "tests/cnpg",
    "tests/unit/recorded",  # objects recorded from a real operator, read by tests/cnpg
)
SKIPPED_DIRS = {"__pycache__", "target", ".pytest_cache", ".hypothesis", ".ruff_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo", ".o", ".so", ".bc"}
PYTEST_SECTION = "[tool.pytest.ini_options]"


def pytest_config(pyproject: str) -> str:
    """The ``[tool.pytest.ini_options]`` table of ``pyproject``, verbatim: the tiers' pytest ini."""
    lines = pyproject.splitlines()
    start = lines.index(PYTEST_SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    body = "\n".join(lines[start:end]).rstrip()
    return f"# The pytest settings of the extharness repository, for its shipped tier tests.\n{body}\n"


def copy_data(root: Path, dest: Path) -> list[Path]:
    """Copy :data:`SHIPPED` from ``root`` into ``dest`` (replacing it); the files written."""
    if dest.exists():
        shutil.rmtree(dest)
    written: list[Path] = []
    for relative in SHIPPED:
        source = root / relative
        if source.is_file():
            files = [source]
        elif source.is_dir():
            files = [
                p
                for p in sorted(source.rglob("*"))
                if p.is_file()
                and p.suffix not in SKIPPED_SUFFIXES
                and not SKIPPED_DIRS.intersection(p.relative_to(root).parts)
            ]
        else:
            raise FileNotFoundError(f"{source}: listed in setup.py's SHIPPED but missing")
        for path in files:
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            written.append(target)
    config = dest / "pyproject.toml"
    config.write_text(pytest_config((root / "pyproject.toml").read_text()))
    written.append(config)
    return written


class build_py_with_data(build_py):  # noqa: N801  (setuptools' command naming)
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout: resources finds the files there
        self._data_files = copy_data(ROOT, Path(self.build_lib) / "extharness" / "_data")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *(str(p) for p in getattr(self, "_data_files", []))]


setup(cmdclass={"build_py": build_py_with_data})
