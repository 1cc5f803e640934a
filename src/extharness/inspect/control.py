"""PostgreSQL extension control files, parsed by PostgreSQL's own rules.

Mirrors ``parse_extension_control_file()`` in src/backend/commands/extension.c and the
configuration-file lexer it uses (guc-file.l): ``name [=] value`` lines, ``#`` comments,
quoted strings with ``''`` and backslash escapes, unquoted words, the parameter list
PostgreSQL 18 accepts, and the same error wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KNOWN_PARAMETERS = (
    "directory",
    "default_version",
    "module_pathname",
    "comment",
    "schema",
    "relocatable",
    "superuser",
    "trusted",
    "encoding",
    "requires",
    "no_relocate",
)
PRIMARY_ONLY = ("directory", "default_version")

# guc-file.l tokens, in its rule order. flex takes the longest match and breaks ties by that
# order, so "foo.bar" is a QUALIFIED_ID (not a valid value) and "a.b.c" an UNQUOTED_STRING.
# LETTER covers the bytes 0x80-0xff: here, any character outside ASCII. Written as "not one of the
# other ASCII characters": the same set as [A-Za-z_\u0080-\U0010ffff], whose range takes re ~50 ms
# to compile in every process (a third of `extharness layout`'s start-up).
_LETTER = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"  # A-Z a-z _ and everything above ASCII
_LETTER_OR_DIGIT = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # the same and 0-9
_ID = f"{_LETTER}{_LETTER_OR_DIGIT}*"
_RULES = [
    ("id", re.compile(_ID)),
    ("qualified", re.compile(rf"{_ID}\.{_ID}")),
    ("string", re.compile(r"'(?:[^'\\\n]|\\.|'')*'")),
    ("unquoted", re.compile(rf"{_LETTER}(?:{_LETTER_OR_DIGIT}|[-._:/])*")),
    ("integer", re.compile(r"[-+]?(?:0x[0-9a-fA-F]+|[0-9]+)[a-zA-Z]*")),
    ("real", re.compile(r"[-+]?[0-9]*\.[0-9]*(?:[Ee][-+]?[0-9]+)?")),
    ("equals", re.compile("=")),
]
_SKIP = re.compile(r"[ \t\r]+|#[^\n]*")
_VALUE_KINDS = ("id", "string", "integer", "real", "unquoted")


def _next_token(text: str, pos: int) -> tuple[str, str, int]:
    """(kind, text, end) of the token at ``pos`` after blanks and comments; ("eof", "", pos) at the end."""
    while (skip := _SKIP.match(text, pos)) is not None and skip.end() > pos:
        pos = skip.end()
    if pos >= len(text):
        return "eof", "", pos
    if text[pos] == "\n":
        return "eol", "\n", pos + 1
    best_kind, best_end = "error", pos + 1  # flex's catch-all "." rule
    for kind, pattern in _RULES:
        match = pattern.match(text, pos)
        if match is not None and match.end() > pos and (best_kind == "error" or match.end() > best_end):
            best_kind, best_end = kind, match.end()
    return best_kind, text[pos:best_end], best_end


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


class ControlFileError(ValueError):
    """The control file would make PostgreSQL raise an error; the text is PostgreSQL's."""


def deescape(quoted: str) -> str:
    """DeescapeQuotedString(): strip quotes, undo ``''`` and backslash escapes.

    An escaped NUL (``\\0``) ends the value, as it ends the C string PostgreSQL builds.
    """
    body = quoted[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
            if nxt in "01234567":
                digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
                assert digits
                out.append(chr(int(digits.group(0), 8) & 0xFF))
                i += 1 + len(digits.group(0))
                continue
            out.append(nxt)
            i += 2
            continue
        if ch == "'" and i + 1 < len(body) and body[i + 1] == "'":
            out.append("'")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out).split("\x00", 1)[0]


def parse_config_lines(text: str, filename: str) -> list[tuple[str, str, int]]:
    """ParseConfigFp(): returns (name, value, line) items in order.

    Token by token, like the C grammar: ``NAME [=] VALUE`` then end of line, where NAME is an
    ID or QUALIFIED_ID and VALUE an ID, STRING, INTEGER, REAL or UNQUOTED_STRING. The first
    token that does not fit is the one named in the error.
    """
    items: list[tuple[str, str, int]] = []
    line = 1  # ConfigFileLineno: already advanced past a newline token when it is read
    pos = 0

    def next_token() -> tuple[str, str]:
        nonlocal pos, line
        kind, value, pos = _next_token(text, pos)
        if kind == "eol":
            line += 1
        return kind, value

    def syntax_error(kind: str, value: str) -> ControlFileError:
        if kind in ("eol", "eof"):
            return ControlFileError(f'syntax error in file "{filename}" line {line - 1}, near end of line')
        return ControlFileError(f'syntax error in file "{filename}" line {line}, near token "{value}"')

    while True:
        kind, value = next_token()
        if kind == "eof":
            return items
        if kind == "eol":
            continue
        if kind not in ("id", "qualified"):
            raise syntax_error(kind, value)
        name, at_line = value, line
        kind, value = next_token()
        if kind == "equals":
            kind, value = next_token()
        if kind not in _VALUE_KINDS:
            raise syntax_error(kind, value)
        items.append((name, deescape(value) if kind == "string" else value, at_line))
        kind, value = next_token()
        if kind == "eof":
            return items
        if kind != "eol":
            raise syntax_error(kind, value)


def parse_bool(value: str) -> bool | None:
    """parse_bool(): true/false/yes/no/on/off/1/0 and unique prefixes, ASCII case-insensitive.

    No blanks are stripped (``' true'`` is not a Boolean) and ``o`` alone is ambiguous.
    """
    if not value:
        return None
    v = value.translate(_ASCII_LOWER)
    if v in ("1", "0"):
        return v == "1"
    if v[0] == "o":
        # "on" and "off" compare at least two characters
        return True if "on".startswith(v) and len(v) >= 2 else False if "off".startswith(v) and len(v) >= 2 else None
    for word, result in _BOOL_WORDS.items():
        if word[0] == v[0] and word.startswith(v):
            return result
    return None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SCANNER_SPACE = " \t\n\r\f\v"  # scanner_isspace()
NAMEDATALEN = 64


def _truncate_identifier(name: str) -> str:
    """truncate_identifier(): at most NAMEDATALEN-1 bytes, cut at a character boundary."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) < NAMEDATALEN:
        return name
    return encoded[: NAMEDATALEN - 1].decode("utf-8", "ignore")


def split_identifier_list(value: str) -> list[str] | None:
    """SplitIdentifierString(value, ','): ASCII-downcase unquoted names, keep quoted ones; None on error."""
    names: list[str] = []
    text = value
    pos = 0
    while pos < len(text) and text[pos] in _SCANNER_SPACE:
        pos += 1
    if pos >= len(text):
        return names  # an empty list is fine
    while True:
        if pos < len(text) and text[pos] == '"':
            buf = []
            end = pos + 1
            while True:
                nxt = text.find('"', end)
                if nxt < 0:
                    return None  # mismatched quotes
                buf.append(text[end:nxt])
                if nxt + 1 < len(text) and text[nxt + 1] == '"':
                    buf.append('"')
                    end = nxt + 2
                    continue
                pos = nxt + 1
                break
            name = "".join(buf)
        else:
            start = pos
            while pos < len(text) and text[pos] != "," and text[pos] not in _SCANNER_SPACE:
                pos += 1
            if pos == start:
                return None  # empty unquoted name, e.g. after a trailing comma
            name = text[start:pos].translate(_ASCII_LOWER)
        while pos < len(text) and text[pos] in _SCANNER_SPACE:
            pos += 1
        names.append(_truncate_identifier(name))
        if pos >= len(text):
            return names
        if text[pos] != ",":
            return None
        pos += 1
        while pos < len(text) and text[pos] in _SCANNER_SPACE:
            pos += 1


#: pg_encname_tbl (src/common/encnames.c) names of encodings a server can use; the client-only
#: ones (SJIS, BIG5, GBK, UHC, GB18030, JOHAB, SHIFT_JIS_2004) are left out, as
#: pg_valid_server_encoding() rejects them.
SERVER_ENCODING_NAMES = frozenset(
    "abc alt euccn eucjis2004 eucjp euckr euctw iso88591 iso885910 iso885913 iso885914 iso885915 "
    "iso885916 iso88592 iso88593 iso88594 iso88595 iso88596 iso88597 iso88598 iso88599 koi8 koi8r koi8u "
    "latin1 latin10 latin2 latin3 latin4 latin5 latin6 latin7 latin8 latin9 muleinternal sqlascii tcvn "
    "tcvn5712 unicode utf8 vscii win win1250 win1251 win1252 win1253 win1254 win1255 win1256 win1257 "
    "win1258 win866 win874 windows1250 windows1251 windows1252 windows1253 windows1254 windows1255 "
    "windows1256 windows1257 windows1258 windows866 windows874".split()
)


def valid_server_encoding(name: str) -> bool:
    """pg_valid_server_encoding(): the name without non-alphanumerics, lower-cased, is a server encoding."""
    if not name or len(name.encode("utf-8", "surrogateescape")) >= NAMEDATALEN:
        return False
    key = "".join(c for c in name if c.isascii() and c.isalnum()).lower()
    return key in SERVER_ENCODING_NAMES


def check_valid_name(kind: str, name: str) -> str | None:
    """check_valid_extension_name() / check_valid_version_name(): the error, or None."""
    what = "extension" if kind == "extension" else "version"
    if not name:
        return f'invalid {what} name: "{name}" ({"Extension" if what == "extension" else "Version"} names must not be empty.)'
    if "--" in name:
        return f'invalid {what} name: "{name}" (names must not contain "--")'
    if name.startswith("-") or name.endswith("-"):
        return f'invalid {what} name: "{name}" (names must not begin or end with "-")'
    if "/" in name or "\\" in name:
        return f'invalid {what} name: "{name}" (names must not contain directory separator characters)'
    return None


@dataclass
class ControlFile:
    """An extension's control parameters after PostgreSQL's parsing (defaults filled in)."""

    name: str
    directory: str | None = None
    default_version: str | None = None
    module_pathname: str | None = None
    comment: str | None = None
    schema: str | None = None
    relocatable: bool = False
    superuser: bool = True
    trusted: bool = False
    encoding: str | None = None
    requires: list[str] = field(default_factory=list)
    no_relocate: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # parameter -> line, for messages


def parse_control(
    text: str | bytes,
    name: str,
    filename: str | None = None,
    version: str | None = None,
    base: ControlFile | None = None,
) -> ControlFile:
    """Parse a primary (``version`` None) or secondary (``<ext>--<version>.control``) file.

    A secondary file's settings override ``base`` (the primary), as in PostgreSQL.
    """
    filename = filename or (f"{name}--{version}.control" if version else f"{name}.control")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    if "\x00" in text:
        raise ControlFileError(f'syntax error in file "{filename}": it contains a NUL byte')
    control = ControlFile(name=name) if base is None else ControlFile(**{**base.__dict__, "lines": dict(base.lines)})
    for key, value, line in parse_config_lines(text, filename):
        if version is not None and key in PRIMARY_ONLY:
            raise ControlFileError(f'parameter "{key}" cannot be set in a secondary extension control file')
        control.lines[key] = line
        if key == "directory":
            control.directory = value
        elif key == "default_version":
            control.default_version = value
        elif key == "module_pathname":
            control.module_pathname = value
        elif key == "comment":
            control.comment = value
        elif key == "schema":
            control.schema = value
        elif key in ("relocatable", "superuser", "trusted"):
            parsed = parse_bool(value)
            if parsed is None:
                raise ControlFileError(f'parameter "{key}" requires a Boolean value')
            setattr(control, key, parsed)
        elif key == "encoding":
            if not valid_server_encoding(value):
                raise ControlFileError(f'"{value}" is not a valid encoding name')
            control.encoding = value
        elif key in ("requires", "no_relocate"):
            names = split_identifier_list(value)
            if names is None:
                raise ControlFileError(f'parameter "{key}" must be a list of extension names')
            setattr(control, key, names)
        else:
            raise ControlFileError(f'unrecognized parameter "{key}" in file "{filename}"')
    if control.relocatable and control.schema is not None:
        raise ControlFileError('parameter "schema" cannot be specified when "relocatable" is true')
    return control
