"""The version graph of an extension's scripts, and how PostgreSQL walks it.

The oracle here is brute force: enumerate every path, keep the shortest, and pick the one
PostgreSQL's find_update_path() returns (its tie-break prefers, walking back from the
target, the predecessor whose name sorts first), and for CREATE EXTENSION
find_install_path() (the shortest chain from an installable version that passes through no
other installable version; on equal length, the start version that sorts last).
"""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from extharness.inspect.scripts import _LOAD_LIBDIR, ScriptSet, find_libdir_loads

EXT = "xt"
VERSIONS = ["1.0", "1.1", "1.2", "2.0", "2.0.1", "10", "a", "b"]


@st.composite
def script_sets(draw) -> ScriptSet:
    versions = draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=6, unique=True))
    edges = draw(
        st.lists(
            st.tuples(st.sampled_from(versions), st.sampled_from(versions)).filter(lambda e: e[0] != e[1]),
            max_size=12,
            unique=True,
        )
    )
    installable = draw(st.lists(st.sampled_from(versions), max_size=3, unique=True))
    names = [f"{EXT}--{v}.sql" for v in installable] + [f"{EXT}--{a}--{b}.sql" for a, b in edges]
    return ScriptSet.from_names(EXT, draw(st.permutations(names)))


def all_paths(edges: set[tuple[str, str]], start: str, target: str, blocked: set[str] = frozenset()):
    """Every simple path start -> target whose inner and last nodes avoid ``blocked``."""
    nodes = sorted({v for e in edges for v in e} | {start, target})
    out = []
    for length in range(1, len(nodes)):
        for middle in itertools.permutations([n for n in nodes if n not in (start, target)], length - 1):
            path = [start, *middle, target]
            if any(n in blocked for n in path[1:]):
                continue
            if all((a, b) in edges for a, b in zip(path, path[1:])):
                out.append(path)
    return out


def postgres_update_path(edges, start, target, blocked=frozenset()):
    if start == target:
        return [start]
    paths = all_paths(set(edges), start, target, set(blocked))
    if not paths:
        return None
    shortest = min(len(p) for p in paths)
    # Among the shortest, the one whose nodes read from the target backwards sort first.
    return min((p for p in paths if len(p) == shortest), key=lambda p: list(reversed(p)))


def postgres_install_path(scripts: ScriptSet, target: str):
    if target in scripts.install:
        return [target]
    best = None
    for start in scripts.install:
        path = postgres_update_path(scripts.updates, start, target, blocked=set(scripts.install))
        if path is None:
            continue
        if best is None or len(path) < len(best) or (len(path) == len(best) and start > best[0]):
            best = path
    return best


@given(script_sets(), st.sampled_from(VERSIONS), st.sampled_from(VERSIONS))
def test_update_path_is_postgres_shortest_path(scripts: ScriptSet, start: str, target: str) -> None:
    path = scripts.update_path(start, target)
    expected = postgres_update_path(scripts.updates, start, target)
    if start != target and (start not in scripts.versions or target not in scripts.versions):
        assert path is None
        return
    assert path == expected
    if path is not None:
        assert path[0] == start and path[-1] == target
        assert all((a, b) in scripts.updates for a, b in zip(path, path[1:]))


@given(script_sets(), st.sampled_from(VERSIONS))
def test_install_path_is_what_create_extension_runs(scripts: ScriptSet, target: str) -> None:
    path = scripts.install_path(target)
    assert path == postgres_install_path(scripts, target)
    if path is not None:
        assert path[0] in scripts.install and path[-1] == target
        assert not any(v in scripts.install for v in path[1:])  # no detour through another install script


@given(script_sets())
def test_update_pairs_lists_every_reachable_pair(scripts: ScriptSet) -> None:
    pairs = {(a, b): p for a, b, p in scripts.update_pairs()}
    for a in scripts.versions:
        for b in scripts.versions:
            if a != b:
                assert pairs.get((a, b)) == postgres_update_path(scripts.updates, a, b)


def test_tie_breaks_like_postgres() -> None:
    # Two shortest routes 1.0 -> x -> 2.0: PostgreSQL takes the predecessor that sorts first.
    scripts = ScriptSet.from_names(
        EXT, [f"{EXT}--1.0--b.sql", f"{EXT}--1.0--a.sql", f"{EXT}--b--2.0.sql", f"{EXT}--a--2.0.sql", f"{EXT}--1.0.sql"]
    )
    assert scripts.update_path("1.0", "2.0") == ["1.0", "a", "2.0"]
    # Equal-length install chains from 1.0 and 1.1: PostgreSQL starts from the later name.
    scripts = ScriptSet.from_names(
        EXT, [f"{EXT}--1.0.sql", f"{EXT}--1.1.sql", f"{EXT}--1.0--2.0.sql", f"{EXT}--1.1--2.0.sql"]
    )
    assert scripts.install_path("2.0") == ["1.1", "2.0"]


def test_deeper_tie_break_follows_the_predecessor_rule() -> None:
    # Level-2 nodes discovered in the order z (from a) then c (from b); the target's
    # predecessor must still be c, the name that sorts first.
    names = [
        f"{EXT}--s--a.sql",
        f"{EXT}--s--b.sql",
        f"{EXT}--a--z.sql",
        f"{EXT}--b--c.sql",
        f"{EXT}--z--t.sql",
        f"{EXT}--c--t.sql",
    ]
    assert ScriptSet.from_names(EXT, names).update_path("s", "t") == ["s", "b", "c", "t"]


def test_script_names_postgres_ignores() -> None:
    scripts = ScriptSet.from_names(
        EXT,
        [
            f"{EXT}--1.0--1.1--1.2.sql",
            f"{EXT}--1.0.sql",
            "other--1.0.sql",
            f"{EXT}--1.0.control",
            f"{EXT}.control",
            f"{EXT}--1.1.sql.bak",
        ],
    )
    assert scripts.install == {"1.0": f"{EXT}--1.0.sql"}
    assert scripts.updates == {}
    assert scripts.ignored == [f"{EXT}--1.0--1.1--1.2.sql"]


# -- LOAD '$libdir/...' ----------------------------------------------------------------------
LIBDIR_LOADS = ["LOAD '$libdir/xt';", "load '$libdir/xt'", "LOAD  E'$libdir/xt';", "  Load\t'$libdir/plugins/xt';"]
HARMLESS = [
    "LOAD 'xt';",
    "SELECT 1;",
    "-- LOAD '$libdir/xt';",
    "CREATE FUNCTION f() RETURNS int AS 'MODULE_PATHNAME' LANGUAGE C;",
    "SELECT '$libdir/xt';",
    "SELECT 'LOAD' || '$libdir';",
    "  -- note: never LOAD '$libdir/x'",
    "",
]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=20))
@example([(True, 0)])
def test_find_libdir_loads_reports_exactly_the_offending_lines(lines: list[tuple[bool, int]]) -> None:
    text_lines = [LIBDIR_LOADS[n % len(LIBDIR_LOADS)] if bad else HARMLESS[n % len(HARMLESS)] for bad, n in lines]
    found = find_libdir_loads("\n".join(text_lines))
    assert [number for number, _ in found] == [i + 1 for i, (bad, _) in enumerate(lines) if bad]
    for _number, statement in found:
        assert "$libdir/" in statement and statement.upper().startswith("LOAD")


def test_find_libdir_loads_keeps_code_before_a_trailing_comment() -> None:
    assert find_libdir_loads("SELECT 1; LOAD '$libdir/xt'; -- why\n") == [(1, "LOAD '$libdir/xt'")]


_PIECES = ["LOAD", "load", " ", "\n", "\t", "'$libdir/x'", '"$libdir/y"', "E'$libdir/z'", "--", "'", "SELECT 1;", "x"]


@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_find_libdir_loads_whole_text_shortcut_changes_nothing(pieces: list[str]) -> None:
    # find_libdir_loads returns early when $libdir is nowhere in the whole text; the
    # line-by-line answer must be the same either way (LOAD and its argument split over lines too)
    sql = "".join(pieces)
    by_line = []
    for number, line in enumerate(sql.splitlines(), start=1):
        match = _LOAD_LIBDIR.search(line.split("--", 1)[0])
        if match:
            by_line.append((number, match.group(0)))
    assert find_libdir_loads(sql) == by_line
