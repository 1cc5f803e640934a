"""Extension profiles: every built-in one loads, and all their SQL is valid PostgreSQL."""

from __future__ import annotations

import pglast
import pytest

from extharness.errors import HarnessError
from extharness.postgres.profiles import builtin_names, load_profile, parse_profile, profile_for_extension

BUILTIN = builtin_names()


def test_builtin_profiles_exist():
    assert {"pg_ticker", "pg_trickle"} <= set(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_profile_loads(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.extension and profile.cnpg_name
    assert all("/" not in lib for lib in profile.preload)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_statement_parses_with_postgres_parser(name):
    profile = load_profile(name)
    assert profile.statements(), f"{name}: a profile without SQL checks nothing"
    for where, text in profile.statements():
        try:
            parsed = pglast.parse_sql(text)
        except pglast.parser.ParseError as exc:
            pytest.fail(f"{name} {where}: {exc}: {text!r}")
        assert parsed, f"{name} {where}: no statement in {text!r}"


def test_pg_trickle_facts_from_its_sources():
    profile = load_profile("pg_trickle")
    assert profile.extension == "pg_trickle" and profile.cnpg_name == "pg-trickle"
    assert profile.preload == ["pg_trickle"]
    assert profile.background_workers == ["pg_trickle launcher"]
    functions = set()
    for _where, text in profile.statements():
        for node in pglast.parse_sql(text):
            for found in _function_names(node.stmt):
                functions.add(found)
    assert {
        "pgtrickle.create_stream_table",
        "pgtrickle.refresh_stream_table",
        "pgtrickle.drop_stream_table",
    } <= functions


def _function_names(node) -> list[str]:
    from pglast import ast
    from pglast.visitors import Visitor

    names: list[str] = []

    class Calls(Visitor):
        def visit_FuncCall(self, _ancestors, call: ast.FuncCall):
            names.append(".".join(n.sval for n in call.funcname))

    Calls()(node)
    return names


def test_profile_for_extension():
    assert profile_for_extension("pg_ticker").name == "pg_ticker"
    assert profile_for_extension("no_such_extension") is None


def test_path_to_a_profile_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extension = "mine"\npreload = ["mine"]\n[[smoke]]\nsql = "SELECT 1"\nexpect = [[1]]\n')
    profile = load_profile(str(path))
    assert (profile.name, profile.cnpg_name, profile.smoke[0].expect) == ("mine", "mine", [[1]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("extension = ", "not valid TOML"),
        ('preload = ["x"]', "missing key 'extension'"),
        ('extension = "x"\nprelaod = ["x"]', "unknown key(s) prelaod"),
        ('extension = "x"\npreload = ["$libdir/x"]', "bare library names"),
        ('extension = "x"\ncnpg_name = "Bad_Name-"', "not a valid CloudNativePG extension name"),
        ('extension = "x"\n[settings]\nshared_preload_libraries = "x"', "put shared_preload_libraries in 'preload'"),
        ('extension = "x"\n[[smoke]]\nexpect = [[1]]', "needs sql"),
        ('extension = "x"\n[[smoke]]\nsql = "SELECT 1"\nexpect = [1]', "list of rows"),
        ('extension = "x"\n[data]\nexpect = [[1]]', "data.expect without data.check"),
    ],
)
def test_bad_profiles_are_explained(text, message):
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        parse_profile(text, source="test.toml")


def test_unknown_builtin_name():
    with pytest.raises(HarnessError, match="no built-in profile of that name"):
        load_profile("nope")
