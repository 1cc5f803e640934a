"""The control-file parser follows PostgreSQL 18 (guc-file.l, extension.c, bool.c, varlena.c).

Generated control files are written the many ways PostgreSQL accepts them (quoted or bare
values, ``=`` or not, comments, CRLF, ``''`` and backslash escapes) and must parse back to
the values they were written from. Errors carry PostgreSQL's wording. The expected values of
the fixed cases were checked against a PostgreSQL 18 server (pg_available_extension_versions
with extension_control_path pointing at the crafted file).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from extharness.inspect.control import (
    KNOWN_PARAMETERS,
    ControlFile,
    ControlFileError,
    parse_bool,
    parse_control,
    split_identifier_list,
)

NAME = "xt"
FILENAME = "xt.control"


# -- oracles: small transcriptions of the C code, independent of the harness's ---------------
def _strncasecmp_eq(value: str, word: str, n: int) -> bool:
    """pg_strncasecmp(value, word, n) == 0 over C strings (ASCII case folding, NUL ends them)."""
    for i in range(n):
        a = value[i] if i < len(value) else "\0"
        b = word[i] if i < len(word) else "\0"
        a, b = (c.lower() if "A" <= c <= "Z" else c for c in (a, b))
        if a != b:
            return False
        if a == "\0":
            return True
    return True


def pg_parse_bool(value: str) -> bool | None:
    """bool.c parse_bool(): parse_bool_with_len(value, strlen(value))."""
    n = len(value)
    first = value[:1]
    for letters, word, result in (
        (("t", "T"), "true", True),
        (("f", "F"), "false", False),
        (("y", "Y"), "yes", True),
        (("n", "N"), "no", False),
    ):
        if first in letters:
            return result if _strncasecmp_eq(value, word, n) else None
    if first in ("o", "O"):
        if _strncasecmp_eq(value, "on", max(n, 2)):
            return True
        if _strncasecmp_eq(value, "off", max(n, 2)):
            return False
        return None
    if first in ("1", "0"):
        return (first == "1") if n == 1 else None
    return None


SPACE = " \t\n\r\f\v"


def pg_split_identifiers(value: str) -> list[str] | None:
    """varlena.c SplitIdentifierString(value, ','), restricted to ASCII names for simplicity."""
    out: list[str] = []
    rest = value.lstrip(SPACE)
    if not rest:
        return out
    while True:
        if rest.startswith('"'):
            i, name = 1, ""
            while True:
                j = rest.find('"', i)
                if j < 0:
                    return None
                name += rest[i:j]
                if rest[j + 1 : j + 2] == '"':
                    name += '"'
                    i = j + 2
                    continue
                rest = rest[j + 1 :]
                break
        else:
            j = 0
            while j < len(rest) and rest[j] != "," and rest[j] not in SPACE:
                j += 1
            if j == 0:
                return None
            name, rest = rest[:j].lower(), rest[j:]
        out.append(name[:63])
        rest = rest.lstrip(SPACE)
        if not rest:
            return out
        if rest[0] != ",":
            return None
        rest = rest[1:].lstrip(SPACE)
        if not rest:
            return None  # a trailing comma leaves an empty unquoted name


# -- generating control files ----------------------------------------------------------
LETTERS = string.ascii_letters + "_"
bare_word = st.text(LETTERS, min_size=1, max_size=1).flatmap(
    lambda first: st.text(LETTERS + string.digits + "-._:/", max_size=12).map(lambda rest: first + rest)
)
# "a.b" lexes as a QUALIFIED_ID, which PostgreSQL refuses as a value: such words must be quoted.
QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z_0-9]*\.[A-Za-z_][A-Za-z_0-9]*")
bare_number = st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3})?\Z")
# Any text PostgreSQL can hold in a value: no NUL; everything else, quoted.
any_value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@st.composite
def quoted(draw, value: str) -> str:
    """``value`` as a GUC string literal, choosing among the equivalent escapes."""
    out = []
    for ch in value:
        if ch == "'":
            out.append(draw(st.sampled_from(["''", "\\'"])))
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch in "\b\f\r\t":
            escape = {"\b": "\\b", "\f": "\\f", "\r": "\\r", "\t": "\\t"}[ch]
            out.append(draw(st.sampled_from([escape, ch])) if ch != "\r" else escape)
        elif ch.isascii() and ch.isalpha() and draw(st.booleans()) and ch not in "bfnrt":
            out.append("\\" + ch)  # a backslash before an ordinary letter just yields the letter
        elif 0x20 <= ord(ch) < 0x7F and draw(st.integers(0, 9)) == 0:
            out.append(f"\\{ord(ch):03o}")  # octal escape
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


@st.composite
def written_string(draw) -> tuple[str, str]:
    """(literal as written, value PostgreSQL reads)."""
    kind = draw(st.sampled_from(["any", "bare", "number"]))
    if kind == "bare":
        value = draw(bare_word)
        bare_ok = not QUALIFIED.fullmatch(value)
        return (value if bare_ok and draw(st.booleans()) else draw(quoted(value))), value
    if kind == "number":
        value = draw(bare_number)
        return (value if draw(st.booleans()) else draw(quoted(value))), value
    value = draw(any_value)
    return draw(quoted(value)), value


BOOL_WORDS = ["true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n", "tr", "fal", "of", "ye"]


@st.composite
def written_bool(draw) -> tuple[str, bool]:
    word = "".join(c.upper() if draw(st.booleans()) else c for c in draw(st.sampled_from(BOOL_WORDS)))
    expected = pg_parse_bool(word)
    assert expected is not None, word
    return (word if draw(st.booleans()) else draw(quoted(word))), expected


ident = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_$]{0,10}\Z")


@st.composite
def written_names(draw) -> tuple[str, list[str]]:
    names = draw(
        st.lists(
            st.one_of(
                ident.map(lambda n: (n, n.lower())),
                st.text(string.printable.strip() + " ", min_size=1, max_size=8).map(
                    lambda n: ('"' + n.replace('"', '""') + '"', n)
                ),
            ),
            max_size=4,
        )
    )
    seps = [draw(st.sampled_from([",", ", ", " ,", "\t,  "])) for _ in names]
    text = "".join(w + (seps[i] if i < len(names) - 1 else "") for i, (w, _) in enumerate(names))
    text = draw(st.sampled_from(["", " "])) + text + draw(st.sampled_from(["", " \t"]))
    return draw(quoted(text)), [n for _, n in names]


STRING_PARAMS = ["directory", "default_version", "module_pathname", "comment", "schema"]


@st.composite
def control_files(draw) -> tuple[str, dict]:
    """A valid primary control file and the values PostgreSQL reads from it."""
    expected: dict = {}
    lines: list[str] = []
    params = draw(
        st.lists(
            st.sampled_from(
                STRING_PARAMS + ["relocatable", "superuser", "trusted", "encoding", "requires", "no_relocate"]
            ),
            unique=True,
        )
    )
    for name in params:
        if name in STRING_PARAMS:
            literal, value = draw(written_string())
        elif name == "encoding":
            value = draw(st.sampled_from(["UTF8", "utf-8", "LATIN1", "SQL_ASCII", "Win-1252", "euc_jp"]))
            literal = draw(quoted(value))
        elif name in ("requires", "no_relocate"):
            literal, value = draw(written_names())
        else:
            literal, value = draw(written_bool())
        expected[name] = value
        sep = draw(st.sampled_from([" = ", "=", " ", "\t=\t", "  =  "]))
        trail = draw(st.sampled_from(["", "  ", "\t# a comment", " # trailing 'quoted' # text"]))
        lines.append(f"{name}{sep}{literal}{trail}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(["", "# comment line", "   ", "#", "\t# indented comment"])))
    if expected.get("relocatable") and "schema" in expected:
        del expected["schema"]
        lines = [line for line in lines if not line.startswith("schema")]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    return text, expected


DEFAULTS = ControlFile(name=NAME)


# -- properties -----------------------------------------------------------------------------
@given(control_files())
def test_generated_control_files_round_trip(case: tuple[str, dict]) -> None:
    text, expected = case
    control = parse_control(text, NAME)
    for name in KNOWN_PARAMETERS:
        assert getattr(control, name) == expected.get(name, getattr(DEFAULTS, name)), name


@given(control_files())
def test_bytes_parse_like_text(case: tuple[str, dict]) -> None:
    text, _ = case
    assert parse_control(text.encode("utf-8"), NAME) == parse_control(text, NAME)


@given(any_value)
@example("it's")
@example("back\\slash")
@example("''")
@example("\\'")
@example("tab\there")
def test_any_string_survives_quoting(value: str) -> None:
    assert parse_control(f"comment = {quote_simple(value)}\n", NAME).comment == value


def quote_simple(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n") + "'"


@given(st.text(alphabet="tTrRuUeEfFaAlLsSyYnNoO01 xé", max_size=6))
@example(" true")
@example("true ")
@example("o")
@example("O")
@example("of")
@example("onx")
@example("")
@example("TRUE")
@example("00")
def test_booleans_match_postgres(word: str) -> None:
    expected = pg_parse_bool(word)
    assert parse_bool(word) == expected
    literal = quote_simple(word)
    if expected is None:
        with pytest.raises(ControlFileError, match=r'^parameter "trusted" requires a Boolean value$'):
            parse_control(f"trusted = {literal}\n", NAME)
    else:
        assert parse_control(f"trusted = {literal}\n", NAME).trusted is expected


@given(st.text(alphabet=string.ascii_letters[:6] + ' ,"\t\v_', max_size=14))
@example('""')
@example('a"b')
@example("a,")
@example(",a")
@example("a ,b")
@example("")
@example("A, B")
def test_requires_lists_match_postgres(value: str) -> None:
    expected = pg_split_identifiers(value)
    assert split_identifier_list(value) == expected
    if expected is None:
        with pytest.raises(ControlFileError, match='^parameter "requires" must be a list of extension names$'):
            parse_control(f"requires = {quote_simple(value)}\n", NAME)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b)))
def test_parser_raises_only_control_file_errors(text: str | bytes) -> None:
    try:
        result = parse_control(text, NAME)
    except ControlFileError as exc:
        assert str(exc)
    else:
        assert isinstance(result, ControlFile)


@given(
    st.lists(
        st.sampled_from(
            [
                "a = 1",
                "b",
                "'x'",
                "= =",
                "c = 'unterminated",
                "# only a comment",
                "",
                "d = foo.bar",
                "e=1e5",
                "f = 0x1F",
                "g = -.5",
                "h.i = j",
                "k = $x",
            ]
        ),
        max_size=6,
    )
)
def test_secondary_and_error_paths_never_crash(lines: list[str]) -> None:
    text = "\n".join(lines)
    for version in (None, "1.0"):
        try:
            parse_control(text, NAME, version=version, base=ControlFile(name=NAME) if version else None)
        except ControlFileError:
            pass


@given(st.from_regex(r"\A[a-z][a-z0-9_]{0,12}(\.[a-z][a-z0-9_]{0,8})?\Z"))
def test_unknown_parameter_named_with_file(name: str) -> None:
    assume(name not in KNOWN_PARAMETERS)
    with pytest.raises(ControlFileError) as raised:
        parse_control(f"default_version = '1.0'\n{name} = 'x'\n", NAME)
    assert str(raised.value) == f'unrecognized parameter "{name}" in file "{FILENAME}"'


# -- PostgreSQL's wording on fixed cases (checked against a PostgreSQL 18 server) -----------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema = foo.bar\n", 'syntax error in file "xt.control" line 1, near token "foo.bar"'),
        ("default_version = 1e5\n", 'syntax error in file "xt.control" line 1, near token "5"'),
        ("comment = 1.5e3abc\n", 'syntax error in file "xt.control" line 1, near token "abc"'),
        ("foo-bar = 1\n", 'syntax error in file "xt.control" line 1, near token "foo-bar"'),
        ("comment = 'open\n", 'syntax error in file "xt.control" line 1, near token "\'"'),
        ("# c\n\ncomment\n", 'syntax error in file "xt.control" line 3, near end of line'),
        ("comment", 'syntax error in file "xt.control" line 0, near end of line'),
        ("comment = a b\n", 'syntax error in file "xt.control" line 1, near token "b"'),
        ("'x' $\n", 'syntax error in file "xt.control" line 1, near token "\'x\'"'),
        ("relocatable = ' true'\n", 'parameter "relocatable" requires a Boolean value'),
        ("superuser = o\n", 'parameter "superuser" requires a Boolean value'),
        ("encoding = bogus\n", '"bogus" is not a valid encoding name'),
        ("encoding = SJIS\n", '"SJIS" is not a valid encoding name'),
        ("requires = 'a,'\n", 'parameter "requires" must be a list of extension names'),
        ("no_relocate = '\"open'\n", 'parameter "no_relocate" must be a list of extension names'),
        ("relocatable = true\nschema = s\n", 'parameter "schema" cannot be specified when "relocatable" is true'),
        ("schema = s\nrelocatable = yes\n", 'parameter "schema" cannot be specified when "relocatable" is true'),
        ("comment = x\ny = 1\n", 'unrecognized parameter "y" in file "xt.control"'),
    ],
)
def test_errors_use_postgres_wording(text: str, message: str) -> None:
    with pytest.raises(ControlFileError) as raised:
        parse_control(text, NAME)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("comment = a.b.c\n", "comment", "a.b.c"),
        ("default_version = 0x1F\n", "default_version", "0x1F"),
        ("comment = .\n", "comment", "."),
        ("default_version = 1.0\n", "default_version", "1.0"),
        ("default_version '2.0'\n", "default_version", "2.0"),
        ("comment = 'it''s \\'quoted\\''\n", "comment", "it's 'quoted'"),
        ("comment = 'a\\101\\tb'\n", "comment", "aA\tb"),
        ("comment = 'cut\\0here'\n", "comment", "cut"),
        ("comment = 'x'\ncomment = 'y'\n", "comment", "y"),
        ("requires = '\"\"'\n", "requires", [""]),
        ("requires = 'a\"b, C'\n", "requires", ['a"b', "c"]),
        ("requires = ' Plpgsql ,  \"Hstore\" '\n", "requires", ["plpgsql", "Hstore"]),
        ("encoding = 'Win-1252'\n", "encoding", "Win-1252"),
        ("relocatable = tRU\n", "relocatable", True),
        ("relocatable = of\n", "relocatable", False),
        ("comment = café\n", "comment", "café"),
        ("comment = 中文\n", "comment", "中文"),
    ],
)
def test_values_postgres_accepts(text: str, field: str, value: object) -> None:
    assert getattr(parse_control(text, NAME), field) == value


@pytest.mark.parametrize("param", ["directory", "default_version"])
def test_secondary_file_cannot_set_primary_only_parameters(param: str) -> None:
    base = parse_control("default_version = '1.0'\nmodule_pathname = 'xt'\n", NAME)
    with pytest.raises(ControlFileError) as raised:
        parse_control(f"{param} = 'x'\n", NAME, version="1.1", base=base)
    assert str(raised.value) == f'parameter "{param}" cannot be set in a secondary extension control file'


def test_secondary_file_overrides_the_primary() -> None:
    base = parse_control("default_version = '1.0'\nsuperuser = true\nschema = a\n", NAME)
    secondary = parse_control("superuser = false\nschema = b\n", NAME, version="1.1", base=base)
    assert (secondary.default_version, secondary.superuser, secondary.schema) == ("1.0", False, "b")
    assert base.superuser is True  # the primary is not changed


def test_secondary_file_relocatable_with_inherited_schema_is_an_error() -> None:
    base = parse_control("schema = s\n", NAME)
    with pytest.raises(ControlFileError, match='"schema" cannot be specified when "relocatable" is true'):
        parse_control("relocatable = true\n", NAME, version="1.1", base=base)


def test_nul_byte_is_rejected() -> None:
    with pytest.raises(ControlFileError):
        parse_control(b"comment = 'a'\x00\n", NAME)


def test_line_numbers_are_recorded() -> None:
    control = parse_control("# header\n\ndefault_version = '1.0'\n  comment = c # note\n", NAME)
    assert control.lines == {"default_version": 3, "comment": 4}
