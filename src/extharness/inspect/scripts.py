"""An extension's SQL scripts and the version graph PostgreSQL builds from their names.

``<ext>--<ver>.sql`` installs a version; ``<ext>--<from>--<to>.sql`` updates one. Like
PostgreSQL (get_ext_ver_list / find_update_path / find_install_path), the shortest chain of
update scripts is the one used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class ScriptSet:
    extension: str
    install: dict[str, str] = field(default_factory=dict)  # version -> file name
    updates: dict[tuple[str, str], str] = field(default_factory=dict)  # (from, to) -> file name
    ignored: list[str] = field(default_factory=list)  # names PostgreSQL would not understand

    @classmethod
    def from_names(cls, extension: str, names: list[str]) -> ScriptSet:
        result = cls(extension)
        prefix = f"{extension}--"
        for name in sorted(names):
            if not (name.startswith(prefix) and name.endswith(".sql")):
                continue
            rest = name[len(prefix) : -len(".sql")]
            if "--" in rest:
                start, _, end = rest.partition("--")
                if "--" in end or not start or not end:
                    result.ignored.append(name)
                    continue
                result.updates[(start, end)] = name
            elif rest:
                result.install[rest] = name
            else:
                result.ignored.append(name)
        return result

    @property
    def versions(self) -> set[str]:
        found = set(self.install)
        for start, end in self.updates:
            found.update((start, end))
        return found

    def update_path(self, start: str, target: str, avoid: frozenset[str] = frozenset()) -> list[str] | None:
        """The chain of versions ``start`` .. ``target`` PostgreSQL's find_update_path() picks, or None.

        A shortest chain; on ties, walking back from the target, the predecessor whose name
        sorts first (strcmp), as PostgreSQL breaks them. ``avoid``: versions the chain may
        not enter (find_install_path() avoids other installable versions).
        """
        if start == target:
            return [start]
        successors: dict[str, list[str]] = {}
        for a, b in self.updates:
            successors.setdefault(a, []).append(b)
        distance = {start: 0}
        frontier = [start]
        while frontier and target not in distance:
            reached = []
            for current in frontier:
                for nxt in successors.get(current, []):
                    if nxt not in distance and nxt not in avoid:
                        distance[nxt] = distance[current] + 1
                        reached.append(nxt)
            frontier = reached
        if target not in distance:
            return None
        path = [target]
        while path[-1] != start:
            here = path[-1]
            path.append(min(a for a, b in self.updates if b == here and distance.get(a) == distance[here] - 1))
        return list(reversed(path))

    def install_path(self, target: str) -> list[str] | None:
        """How ``CREATE EXTENSION ... VERSION target`` gets there (find_install_path()), or None.

        Its install script if there is one; else the shortest update chain from a version with
        an install script that passes through no other such version; on equal length, the
        start version whose name sorts last.
        """
        if target in self.install:
            return [target]
        best: list[str] | None = None
        installable = frozenset(self.install)
        for start in sorted(self.install):
            path = self.update_path(start, target, avoid=installable)
            if path is not None and (best is None or len(path) <= len(best)):
                best = path
        return best

    def update_pairs(self) -> list[tuple[str, str, list[str]]]:
        """Every (source, target, path) PostgreSQL's pg_extension_update_paths() would list."""
        pairs = []
        for start in sorted(self.versions):
            for target in sorted(self.versions):
                if start != target:
                    path = self.update_path(start, target)
                    if path is not None:
                        pairs.append((start, target, path))
        return pairs


# LOAD '$libdir/...' (or "$libdir") in a script fails for a library that is not in the operand
# image's $libdir: LOAD does not strip the $libdir/ prefix the way function calls do.
_LOAD_LIBDIR = re.compile(r"""\bLOAD\s+(?:E?'\$libdir/[^']*'|"\$libdir/[^"]*")""", re.IGNORECASE)
#: A quick first look: a search for the literal is ~5x faster than the line loop on a large script
#: (~20 ms per 13 MB); the whole pattern over the whole text would be slower than the loop.
_LIBDIR = re.compile(r"\$libdir", re.IGNORECASE)


def find_libdir_loads(sql: str) -> list[tuple[int, str]]:
    """Lines (1-based) with ``LOAD '$libdir/...'``, outside ``--`` comments."""
    if not _LIBDIR.search(sql):  # every match holds $libdir: none in the text, none in any line
        return []
    found = []
    for number, line in enumerate(sql.splitlines(), start=1):
        code = line.split("--", 1)[0]
        match = _LOAD_LIBDIR.search(code)
        if match:
            found.append((number, match.group(0)))
    return found
