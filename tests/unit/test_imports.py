"""The package's import graph: no circle, and the runtime floor stands on nothing above it.

The graph counts every import, also those inside functions: a circle hidden in a function-level
import still ties the modules together and breaks as soon as someone moves the import up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import extharness

PACKAGE = Path(extharness.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("extharness", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:  # `from extharness.postgres import backend_summary` names a module
                named.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in named if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        trail.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return [*trail[trail.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        trail.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_checker_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_runtime_floor_imports_nothing_above_it() -> None:
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("extharness.runtime"):
            above = sorted(d for d in deps if not d.startswith("extharness.runtime") and d != "extharness.errors")
            assert not above, f"{name} imports {', '.join(above)}: the floor may use only extharness.errors"


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(import_graph())
    program = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", program, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


#: Container drivers the harness no longer has: the engine CLI is the only one (postgres/containers.py).
GONE_DRIVERS = ("testcontainers", "docker")


def test_no_module_imports_a_docker_api_driver() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                named = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                named = [node.module or ""]
            else:
                continue
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno} {n}" for n in named
                      if n.split(".")[0] in GONE_DRIVERS]  # fmt: skip
    assert not found, f"imports of a Docker API driver: {found}"


def test_importing_every_module_loads_no_docker_api_driver() -> None:
    names = sorted(import_graph())
    program = (
        "import importlib, sys\n"
        "for name in sys.argv[2:]:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1].split(','))))\n"
    )
    result = subprocess.run([sys.executable, "-c", program, ",".join(GONE_DRIVERS), *names], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [], f"loaded by importing extharness: {result.stdout}"
